"""The LM head on chosen positions only, through transformers' ``logits_to_keep``.

A causal LM's forward runs the body on every position; the LM head (a [H, V] projection, and a model's
final soft-capping or scaling after it) only needs to run where the logits are read. transformers'
causal LMs take ``logits_to_keep`` and pass it to `slice_logits_to_keep` before the head: an int keeps the
last positions (answer scoring uses that), a boolean [B, T] mask keeps the True positions of each row and
returns flattened [N, V] logits (answer positions differ from row to row, so this is what the reference
forwards use). Models without that path get their full logits, from which the rows are selected: same
values either way.
"""

from __future__ import annotations

import functools
import inspect

import torch

from ..answer_tokens import answer_rows, predicts_answer


def causal_lm(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model inside DDP / DeepSpeed engine (``.module``) and PEFT (``get_base_model``) wrappers."""
    from transformers import PreTrainedModel

    inner = model
    # (a DeepSpeed engine has a `config` of its own: the wrapped model is told apart by its class)
    while not isinstance(inner, PreTrainedModel) and not hasattr(inner, "get_base_model") \
            and isinstance(getattr(inner, "module", None), torch.nn.Module):
        inner = inner.module
    get_base = getattr(inner, "get_base_model", None)  # PeftModel
    return get_base() if callable(get_base) else inner


def accepts_logits_to_keep(model: torch.nn.Module) -> bool:
    """Whether the model's forward takes ``logits_to_keep`` (an int keeps the last positions)."""
    try:
        return "logits_to_keep" in inspect.signature(causal_lm(model).forward).parameters
    except (TypeError, ValueError):
        return False


def keeps_masked_positions(model: torch.nn.Module) -> bool:
    """Whether a boolean [B, T] ``logits_to_keep`` gives the [N, V] logits of the True positions: the forward
    passes it to transformers' `slice_logits_to_keep`, and that function takes masks (newer transformers)."""
    return (accepts_logits_to_keep(model) and _slicing_takes_masks()
            and _forward_slices_hidden_states(type(causal_lm(model)).forward))


@functools.cache
def _slicing_takes_masks() -> bool:
    try:
        from transformers.modeling_utils import slice_logits_to_keep
    except ImportError:
        return False
    hidden = torch.arange(4.0).view(1, 2, 2)
    try:
        kept = slice_logits_to_keep(hidden, torch.tensor([[False, True]]))
    except Exception:  # an older version that only slices
        return False
    return kept.shape == (1, 2) and kept.tolist() == [[2.0, 3.0]]


@functools.cache
def _forward_slices_hidden_states(forward) -> bool:
    # Some forwards take the argument but slice on their own (``hidden_states[:, slice_indices]``), which a
    # mask would break: only the shared function is trusted.
    try:
        return "slice_logits_to_keep(" in inspect.getsource(forward)
    except (OSError, TypeError):
        return False


def answer_logits(model: torch.nn.Module, part: dict, masked: bool | None = None) -> torch.Tensor:
    """[N, V] the logits at the N positions that predict an answer token, in `answer_rows` order.

    The body runs on every position, the LM head only on those N when the model supports a boolean
    ``logits_to_keep`` (`masked`; checked when None), else on all of them and the rows are selected after.
    """
    labels = part["labels"]
    if masked is None:
        masked = keeps_masked_positions(model)
    if not masked:
        return answer_rows(model(input_ids=part["input_ids"], attention_mask=part["attention_mask"]).logits, labels)
    keep = predicts_answer(labels)
    logits = model(input_ids=part["input_ids"], attention_mask=part["attention_mask"], logits_to_keep=keep).logits
    if logits.dim() != 2 or logits.shape[0] != int(keep.sum()):
        raise RuntimeError(f"{type(causal_lm(model)).__name__} returned logits of shape {tuple(logits.shape)} for a "
                           f"boolean logits_to_keep with {int(keep.sum())} positions; expected [N, vocab].")
    return logits
