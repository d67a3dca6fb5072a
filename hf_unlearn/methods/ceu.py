"""CE-U, cross-entropy unlearning (Yang et al. 2025, arXiv 2503.01224).

At each forget answer position t the target is the model's own (detached) distribution with the true
token removed, q_t = softmax(z_t with z_t[y_t] = -inf); F = mean over the counted positions of
CE(q_t, p_theta,t). Its gradient lowers the true token's logit and leaves the others' ratios alone, and
it vanishes as p(y_t) -> 0 (bounded, unlike GA). The first `ceu_ignore_first_n_answer_tokens` answer
tokens of each row do not count (the paper's training-settings footnote). Retain weight 0 by default:
CE-U is a forget-only loss in open-unlearning's CE-U trainer.
"""

from __future__ import annotations

import torch

from . import losses
from .base import Hyperparameter, Method, logits_of, register_method
from .undial import soft_cross_entropy

CEU_IGNORE_FIRST = Hyperparameter(
    "ceu_ignore_first_n_answer_tokens", 1, "CE-U: answer tokens at the start of each row left out of the loss. "
    "Default 1 (arXiv 2503.01224, footnote of its training settings; open-unlearning's CE-U).", type=int,
    nonnegative=True)


def without_first_answer_tokens(labels: torch.Tensor, n: int) -> torch.Tensor:
    """`labels` with each row's first `n` answer tokens set to -100."""
    is_answer = labels != losses.IGNORE_INDEX
    return labels.masked_fill(is_answer & (is_answer.cumsum(-1) <= n), losses.IGNORE_INDEX)


def ceu_target(rows: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """q = softmax(z with the label's logit at -inf), detached, for [N, V] rows and [N] labels."""
    masked = losses.upcast(rows.detach()).scatter(-1, labels.unsqueeze(-1), float("-inf"))
    return torch.softmax(masked, -1)


def ceu_term(model, batch, reference, settings, logs):
    part = batch["forget"]
    logits = logits_of(model, part)
    logs["forget_nll"] = losses.nll(logits.detach(), part["labels"])
    labels = without_first_answer_tokens(part["labels"], settings.ceu_ignore_first_n_answer_tokens)
    rows = losses.answer_rows(logits.detach(), labels)
    if rows.shape[0] == 0:  # every answer shorter than the tokens left out: nothing to unlearn here
        return logits.sum() * 0.0
    target = ceu_target(rows, losses.answer_labels(labels))
    del rows  # only q stays next to the logits
    return soft_cross_entropy(logits, target, labels)


register_method(Method("ceu", "CE-U (arXiv 2503.01224)", ceu_term, default_retain_weight=0.0,
                       weights_source="open-unlearning's CE-U trainer (forget term only)",
                       hyperparameters=(CEU_IGNORE_FIRST,)))
