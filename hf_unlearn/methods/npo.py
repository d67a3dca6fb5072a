"""NPO and its reference-free, length-normalised variant SimNPO."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import losses
from .base import Hyperparameter, Method, logits_of, register_method

NPO_BETA = Hyperparameter(
    "npo_beta", 0.1, "beta of NPO and of IdkDPO's DPO loss. Default 0.1 (NPO paper arXiv 2404.05868; TOFU's IdkDPO).",
    divides_loss=True)
SIMNPO_BETA = Hyperparameter(
    "simnpo_beta", 4.5, "SimNPO beta. Default 4.5 (open-unlearning TOFU SimNPO config).", divides_loss=True)
SIMNPO_GAMMA = Hyperparameter(
    "simnpo_gamma", 0.0, "SimNPO reward margin gamma, where the SimNPO paper puts it: -(2/beta) log sigmoid(beta * "
    "NLL/|y| - gamma). Default 0. open-unlearning's margin delta sits inside the product, beta * (NLL/|y| - delta): "
    "its delta equals gamma / beta (see docs/conventions.md).")


def npo_loss(seq_nll: torch.Tensor, ref_seq_nll: torch.Tensor, beta: float) -> torch.Tensor:
    """NPO (Zhang et al. 2024, arXiv 2404.05868).

    L = -(2/beta) * mean_i log sigmoid(beta * (seqNLL_theta,i - seqNLL_ref,i))
      = (2/beta) * E log(1 + (pi_theta / pi_ref)^beta).  As beta -> 0 its gradient tends to GA's on
    sequence log-likelihoods.
    """
    return -(2.0 / beta) * F.logsigmoid(beta * (seq_nll - ref_seq_nll)).mean()


def simnpo_loss(seq_nll: torch.Tensor, lengths: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """SimNPO (Fan et al. 2024, arXiv 2410.07163): reference-free, length-normalised NPO.

    L = -(2/beta) * mean_i log sigmoid(beta * seqNLL_theta,i / |y_i| - gamma).
    """
    return -(2.0 / beta) * F.logsigmoid(beta * seq_nll / lengths.clamp_min(1) - gamma).mean()


# The reference forward runs first (its LM head on the answer positions only) and is reduced at once to
# sequence NLLs, so the frozen model's logits are freed before the policy's exist.
def npo_term(model, batch, reference, settings, logs):
    part = batch["forget"]
    ref_seq = losses.sequence_nll_from_rows(reference.answer_logits(part), part["labels"])
    seq = losses.sequence_nll(logits_of(model, part), part["labels"])
    logs["forget_nll"] = (seq.sum() / losses.answer_lengths(part["labels"]).sum()).detach()
    return npo_loss(seq, ref_seq, settings.npo_beta)


def simnpo_term(model, batch, reference, settings, logs):
    part = batch["forget"]
    seq = losses.sequence_nll(logits_of(model, part), part["labels"])
    lengths = losses.answer_lengths(part["labels"])
    logs["forget_nll"] = (seq.sum() / lengths.sum()).detach()
    return simnpo_loss(seq, lengths, settings.simnpo_beta, settings.simnpo_gamma)


register_method(Method("npo", "NPO (arXiv 2404.05868)", npo_term, forget_uses_reference=True,
                       hyperparameters=(NPO_BETA,)))
register_method(Method("simnpo", "SimNPO (arXiv 2410.07163)", simnpo_term, default_forget_weight=0.125,
                       weights_source="open-unlearning's TOFU SimNPO config",
                       hyperparameters=(SIMNPO_BETA, SIMNPO_GAMMA)))
