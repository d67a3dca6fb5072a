"""Token-reweighted gradient ascent: the forget term is GA on the forget answer tokens, each token's
cross-entropy l_t weighted by a function of its (detached) probability p_t = exp(-l_t):

* ``wga`` (Wang et al. 2025, the G-effect study, arXiv 2502.19301): w_t = p_t^beta;
* ``satimp`` (Yang et al. 2025, arXiv 2505.11953): w_t = p_t^beta1 * (1 - p_t)^beta2 (saturation and
  importance).

F = -mean over answer tokens of (w_t * l_t); the weights carry no gradient. L = gamma * F + alpha * R.
"""

from __future__ import annotations

import torch

from . import losses
from .base import Hyperparameter, Method, logits_of, register_method

WGA_BETA = Hyperparameter(
    "wga_beta", 1.0, "WGA: exponent of the token weight p^beta. Default 1 (open-unlearning's WGA config; "
    "arXiv 2502.19301).", nonnegative=True)
SATIMP_BETA1 = Hyperparameter(
    "satimp_beta1", 5.0, "SatImp: saturation exponent, weight p^beta1 * (1-p)^beta2. Default 5 (open-unlearning's "
    "SatImp config; arXiv 2505.11953).", nonnegative=True)
SATIMP_BETA2 = Hyperparameter(
    "satimp_beta2", 1.0, "SatImp: importance exponent, weight p^beta1 * (1-p)^beta2. Default 1 (open-unlearning's "
    "SatImp config; arXiv 2505.11953).", nonnegative=True)


def weighted_ascent(token_ce: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """-mean_t(w_t * l_t) over the N answer tokens ([N] cross-entropies, [N] detached weights)."""
    return -(weights * token_ce).sum() / max(token_ce.numel(), 1)


def _answer_token_ce(model, part, logs) -> torch.Tensor:
    """[N] cross-entropy of each forget answer token (logs NLL_f as `forget_nll`)."""
    ce, mask = losses.token_nll(logits_of(model, part), part["labels"])
    token_ce = ce[mask]
    logs["forget_nll"] = token_ce.detach().mean() if token_ce.numel() else token_ce.detach().sum()
    return token_ce


def wga_term(model, batch, reference, settings, logs):
    token_ce = _answer_token_ce(model, batch["forget"], logs)
    p = torch.exp(-token_ce.detach())
    return weighted_ascent(token_ce, p ** settings.wga_beta)


def satimp_term(model, batch, reference, settings, logs):
    token_ce = _answer_token_ce(model, batch["forget"], logs)
    p = torch.exp(-token_ce.detach())
    return weighted_ascent(token_ce, p ** settings.satimp_beta1 * (1 - p) ** settings.satimp_beta2)


register_method(Method("wga", "WGA (G-effect, arXiv 2502.19301)", wga_term, hyperparameters=(WGA_BETA,)))
register_method(Method("satimp", "SatImp (arXiv 2505.11953)", satimp_term, default_forget_weight=0.1,
                       weights_source="open-unlearning's SatImp config",
                       hyperparameters=(SATIMP_BETA1, SATIMP_BETA2)))
