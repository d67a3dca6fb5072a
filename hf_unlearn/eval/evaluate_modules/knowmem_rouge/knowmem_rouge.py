"""MUSE's KnowMem as an `evaluate` module: ``evaluate.load(hf_unlearn.eval.evaluate_modules.path("knowmem_rouge"))``."""

import datasets
import evaluate
import numpy as np

from hf_unlearn.eval import metrics

_DESCRIPTION = """KnowMem (MUSE, Shi et al. 2024): the model answers questions about the corpus after few-shot
"Question: ...\\nAnswer: ..." examples (greedy, 32 new tokens); each generation is cut before the first of MUSE's
stop strings ("\\n\\n", "\\nQuestion", "Question:") and scored by ROUGE-L F1 (no stemmer) against the answer.
On the forget questions lower = forgotten; on the retain questions it is MUSE's utility."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: the raw generated answers (new tokens only, decoded); the stop-string cut is done here.
    references: the reference answers.
Returns:
    knowmem_rouge: mean ROUGE-L F1, as hf_unlearn.eval's MUSE evaluation computes forget_knowmem_rouge and
        retain_knowmem_rouge.
"""

_CITATION = """@article{shi2024muse, title={MUSE: Machine Unlearning Six-Way Evaluation for Language Models},
author={Shi, Weijia and others}, journal={arXiv preprint arXiv:2407.06460}, year={2024}}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class KnowMemRouge(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
            reference_urls=["https://arxiv.org/abs/2407.06460"],
        )

    def _compute(self, predictions, references):
        answers = [metrics.cut_at_stop_strings(text) for text in predictions]
        return {"knowmem_rouge": float(np.mean(metrics.rouge_l_f1(answers, references)))}
