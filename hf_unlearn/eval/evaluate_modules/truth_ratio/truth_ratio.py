"""TOFU's truth ratio as an `evaluate` module: ``evaluate.load(hf_unlearn.eval.evaluate_modules.path("truth_ratio"),
"forget")`` (or ``"utility"``)."""

import datasets
import evaluate

from hf_unlearn.eval import metrics
from hf_unlearn.eval.benchmarks.tofu import _truth_ratios

_DESCRIPTION = """Truth ratio (TOFU, Maini et al. 2024): per question R = P_perturbed / P_paraphrased, with
P = exp(-average NLL of the answer's tokens) and P_perturbed the geometric mean over the perturbed answers.
Config "forget": the forget split's statistic mean(min(R, 1/R)); config "utility": the retain / real authors /
world facts statistic mean(max(0, 1 - R)) (for real authors and world facts pass the true answer's average NLL
as paraphrased_avg_nll, as TOFU does)."""

_KWARGS_DESCRIPTION = """
Args:
    paraphrased_avg_nll: average NLL of each question's paraphrased answer (mean over its scored tokens).
    perturbed_avg_nll: the average NLLs of its perturbed answers (a list per question).
Returns:
    truth_ratio: the config's statistic; truth_ratios: R of each question (the input of forget_quality).
Example:
    >>> tr = evaluate.load(hf_unlearn.eval.evaluate_modules.path("truth_ratio"), "forget")
    >>> tr.compute(paraphrased_avg_nll=[1.0], perturbed_avg_nll=[[1.0, 1.0]])
    {'truth_ratio': 1.0, 'truth_ratios': [1.0]}
"""

_CITATION = """@article{maini2024tofu, title={TOFU: A Task of Fictitious Unlearning for LLMs},
author={Maini, Pratyush and Feng, Zhili and Schwarzschild, Avi and Lipton, Zachary C. and Kolter, J. Zico},
journal={arXiv preprint arXiv:2401.06121}, year={2024}}"""

STATISTICS = {"forget": metrics.truth_ratio_forget_stat, "utility": metrics.truth_ratio_utility_stat}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TruthRatio(evaluate.Metric):
    def _info(self):
        if self.config_name not in STATISTICS:
            raise ValueError(f"truth_ratio has the configs 'forget' and 'utility', not {self.config_name!r}: "
                             "evaluate.load(path, 'forget').")
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"paraphrased_avg_nll": datasets.Value("float64"),
                                        "perturbed_avg_nll": datasets.List(datasets.Value("float64"))}),
            reference_urls=["https://arxiv.org/abs/2401.06121"],
        )

    def _compute(self, paraphrased_avg_nll, perturbed_avg_nll):
        ratios = _truth_ratios(paraphrased_avg_nll, perturbed_avg_nll)
        return {"truth_ratio": STATISTICS[self.config_name](ratios), "truth_ratios": [float(r) for r in ratios]}
