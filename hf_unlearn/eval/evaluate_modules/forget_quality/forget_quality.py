"""TOFU's forget quality as an `evaluate` module: ``evaluate.load(hf_unlearn.eval.evaluate_modules.path("forget_quality"))``."""

import datasets
import evaluate

from hf_unlearn.eval import metrics

_DESCRIPTION = """Forget quality (TOFU, Maini et al. 2024): the p-value of the two-sample Kolmogorov-Smirnov test
between the forget-set truth ratios of the evaluated model and those of the retain model (never trained on the
forget set), on the same questions. High (e.g. > 0.05): the two are indistinguishable."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: the evaluated model's truth ratio R = P_perturbed / P_paraphrased of each forget question
        (the `truth_ratio` module's `truth_ratios`).
    references: the retain model's truth ratio of the same question.
Returns:
    forget_quality: scipy.stats.ks_2samp(predictions, references).pvalue, as hf_unlearn.eval computes it.
Example:
    >>> fq = evaluate.load(hf_unlearn.eval.evaluate_modules.path("forget_quality"))
    >>> fq.compute(predictions=[0.5, 0.6, 0.7], references=[0.5, 0.6, 0.7])
    {'forget_quality': 1.0}
"""

_CITATION = """@article{maini2024tofu, title={TOFU: A Task of Fictitious Unlearning for LLMs},
author={Maini, Pratyush and Feng, Zhili and Schwarzschild, Avi and Lipton, Zachary C. and Kolter, J. Zico},
journal={arXiv preprint arXiv:2401.06121}, year={2024}}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ForgetQuality(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("float64"),
                                        "references": datasets.Value("float64")}),
            reference_urls=["https://arxiv.org/abs/2401.06121"],
        )

    def _compute(self, predictions, references):
        return {"forget_quality": metrics.forget_quality(predictions, references)}
