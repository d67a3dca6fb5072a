"""Which positions of a causal-LM batch count: the one place for the shift and the mask.

``labels`` are :data:`IGNORE_INDEX` (-100) on prompt and padding (the collator and `encode_qa` write
them), and ``logits[:, t]`` predicts token ``t + 1``: a position counts when the label it predicts,
``labels[:, t + 1]``, is an answer token. The losses, the GNB Hessian estimate and the evaluation
metrics all read their positions through these functions. Plain torch; imports nothing.
"""

from __future__ import annotations

import torch

IGNORE_INDEX = -100


def answer_mask(labels: torch.Tensor) -> torch.Tensor:
    """[B, T-1] True where the shifted label ``labels[:, t + 1]`` is an answer token."""
    return labels[:, 1:] != IGNORE_INDEX


def predicts_answer(labels: torch.Tensor) -> torch.Tensor:
    """[B, T] True at the positions whose logits predict an answer token (the last position never does).

    Full-length, so ``logits[predicts_answer(labels)]`` indexes the logits directly: a ``logits[:, :-1]``
    slice's backward would allocate a second [B, T, V] gradient next to the index's.
    """
    mask = torch.zeros_like(labels, dtype=torch.bool)
    mask[:, :-1] = answer_mask(labels)
    return mask


def answer_rows(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[N, V] the logits at the N positions that predict an answer token, row-major."""
    return logits[predicts_answer(labels)]


def answer_labels(labels: torch.Tensor) -> torch.Tensor:
    """[N] the answer tokens, in the order of `answer_rows`."""
    shifted = labels[:, 1:]
    return shifted[answer_mask(labels)]


def answer_lengths(labels: torch.Tensor) -> torch.Tensor:
    """[B] the number of answer tokens of each row."""
    return answer_mask(labels).sum(-1)
