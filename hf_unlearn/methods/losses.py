"""Token-level pieces every unlearning loss shares, as pure functions of logits and labels.

Conventions: ``logits[b, t]`` predicts token ``t + 1`` (causal shift); ``labels`` are -100 on prompt
and padding, so only answer tokens count. NLL is the mean token cross-entropy over all answer tokens
of a batch; seq-NLL is the sum over one sequence's answer tokens. Arithmetic runs in float32 at least
(float64 inputs stay float64). Each method's own loss formula lives with its definition
(``methods/<method>.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..answer_tokens import IGNORE_INDEX, answer_labels, answer_lengths, answer_mask, answer_rows  # noqa: F401


def upcast(tensor: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 -> float32 (softmax arithmetic); other dtypes unchanged."""
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


def token_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position cross-entropy (0 off the answer) and the answer mask, both [B, T-1].

    Selecting the answer rows before any arithmetic keeps the softmax off prompt and padding positions
    (time and memory); half-precision rows are upcast after the selection, not before.
    """
    return token_nll_from_rows(answer_rows(logits, labels), labels)


def token_nll_from_rows(rows: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`token_nll` from the [N, V] answer rows alone (`answer_rows` order; a reference's `answer_logits`)."""
    mask = answer_mask(labels)
    ce = F.cross_entropy(upcast(rows), labels[:, 1:][mask], reduction="none")
    return torch.zeros(mask.shape, dtype=ce.dtype, device=ce.device).masked_scatter(mask, ce), mask


def nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over every answer token of the batch."""
    ce, mask = token_nll(logits, labels)
    return ce.sum() / mask.sum().clamp_min(1)


def sequence_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[B] sum of cross-entropy over each sequence's answer tokens (= -log pi(y|x))."""
    return token_nll(logits, labels)[0].sum(-1)


def sequence_nll_from_rows(rows: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """`sequence_nll` from the [N, V] answer rows alone (`answer_rows` order)."""
    return token_nll_from_rows(rows, labels)[0].sum(-1)


def kl_on_answers(logits: torch.Tensor, ref_rows: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """KL(p_ref || p_theta) summed over the vocabulary, averaged over answer tokens.

    `ref_rows` are the reference's [N, V] logits at the answer positions (`answer_rows` order; the
    reference computes only those, `ReferenceModel.answer_logits`). The retain term of TOFU's KL baseline
    and of `--retain_loss_type kl`.
    """
    rows = upcast(answer_rows(logits, labels))
    log_p = F.log_softmax(rows, -1)
    log_ref = F.log_softmax(ref_rows.to(rows.dtype), -1)
    return (log_ref.exp() * (log_ref - log_p)).sum(-1).sum() / max(rows.shape[0], 1)


def kl_all_positions(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """KL(p_ref || p_theta) summed over the vocabulary, averaged over every position of the padded batch
    (prompt and padding included, B*T rows): the reference evaluator's (open-unlearning) retain KL, for
    comparability (`--retain_kl_positions all`; see docs/conventions.md)."""
    log_p = F.log_softmax(upcast(logits).flatten(0, 1), -1)
    log_ref = F.log_softmax(upcast(ref_logits).flatten(0, 1).to(log_p.dtype), -1)
    return (log_ref.exp() * (log_ref - log_p)).sum(-1).mean()
