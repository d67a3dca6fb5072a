"""Greedy decoding that spends no decode steps on rows that have already finished.

``model.generate`` stops a batch only when its last row has emitted EOS: on a trained TOFU model
two thirds of the decode row-steps of a batch of 32 went to rows that had already finished.
:func:`greedy_decode` keeps a pool of at most ``batch_size`` live rows instead:

* a row leaves the pool (and its keys/values leave the KV cache) as soon as it emits a stop token
  or reaches ``max_new_tokens``;
* when half the pool is free, the next prompts (longest first) are prefilled together and their
  cache is merged into the pool's, left-padded to a common length;
* columns that have become padding for every live row are trimmed from the cache.

Every row keeps its own positions (``position_ids`` = number of its real tokens so far) and an
attention mask over its real tokens, so a row's logits are those of the same prompt decoded alone up
to floating-point summation order: greedy outputs are token-identical to batch size 1 (checked in
float64 by the tests).  The KV buffers grow in chunks (no per-step concatenation of the whole cache:
with ``DynamicCache`` that copy made decoding about 2x slower on CPU).

``transformers``' own continuous batching (``model.generate_batch``, paged attention) was tried
first: on CPU it took 66 s where this loop takes under 5 s (32 TOFU prompts, 30 new tokens,
the 5.5 M-parameter benchmark Llama), so it is not used here.

Only models whose default ``DynamicCache`` holds plain full-attention layers are decoded this way
(Llama, Mistral without sliding window, Qwen2, ...): :func:`supports_row_pool` says which; the caller
falls back to ``model.generate`` for the others (sliding windows, linear attention, encoder-decoders).
"""

from __future__ import annotations

import functools
import inspect
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Optional

import torch

__all__ = ["DecodeStats", "supports_row_pool", "greedy_decode"]


@dataclass
class DecodeStats:
    """Decode accounting: a *row-step* is one row of one forward that produces a next token (the
    prefill's last position included); ``finished_row_steps`` are those spent on rows that had already
    emitted their stop token (or reached the length cap) and whose output is thrown away."""

    row_steps: int = 0
    finished_row_steps: int = 0
    forwards: int = 0

    @property
    def waste(self) -> float:
        """Share of the decode row-steps spent on finished rows."""
        return self.finished_row_steps / self.row_steps if self.row_steps else 0.0

    def add(self, other: "DecodeStats") -> None:
        self.row_steps += other.row_steps
        self.finished_row_steps += other.finished_row_steps
        self.forwards += other.forwards


def _base_model(model):
    get_base = getattr(model, "get_base_model", None)  # PeftModel
    return get_base() if callable(get_base) else model


def _cache_kwarg(model) -> Optional[str]:
    """The forward's name for the KV cache: ``cache`` (transformers >= 5.2x) or ``past_key_values``."""
    try:
        params = inspect.signature(_base_model(model).forward).parameters
    except (TypeError, ValueError):
        return None
    for name in ("cache", "past_key_values"):
        if name in params:
            return name
    return None


def supports_row_pool(model) -> bool:
    """Whether :func:`greedy_decode` can run this model: a decoder-only model whose default dynamic
    cache is made of plain full-attention layers and whose forward takes positions and a cache."""
    from transformers.cache_utils import DynamicCache, DynamicLayer

    base = _base_model(model)
    config = getattr(base, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False) or _cache_kwarg(model) is None:
        return False
    try:
        params = inspect.signature(base.forward).parameters
        if "position_ids" not in params or "attention_mask" not in params:
            return False
        layers = DynamicCache(config=config).layers
    except Exception:  # an architecture whose cache cannot be described from its config
        return False
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


@functools.lru_cache(maxsize=None)
def _pool_layer_class():
    from transformers.cache_utils import DynamicLayer

    class PoolLayer(DynamicLayer, _PoolStorage):
        """A dynamic cache layer backed by :class:`_PoolStorage`."""

        is_croppable = False

        def __init__(self, reserve: int):
            DynamicLayer.__init__(self)
            _PoolStorage.__init__(self, reserve)

        update = _PoolStorage.update
        get_seq_length = _PoolStorage.get_seq_length
        get_mask_sizes = _PoolStorage.get_mask_sizes

    return PoolLayer


