"""TOFU's refusal baselines (Maini et al. 2024, arXiv 2401.06121): the forget questions answered with a
refusal ("I don't know"), ``batch["idk"]``.

* ``idk_nll`` (TOFU's "PO"): F = NLL of the refusal;
* ``idk_dpo``: F = DPO with the refusal chosen and the true answer rejected.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import losses
from .base import Method, logits_of, register_method
from .npo import NPO_BETA


def dpo_loss(
    chosen_seq_nll: torch.Tensor, rejected_seq_nll: torch.Tensor,
    ref_chosen_seq_nll: torch.Tensor, ref_rejected_seq_nll: torch.Tensor, beta: float,
) -> torch.Tensor:
    """DPO (Rafailov et al. 2023) as TOFU's IdkDPO uses it: refusal chosen, true answer rejected.

    With log pi = -seqNLL:  L = -mean log sigmoid(beta * [(log pi_c - log ref_c) - (log pi_r - log ref_r)]).
    """
    margin = (ref_chosen_seq_nll - chosen_seq_nll) - (ref_rejected_seq_nll - rejected_seq_nll)
    return -F.logsigmoid(beta * margin).mean()


def idk_nll_term(model, batch, reference, settings, logs):
    part = batch["idk"]
    return losses.nll(logits_of(model, part), part["labels"])


def idk_dpo_term(model, batch, reference, settings, logs):
    chosen, rejected = batch["idk"], batch["forget"]
    # Reference forwards first (LM head on answer positions only), reduced at once: the frozen model's logits
    # never coexist with the policy's.
    ref = {name: losses.sequence_nll_from_rows(reference.answer_logits(p), p["labels"])
           for name, p in (("c", chosen), ("r", rejected))}
    seq = {name: losses.sequence_nll(logits_of(model, p), p["labels"]) for name, p in (("c", chosen), ("r", rejected))}
    logs["forget_nll"] = (seq["r"].sum() / losses.answer_lengths(rejected["labels"]).sum()).detach()
    return dpo_loss(seq["c"], seq["r"], ref["c"], ref["r"], settings.npo_beta)


PAPER = "TOFU (Maini et al. 2024, arXiv 2401.06121)"
register_method(Method("idk_nll", PAPER + " 'PO'", idk_nll_term, needs_idk=True))
register_method(Method("idk_dpo", PAPER + " IdkDPO", idk_dpo_term, forget_uses_reference=True, needs_idk=True,
                       hyperparameters=(NPO_BETA,)))
