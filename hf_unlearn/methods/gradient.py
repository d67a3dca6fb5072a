"""TOFU's gradient baselines (Maini et al. 2024, arXiv 2401.06121): the forget term is gradient ascent
on the forget answers, F = -NLL_f.

* ``ga``: L = -NLL_f (no retain term);
* ``grad_diff``: L = gamma * (-NLL_f) + alpha * R, R = NLL_r (or KL with --retain_loss_type kl);
* ``kl``: L = gamma * (-NLL_f) + alpha * KL(p_ref || p_theta) on retain answers.
"""

from __future__ import annotations

from . import losses
from .base import Method, logits_of, register_method


def negative_nll(model, batch, reference, settings, logs):
    """F = -NLL_f (logs NLL_f as `forget_nll`)."""
    part = batch["forget"]
    value = losses.nll(logits_of(model, part), part["labels"])
    logs["forget_nll"] = value.detach()
    return -value


PAPER = "TOFU (Maini et al. 2024, arXiv 2401.06121)"
register_method(Method("ga", PAPER, negative_nll, uses_retain=False))
register_method(Method("grad_diff", PAPER, negative_nll))
register_method(Method("kl", PAPER, negative_nll, fixed_retain_loss="kl"))