class _PoolStorage:
    """One attention layer's keys and values, ``[rows, heads, capacity, head_dim]``, of which the
    first ``length`` columns are in use: the cache-layer methods full-attention decoders call
    (``update``, ``get_seq_length``, ``get_mask_sizes``) and the pool's own operations."""

    def __init__(self, reserve: int):
        self.reserve = reserve
        self.k: Optional[torch.Tensor] = None
        self.v: Optional[torch.Tensor] = None
        self.length = 0

    # -- the interface the model calls --------------------------------------------------------
    def update(self, key_states, value_states, *args, **kwargs):
        end = self.length + key_states.shape[-2]
        if self.k is None:
            self.k, self.v = self._alloc(key_states, key_states.shape[0], end + self.reserve)
            self.is_initialized, self.device = True, key_states.device
        elif end > self.k.shape[-2]:
            k, v = self._alloc(self.k, self.k.shape[0], end + self.reserve)
            k[:, :, : self.length] = self.k[:, :, : self.length]
            v[:, :, : self.length] = self.v[:, :, : self.length]
            self.k, self.v = k, v
        self.k[:, :, self.length: end] = key_states
        self.v[:, :, self.length: end] = value_states
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]

    def get_seq_length(self) -> int:
        return self.length

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.length + query_length, 0

    # -- the pool's operations ----------------------------------------------------------------
    @staticmethod
    def _alloc(like: torch.Tensor, rows: int, capacity: int):
        shape = (rows, like.shape[1], capacity, like.shape[3])
        return (torch.zeros(shape, dtype=like.dtype, device=like.device),
                torch.zeros(shape, dtype=like.dtype, device=like.device))

    def keep_rows(self, rows: torch.Tensor) -> None:
        self.k, self.v = self.k.index_select(0, rows), self.v.index_select(0, rows)

    def drop_leading(self, n: int) -> None:
        self.k, self.v = self.k[:, :, n:], self.v[:, :, n:]
        self.length -= n

    def merge(self, other: "_PoolStorage") -> None:
        """Appends ``other``'s rows; the shorter side is left-padded with zero keys/values (masked)."""
        width = max(self.length, other.length)
        k, v = self._alloc(self.k, self.k.shape[0] + other.k.shape[0], width + self.reserve)
        rows = self.k.shape[0]
        k[:rows, :, width - self.length: width] = self.k[:, :, : self.length]
        v[:rows, :, width - self.length: width] = self.v[:, :, : self.length]
        k[rows:, :, width - other.length: width] = other.k[:, :, : other.length]
        v[rows:, :, width - other.length: width] = other.v[:, :, : other.length]
        self.k, self.v, self.length = k, v, width


def _pool_cache(model, reserve: int):
    """A transformers ``Cache`` with one pool layer per decoder layer."""
    from transformers.cache_utils import Cache

    n_layers = _base_model(model).config.get_text_config(decoder=True).num_hidden_layers
    layer = _pool_layer_class()
    return Cache(layers=[layer(reserve) for _ in range(n_layers)])


