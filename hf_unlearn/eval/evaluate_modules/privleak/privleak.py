"""PrivLeak (TOFU's or MUSE's) as an `evaluate` module: ``evaluate.load(hf_unlearn.eval.evaluate_modules.path(
"privleak"), "tofu")`` (or ``"muse"``)."""

import datasets
import evaluate

from hf_unlearn.eval import metrics

_DESCRIPTION = """PrivLeak (MUSE, Shi et al. 2024): how much more (or less) the forget set stands out to a
membership-inference attack on the evaluated model than on the retain (retrained) model, in percent. The attack is
Min-K% Prob (k = 40%: minus the mean of the lowest 40% token log-probabilities), its AUC is forget (members)
against holdout (non-members), and PrivLeak is hf_unlearn.eval.metrics.privleak, MUSE's sign and scale for both
configs ("tofu", "muse": the same formula since 2026-12-04): (A - A_ref) / A_ref x 100 on MUSE's AUCs (1 - ours).
~0 is like the retrained model, strongly negative is under-unlearning, positive over-unlearning. Undefined (None)
where the formula is (a degenerate reference AUC)."""

_KWARGS_DESCRIPTION = """
Args:
    token_logprobs: the evaluated model's log-probability of each scored token of the text (TOFU: the answer
        tokens without the closing EOS; MUSE: the text's tokens), one list per text.
    reference_token_logprobs: the retain model's, on the same text.
    is_forget: 1 for a forget text (member), 0 for a holdout text (non-member).
Returns:
    privleak, auc (the evaluated model's Min-K% AUC), reference_auc (the retain model's).
"""

_CITATION = """@article{shi2024muse, title={MUSE: Machine Unlearning Six-Way Evaluation for Language Models},
author={Shi, Weijia and others}, journal={arXiv preprint arXiv:2407.06460}, year={2024}}"""

FORMULAS = {"tofu": metrics.privleak, "muse": metrics.privleak}  # one PrivLeak for both benchmarks


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PrivLeak(evaluate.Metric):
    def _info(self):
        if self.config_name not in FORMULAS:
            raise ValueError(f"privleak has the configs 'tofu' and 'muse' (the evaluation whose formula to use), not "
                             f"{self.config_name!r}: evaluate.load(path, 'tofu').")
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"token_logprobs": datasets.List(datasets.Value("float64")),
                                        "reference_token_logprobs": datasets.List(datasets.Value("float64")),
                                        "is_forget": datasets.Value("int32")}),
            reference_urls=["https://arxiv.org/abs/2407.06460"],
        )

    def _compute(self, token_logprobs, reference_token_logprobs, is_forget):
        if set(is_forget) != {0, 1}:
            raise ValueError("privleak needs forget (is_forget=1) and holdout (is_forget=0) texts, both.")

        def auc(logprobs):
            scores = metrics.mia_min_k_scores(logprobs)
            return metrics.mia_auc([s for s, f in zip(scores, is_forget) if f], [s for s, f in zip(scores, is_forget)
                                                                                   if not f])

        model_auc, reference_auc = auc(token_logprobs), auc(reference_token_logprobs)
        try:
            value = FORMULAS[self.config_name](model_auc, reference_auc)
        except ValueError:  # the formula is undefined for this reference AUC: the evaluation leaves it out too
            value = None
        return {"privleak": value, "auc": model_auc, "reference_auc": reference_auc}
