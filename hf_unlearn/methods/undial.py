"""UNDIAL (Dong et al., arXiv 2402.10052): self-distillation towards an adjusted teacher.

L = mean over answer tokens t of CE(q_t, p_theta,t),  q_t = softmax(z_teacher,t - beta * onehot(y_t)):
the reference (teacher) with the label's logit lowered by beta. Only answer tokens count: prompt and
padding positions (label -100) are excluded, unlike the public implementations that average over them
and index -100 as a token. Retain weight 0 by default, as in the paper.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import losses
from .base import Hyperparameter, Method, logits_of, register_method

UNDIAL_BETA = Hyperparameter(
    "undial_beta", 10.0, "UNDIAL strength: subtracted from the teacher's logit of the label token. Default 10 "
    "(open-unlearning's TOFU UNDIAL config; arXiv 2402.10052).")


def undial_target(teacher_logits: torch.Tensor, labels: torch.Tensor, beta: float) -> torch.Tensor:
    """q = softmax(z_teacher - beta * onehot(y)) for [N, V] teacher rows and [N] labels.

    Its mass on the label is p(y) e^-beta / (1 - p(y) + p(y) e^-beta).
    """
    # scatter_add instead of `teacher - beta * one_hot(y)`: no [N, V] one-hot tensor next to the target.
    index = labels.unsqueeze(-1)
    lowered = torch.full(index.shape, -float(beta), dtype=teacher_logits.dtype, device=teacher_logits.device)
    return F.softmax(teacher_logits.scatter_add(-1, index, lowered), dim=-1)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over answer tokens t of CE(q_t, p_theta,t) = logsumexp(z_t) - <q_t, z_t> (each q_t sums to 1).

    `target` holds the N rows q_t in `losses.answer_rows` order. This form keeps no [N, V] log-softmax or
    product tensor for the backward, only the logits rows and q.
    """
    rows = losses.upcast(losses.answer_rows(logits, labels))
    target = target.to(rows.dtype)
    return (torch.logsumexp(rows, -1) - torch.bmm(target.unsqueeze(1), rows.unsqueeze(2)).view(-1)).mean()


def undial_term(model, batch, reference, settings, logs):
    # The adjusted target q is built before the student's forward: only q, not the teacher's rows as well,
    # is alive at the memory peak. The teacher's LM head runs on the answer positions only.
    part = batch["forget"]
    labels = part["labels"]
    teacher = losses.upcast(reference.answer_logits(part))
    target = undial_target(teacher, losses.answer_labels(labels), settings.undial_beta)
    del teacher
    logits = logits_of(model, part)
    logs["forget_nll"] = losses.nll(logits.detach(), labels)
    return soft_cross_entropy(logits, target, labels)


register_method(Method("undial", "UNDIAL (arXiv 2402.10052)", undial_term, forget_uses_reference=True,
                       default_retain_weight=0.0, weights_source="the UNDIAL paper, arXiv 2402.10052",
                       hyperparameters=(UNDIAL_BETA,)))