def greedy_decode(
    model,
    prompts: Sequence[Sequence[int]],
    *,
    batch_size: int,
    max_new_tokens: int,
    stop_ids: set[int],
    pad_id: int,
    device: torch.device,
    stats: Optional[DecodeStats] = None,
    on_done: Optional[Callable[[int], None]] = None,
    reserve: int = 32,
) -> list[list[int]]:
    """Greedy continuations of ``prompts`` (token-id lists), without the stop token that ends them.

    At most ``batch_size`` rows are decoded at once; rows leave as they finish and new prompts are
    prefilled when half the pool is free.  ``on_done(i)`` is called when prompt ``i`` finishes.  The
    model must pass :func:`supports_row_pool` and be in eval mode under ``torch.inference_mode()``.
    """
    if batch_size <= 0 or max_new_tokens <= 0:
        raise ValueError(f"batch_size and max_new_tokens must be > 0, got {batch_size} and {max_new_tokens}.")
    cache_kw = _cache_kwarg(model)
    stats = stats if stats is not None else DecodeStats()
    stop = torch.tensor(sorted(stop_ids), dtype=torch.long, device=device)
    outputs: list[list[int]] = [[] for _ in prompts]
    pending = deque(sorted(range(len(prompts)), key=lambda i: -len(prompts[i])))
    refill_at = max(1, batch_size // 2)

    cache = None
    live = torch.empty(0, dtype=torch.long)  # prompt index of each pool row
    mask = torch.empty(0, 0, dtype=torch.long, device=device)  # [rows, cache columns]: 1 = real token
    positions = torch.empty(0, dtype=torch.long, device=device)  # position of each row's next token
    last = torch.empty(0, dtype=torch.long, device=device)  # each row's latest token

    def forward(input_ids, attention_mask, position_ids, layer_cache):
        out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                    use_cache=True, logits_to_keep=1, **{cache_kw: layer_cache})
        stats.forwards += 1
        stats.row_steps += input_ids.shape[0]
        return out.logits[:, -1].argmax(dim=-1)

    while pending or len(live):
        if pending and batch_size - len(live) >= (refill_at if len(live) else 1):
            take = [pending.popleft() for _ in range(min(batch_size - len(live), len(pending)))]
            width = max(len(prompts[i]) for i in take)
            ids = torch.full((len(take), width), pad_id, dtype=torch.long)
            new_mask = torch.zeros((len(take), width), dtype=torch.long)
            for row, i in enumerate(take):
                ids[row, width - len(prompts[i]):] = torch.as_tensor(prompts[i], dtype=torch.long)
                new_mask[row, width - len(prompts[i]):] = 1
            ids, new_mask = ids.to(device), new_mask.to(device)
            pos = (new_mask.cumsum(-1) - 1).clamp_min(0)
            new_cache = _pool_cache(model, reserve)
            token = forward(ids, new_mask, pos, new_cache)
            if cache is None:
                cache, mask, positions, last = new_cache, new_mask, new_mask.sum(-1), token
                live = torch.tensor(take, dtype=torch.long)
                fresh = torch.ones(len(take), dtype=torch.bool)
            else:
                width = max(mask.shape[1], new_mask.shape[1])
                for mine, theirs in zip(cache.layers, new_cache.layers):
                    mine.merge(theirs)
                mask = torch.cat([torch.nn.functional.pad(mask, (width - mask.shape[1], 0)),
                                  torch.nn.functional.pad(new_mask, (width - new_mask.shape[1], 0))])
                positions = torch.cat([positions, new_mask.sum(-1)])
                last = torch.cat([last, token])
                live = torch.cat([live, torch.tensor(take, dtype=torch.long)])
                fresh = torch.cat([torch.zeros(len(live) - len(take), dtype=torch.bool),
                                   torch.ones(len(take), dtype=torch.bool)])
            new_tokens = token.tolist()
            rows_with_token = fresh.nonzero().flatten().tolist()
        else:
            mask = torch.cat([mask, mask.new_ones(len(live), 1)], dim=1)
            last = forward(last[:, None], mask, positions[:, None], cache)
            positions = positions + 1
            new_tokens = last.tolist()
            rows_with_token = list(range(len(live)))

        done = torch.zeros(len(live), dtype=torch.bool)
        stop_hit = torch.isin(last, stop).tolist()
        for k, row in enumerate(rows_with_token):
            i = int(live[row])
            if stop_hit[row]:
                done[row] = True
            else:
                outputs[i].append(new_tokens[k])
                done[row] = len(outputs[i]) >= max_new_tokens
        if bool(done.any()):
            for row in done.nonzero().flatten().tolist():
                if on_done is not None:
                    on_done(int(live[row]))
            keep = (~done).nonzero().flatten()
            live = live[keep]
            if len(live) == 0:
                cache = None
                continue
            keep_d = keep.to(device)
            for layer in cache.layers:
                layer.keep_rows(keep_d)
            mask, positions, last = mask.index_select(0, keep_d), positions[keep_d], last[keep_d]
            first = int(mask.any(0).long().argmax())  # leading columns no live row uses
            if first:
                for layer in cache.layers:
                    layer.drop_leading(first)
                mask = mask[:, first:]
    return outputs
