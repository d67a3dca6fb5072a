"""MUSE's VerbMem as an `evaluate` module: ``evaluate.load(hf_unlearn.eval.evaluate_modules.path("verbmem_rouge"))``."""

import datasets
import evaluate
import numpy as np

from hf_unlearn.eval import metrics

_DESCRIPTION = """VerbMem (MUSE, Shi et al. 2024): the model continues a prompt from the forget corpus (greedy,
128 new tokens); the score is the mean ROUGE-L F1 (no stemmer) of the continuation against the true
continuation cut to the same number of tokens. Lower after unlearning = less verbatim memorisation."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: the generated continuations (new tokens only, decoded).
    references: the true continuations, cut to the generation length in the model's tokens (MUSE: the first 128).
Returns:
    verbmem_rouge: mean ROUGE-L F1, as hf_unlearn.eval's MUSE evaluation computes forget_verbmem_rouge.
"""

_CITATION = """@article{shi2024muse, title={MUSE: Machine Unlearning Six-Way Evaluation for Language Models},
author={Shi, Weijia and others}, journal={arXiv preprint arXiv:2407.06460}, year={2024}}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class VerbMemRouge(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
            reference_urls=["https://arxiv.org/abs/2407.06460"],
        )

    def _compute(self, predictions, references):
        return {"verbmem_rouge": float(np.mean(metrics.rouge_l_f1(predictions, references)))}
