"""PDU, primal-dual unlearning (Entesari et al. 2025, "Constrained Entropic Unlearning", arXiv 2506.05314).

Forgetting is the logit-margin flattening loss, F = mean over forget answer positions t of
(max_v z_t,v - mean_v z_t,v)^2, which is 0 exactly when the next-token distribution is uniform; retention
is the constraint R <= epsilon, solved by primal-dual steps on the Lagrangian

    L = gamma * F + lambda * (R - epsilon),    lambda <- max(0, lambda + eta * (mean R - epsilon))

with lambda updated once per optimizer step from the step's mean retain loss over every micro-batch and
process (`base.RetainDual`), so gradient accumulation and several processes give the one-process lambda;
it is saved with the checkpoint. lambda starts at --retain_weight.
"""

from __future__ import annotations

from . import losses
from .base import Hyperparameter, Method, RetainDual, logits_of, register_method

PDU_RETAIN_BOUND = Hyperparameter(
    "pdu_retain_bound", 0.0, "PDU: epsilon, the bound on the retain loss; lambda rises while the retain loss is "
    "above it. Set it somewhat above the starting model's retain loss (the PDU authors' advice; their TOFU runs: "
    "0.3). Default 0 (open-unlearning's PDU trainer, retain_loss_eps).")
PDU_DUAL_STEP_SIZE = Hyperparameter(
    "pdu_dual_step_size", 1.0, "PDU: eta, the dual ascent step on lambda (the retain weight). Default 1 "
    "(open-unlearning's PDU trainer, dual_step_size).", nonnegative=True)
PDU_DUAL_WARMUP_EPOCHS = Hyperparameter(
    "pdu_dual_warmup_epochs", 0, "PDU: whole epochs trained before lambda is first updated. Default 0 "
    "(open-unlearning's PDU trainer, dual_warmup_epochs).", type=int, nonnegative=True)


def logit_margin_flattening(rows):
    """mean over the [N, V] rows of (max_v z - mean_v z)^2 (0 when N = 0)."""
    rows = losses.upcast(rows)
    margin = rows.max(-1).values - rows.mean(-1)
    return (margin ** 2).sum() / max(rows.shape[0], 1)


def pdu_term(model, batch, reference, settings, logs):
    part = batch["forget"]
    logits = logits_of(model, part)
    logs["forget_nll"] = losses.nll(logits.detach(), part["labels"])
    return logit_margin_flattening(losses.answer_rows(logits, part["labels"]))


register_method(Method("pdu", "PDU (arXiv 2506.05314)", pdu_term,
                       dual=RetainDual("pdu_retain_bound", "pdu_dual_step_size", "pdu_dual_warmup_epochs"),
                       hyperparameters=(PDU_RETAIN_BOUND, PDU_DUAL_STEP_SIZE, PDU_DUAL_WARMUP_EPOCHS)))
