"""Unlearning losses as pure functions of logits, labels and activations.

Conventions: ``logits[b, t]`` predicts token ``t + 1`` (causal shift); ``labels`` are -100 on prompt
and padding, so only answer tokens count. NLL is the mean token cross-entropy over all answer tokens
of a batch; seq-NLL is the sum over one sequence's answer tokens. Arithmetic runs in float32 at least
(float64 inputs stay float64).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def upcast(tensor: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 -> float32 (softmax arithmetic); other dtypes unchanged."""
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


def _answer_rows(logits: torch.Tensor, labels: torch.Tensor):
    """Logit rows that predict an answer token, their labels and the [B, T-1] answer mask.

    Selecting before any arithmetic keeps the softmax off prompt and padding positions (time and
    memory); half-precision rows are upcast after the selection, not before.
    """
    mask = labels[:, 1:] != IGNORE_INDEX
    return upcast(answer_rows(logits, labels)), labels[:, 1:][mask], mask


def token_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position cross-entropy (0 off the answer) and the answer mask, both [B, T-1]."""
    rows, targets, mask = _answer_rows(logits, labels)
    ce = F.cross_entropy(rows, targets, reduction="none")
    return torch.zeros(mask.shape, dtype=ce.dtype, device=ce.device).masked_scatter(mask, ce), mask


def nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over every answer token of the batch."""
    ce, mask = token_nll(logits, labels)
    return ce.sum() / mask.sum().clamp_min(1)


def sequence_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[B] sum of cross-entropy over each sequence's answer tokens (= -log pi(y|x))."""
    return token_nll(logits, labels)[0].sum(-1)


def answer_lengths(labels: torch.Tensor) -> torch.Tensor:
    return (labels[:, 1:] != IGNORE_INDEX).sum(-1)


def ga_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Gradient ascent (TOFU, Maini et al. 2024): L = -NLL_f."""
    return -nll(logits, labels)


def kl_on_answers(logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """KL(p_ref || p_theta) summed over the vocabulary, averaged over answer tokens.

    The retain term of TOFU's KL baseline and of `--retain_loss_type kl`.
    """
    rows, _, mask = _answer_rows(logits, labels)
    log_p = F.log_softmax(rows, -1)
    log_ref = F.log_softmax(ref_logits[:, :-1][mask].to(rows.dtype), -1)
    return (log_ref.exp() * (log_ref - log_p)).sum(-1).sum() / mask.sum().clamp_min(1)


def kl_all_positions(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """KL(p_ref || p_theta) summed over the vocabulary, averaged over every position of the padded batch
    (prompt and padding included, B*T rows): the reference evaluator's (open-unlearning) retain KL, for
    comparability (`--retain_kl_positions all`; see docs/conventions.md)."""
    log_p = F.log_softmax(upcast(logits).flatten(0, 1), -1)
    log_ref = F.log_softmax(upcast(ref_logits).flatten(0, 1).to(log_p.dtype), -1)
    return (log_ref.exp() * (log_ref - log_p)).sum(-1).mean()


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


def dpo_loss(
    chosen_seq_nll: torch.Tensor, rejected_seq_nll: torch.Tensor,
    ref_chosen_seq_nll: torch.Tensor, ref_rejected_seq_nll: torch.Tensor, beta: float,
) -> torch.Tensor:
    """DPO (Rafailov et al. 2023) as TOFU's IdkDPO uses it: refusal chosen, true answer rejected.

    With log pi = -seqNLL:  L = -mean log sigmoid(beta * [(log pi_c - log ref_c) - (log pi_r - log ref_r)]).
    """
    margin = (ref_chosen_seq_nll - chosen_seq_nll) - (ref_rejected_seq_nll - rejected_seq_nll)
    return -F.logsigmoid(beta * margin).mean()


def undial_target(teacher_logits: torch.Tensor, labels: torch.Tensor, beta: float) -> torch.Tensor:
    """q = softmax(z_teacher - beta * onehot(y)): the teacher with the label's logit lowered by beta.

    Its mass on the label is p(y) e^-beta / (1 - p(y) + p(y) e^-beta).
    """
    # scatter_add instead of `teacher - beta * one_hot(y)`: no [N, V] one-hot tensor next to the target.
    index = labels.unsqueeze(-1)
    lowered = torch.full(index.shape, -float(beta), dtype=teacher_logits.dtype, device=teacher_logits.device)
    return F.softmax(teacher_logits.scatter_add(-1, index, lowered), dim=-1)


def answer_rows(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[N, V] logits at the N positions that predict an answer token (the rows every loss scores).

    Indexed with a full-length mask rather than through a ``logits[:, :-1]`` slice: the slice's backward
    would allocate a second [B, T, V] gradient next to the index's.
    """
    predicts_answer = torch.zeros_like(labels, dtype=torch.bool)
    predicts_answer[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    return logits[predicts_answer]


def answer_labels(labels: torch.Tensor) -> torch.Tensor:
    """[N] the answer tokens, in the order of `answer_rows`."""
    shifted = labels[:, 1:]
    return shifted[shifted != IGNORE_INDEX]


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over answer tokens t of CE(q_t, p_theta,t) = logsumexp(z_t) - <q_t, z_t> (each q_t sums to 1).

    `target` holds the N rows q_t in `answer_rows` order. This form keeps no [N, V] log-softmax or
    product tensor for the backward, only the logits rows and q.
    """
    rows, _, _ = _answer_rows(logits, labels)
    target = target.to(rows.dtype)
    return (torch.logsumexp(rows, -1) - torch.bmm(target.unsqueeze(1), rows.unsqueeze(2)).view(-1)).mean()


def undial_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, beta: float) -> torch.Tensor:
    """UNDIAL (Dong et al., arXiv 2402.10052): self-distillation towards an adjusted teacher.

    L = mean over answer tokens t of CE(q_t, p_theta,t),  q_t = softmax(z_teacher,t - beta * onehot(y_t)).
    Only answer tokens count: prompt and padding positions (label -100) are excluded, unlike the
    public implementations that average over them and index -100 as a token. `teacher_logits` is
    [B, T, V] like `logits`, or already reduced to its [N, V] answer rows (`answer_rows`).
    """
    teacher = teacher_logits if teacher_logits.dim() == 2 else answer_rows(teacher_logits, labels)
    target = undial_target(upcast(teacher), answer_labels(labels), beta)
    return soft_cross_entropy(logits, target, labels)


def rmu_loss(
    forget_hidden: torch.Tensor, forget_mask: torch.Tensor, control: torch.Tensor,
    retain_hidden: torch.Tensor | None = None, frozen_retain_hidden: torch.Tensor | None = None,
    retain_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """RMU (Li et al. 2024, WMDP, arXiv 2403.03218), its two terms.

    forget = mean over answer positions and hidden units of (h_theta - c*u)^2 (c*u = `control`);
    retain = mean over answer positions and hidden units of (h_theta - h_frozen)^2.
    The caller weighs them: L = gamma * forget + alpha * retain.
    """
    forget_sel = upcast(forget_hidden[forget_mask])  # half -> float32; float32/float64 stay as they are
    forget = ((forget_sel - control.to(forget_sel.dtype)) ** 2).mean()
    if retain_hidden is None:
        return forget, None
    retain = ((upcast(retain_hidden[retain_mask]) - upcast(frozen_retain_hidden[retain_mask])) ** 2).mean()
    return forget, retain
