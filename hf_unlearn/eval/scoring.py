"""Model-facing half of the evaluation: batched answer scoring and batched greedy generation.

Scoring
-------
:func:`score_answers` takes a flat list of ``(question, answer)`` pairs -- typically every true,
paraphrased and perturbed answer of every question of several splits at once -- tokenises each
pair with :func:`hf_unlearn.data.formatting.encode_qa` (so evaluation scores exactly the tokens
training uses), sorts the pairs by length, and runs one right-padded forward per batch.  From that
single forward it computes, per pair:

* ``avg_nll``: the mean cross-entropy over the answer tokens and the EOS that closes the answer;
* optionally (``with_token_stats``), over the answer tokens WITHOUT the final EOS: the token
  log-probabilities, the Min-K%++ standardised token scores and the teacher-forced
  argmax-correct flags (for the privacy / memorisation metrics).

The vocabulary-sized work is done once per batch and only on the scored positions: the logits of
the answer positions are gathered into a compact ``[tokens, vocab]`` matrix, normalised once with
``logsumexp``, and everything else is read from it.  The definitions are those of
:mod:`hf_unlearn.eval.metrics` (``answer_token_logprobs``, ``min_k_plus_plus_token_scores``,
``argmax_correct``), which the tests check this fused computation against.

Attention masks come from the sequence lengths, never from ``input_ids != pad``: a tokenizer that
pads with its EOS token would otherwise hide the EOS that ends each answer.

Generation
----------
:func:`generate_answers` runs greedy decoding from the prompts
(:func:`~hf_unlearn.data.formatting.encode_prompt`) and decodes only the new tokens, cut at the first
end-of-sequence token: by default in a pool of rows that finished rows leave at once
(:mod:`hf_unlearn.eval.decoding`), else with ``model.generate`` on length-sorted, left-padded batches.
The tokenizer is never modified: padding is done here, from lengths.

Both functions put the model in eval mode and restore its training mode afterwards, run under
``torch.inference_mode()``, and work under DeepSpeed ZeRO-3 with several processes (every rank
runs the same number of forwards / ``generate`` calls, ``synced_gpus=True``; generation uses
``model.generate`` there).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from ..data.formatting import IGNORE_INDEX, PromptTemplate, encode_prompt, encode_qa
from ..models.heads import accepts_logits_to_keep, keeps_masked_positions
from .decoding import DecodeStats, greedy_decode, supports_row_pool
from .metrics import MIN_K_PP_VARIANCE_FLOOR

__all__ = [
    "AnswerScore",
    "check_tokenizer",
    "padding_id",
    "eos_ids",
    "score_answers",
    "score_sequences",
    "generate_answers",
    "generate_from_ids",
    "DecodeStats",
    "dist_rank_world",
]


@dataclass
class AnswerScore:
    """Scores of one answer given its question.

    ``avg_nll`` covers the answer tokens plus the closing EOS (``num_tokens`` of them).  The
    per-token arrays (``None`` unless requested) cover the answer tokens without that EOS.
    """

    avg_nll: float
    num_tokens: int
    token_logprobs: Optional[np.ndarray] = None
    min_k_plus_plus: Optional[np.ndarray] = None
    correct: Optional[np.ndarray] = None

    @property
    def prob(self) -> float:
        return math.exp(-self.avg_nll)


# --------------------------------------------------------------------------------------------
# tokenizer / distributed helpers
# --------------------------------------------------------------------------------------------


def check_tokenizer(tokenizer) -> None:
    """Raises a ValueError that says what to do when the tokenizer cannot end answers or pad."""
    if tokenizer is None:
        raise ValueError("A tokenizer is needed to evaluate: pass the model's tokenizer (processing_class).")
    if getattr(tokenizer, "eos_token_id", None) is None:
        has_pad = getattr(tokenizer, "pad_token_id", None) is not None
        raise ValueError(
            "The tokenizer has no eos_token"
            + ("" if has_pad else " and no pad_token")
            + ": answers are scored up to and including the EOS that ends them, and batches need a "
            "padding id. Set tokenizer.eos_token to the model's end-of-text token (as in training), and "
            "if it has no padding token, `tokenizer.pad_token = tokenizer.eos_token` (safe here: attention "
            "masks come from lengths)."
        )


def padding_id(tokenizer) -> int:
    """The tokenizer's pad id, else its EOS id (masks come from lengths, so pad = eos is harmless)."""
    check_tokenizer(tokenizer)
    pad = tokenizer.pad_token_id
    return int(tokenizer.eos_token_id if pad is None else pad)


def eos_ids(model, tokenizer) -> list[int]:
    """The tokenizer's EOS plus any end-of-sequence ids of the model's generation config."""
    ids = [int(tokenizer.eos_token_id)]
    gen = getattr(model, "generation_config", None)
    extra = getattr(gen, "eos_token_id", None) if gen is not None else None
    if isinstance(extra, int):
        extra = [extra]
    for i in extra or []:
        if i is not None and int(i) not in ids:
            ids.append(int(i))
    return ids


def dist_rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _zero3() -> bool:
    try:
        from transformers.integrations import is_deepspeed_zero3_enabled
    except ImportError:  # pragma: no cover - very old transformers
        return False
    return bool(is_deepspeed_zero3_enabled())


def _model_device(model) -> torch.device:
    try:
        return model.get_input_embeddings().weight.device
    except (AttributeError, NotImplementedError):
        pass
    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        return device
    return next(model.parameters()).device


def _synced_batch_count(n_batches: int, device: torch.device) -> int:
    """Under ZeRO-3 every rank must run the same number of forwards (parameters are gathered
    collectively layer by layer): the largest local count, agreed by all-reduce."""
    rank, world = dist_rank_world()
    if world == 1 or not _zero3():
        return n_batches
    t = torch.tensor([n_batches], dtype=torch.long, device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return int(t.item())


def _whole_parameters(model):
    """ZeRO-3 without its engine (an evaluation before training starts): the parameters are
    partitioned placeholders and no hooks gather them at forward time, so gather them here for
    the length of the evaluation.  Once the engine wraps the model its hooks do the gathering."""
    partitioned = [p for p in model.parameters() if hasattr(p, "ds_id")]
    if not partitioned or any(hasattr(m, "ds_inflight_param_registry") for m in model.modules()):
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(partitioned, modifier_rank=None)


@contextlib.contextmanager
def _eval_mode(model):
    was_training = model.training
    model.eval()
    try:
        # ZeRO-3 gathers weights inside the forward; gathered in inference mode, the ones it keeps whole
        # would become inference tensors that the next training step cannot backward through.
        partitioned = any(hasattr(p, "ds_id") for p in model.parameters())
        with _whole_parameters(model), (torch.no_grad() if partitioned else torch.inference_mode()):
            yield
    finally:
        model.train(was_training)


def _progress(total: int, desc: str, show: bool):
    from tqdm.auto import tqdm

    rank, _ = dist_rank_world()
    return tqdm(total=total, desc=desc, disable=(not show) or rank != 0, leave=False, dynamic_ncols=True)


def _batches(order: Sequence[int], batch_size: int) -> list[list[int]]:
    return [list(order[i: i + batch_size]) for i in range(0, len(order), batch_size)]


# --------------------------------------------------------------------------------------------
# scoring
# --------------------------------------------------------------------------------------------


def _encode_pairs(tokenizer, pairs: Sequence[tuple[str, str]],
                  template: Optional[PromptTemplate] = None) -> list[tuple[list[int], int]]:
    """(input ids, prompt length) of each pair, via encode_qa."""
    cache: dict[tuple[str, str], tuple[list[int], int]] = {}
    out = []
    for question, answer in pairs:
        key = (question, answer)
        if key not in cache:
            ex = encode_qa(tokenizer, question, answer, template=template)
            n_prompt = sum(label == IGNORE_INDEX for label in ex.labels)
            if n_prompt == 0:  # the first answer token would have no position predicting it
                raise ValueError(f"The prompt of question {question!r} encodes to no tokens.")
            cache[key] = (ex.input_ids, n_prompt)
        out.append(cache[key])
    return out


def _score_batch(model, encoded, need_stats, pad_id, device):
    """One right-padded forward; returns a list of AnswerScore in the batch order."""
    lengths = [len(ids) for ids, _ in encoded]
    width = max(lengths)
    input_ids, attention_mask = _right_padded([ids for ids, _ in encoded], pad_id)
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    first = min(n_prompt for _, n_prompt in encoded) - 1
    # The LM head runs only from the first answer position on, where the forward allows it.
    kwargs = {"logits_to_keep": width - first} if accepts_logits_to_keep(model) else {}
    logits = model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).logits  # [B, <=T, V]
    return _scores_from_logits(logits, width - logits.shape[1], input_ids, [n for _, n in encoded], lengths,
                               need_stats)


def _right_padded(seqs, pad_id):
    """``[B, T]`` ids right-padded with ``pad_id`` and the attention mask of the real tokens."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    width = int(lengths.max())
    input_ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    for row, ids in enumerate(seqs):
        input_ids[row, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
    return input_ids, (torch.arange(width)[None, :] < lengths[:, None]).long()


def _score_batch_shared_prefix(model, encoded, need_stats, pad_id, device):
    """The scores of :func:`_score_batch` with each distinct context computed once.

    A pair ``(ids, n)`` is cut into its *prefix* ``ids[:n-1]`` and its *suffix* ``ids[n-1:]`` (the
    last context token, whose logits predict the first scored token, then the scored tokens).  The
    batch's distinct prefixes run in one left-padded forward into a KV cache; its rows are repeated
    once per pair that shares them, and the suffixes run on top, right-padded, each row with the
    positions and attention mask of its own real tokens: every scored logit attends to exactly the
    keys/values of the one-sequence forward (up to floating-point summation order)."""
    from .decoding import _cache_kwarg, _pool_cache

    prefixes: dict[tuple[int, ...], int] = {}
    group = [prefixes.setdefault(tuple(ids[: n - 1]), len(prefixes)) for ids, n in encoded]
    prefix_ids = list(prefixes)
    suffixes = [ids[n - 1:] for ids, n in encoded]

    width = max(len(p) for p in prefix_ids)
    ids = torch.full((len(prefix_ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prefix_ids), width), dtype=torch.long)
    for row, p in enumerate(prefix_ids):  # left-padded: every prefix ends in the last cache column
        ids[row, width - len(p):] = torch.as_tensor(p, dtype=torch.long)
        mask[row, width - len(p):] = 1
    ids, mask = ids.to(device), mask.to(device)
    suffix_ids, suffix_mask = _right_padded(suffixes, pad_id)
    suffix_ids, suffix_mask = suffix_ids.to(device), suffix_mask.to(device)

    cache_kw = _cache_kwarg(model)
    cache = _pool_cache(model, reserve=suffix_ids.shape[1])
    head = {"logits_to_keep": 1} if accepts_logits_to_keep(model) else {}
    model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp_min(0), use_cache=True,
          **head, **{cache_kw: cache})
    rows = torch.tensor(group, dtype=torch.long, device=device)
    for layer in cache.layers:
        layer.keep_rows(rows)  # one cache row per pair (repeated rows for a shared prefix)
    mask = mask.index_select(0, rows)
    positions = mask.sum(-1, keepdim=True) + torch.arange(suffix_ids.shape[1], device=device)[None, :]
    lengths = [len(s) for s in suffixes]
    # The LM head on the scored positions only (each suffix but its last token), where the forward allows it.
    scored = (torch.arange(suffix_ids.shape[1])[None, :] < torch.tensor(lengths)[:, None] - 1).to(device)
    head = {"logits_to_keep": scored} if keeps_masked_positions(model) else {}
    logits = model(input_ids=suffix_ids, attention_mask=torch.cat([mask, suffix_mask], dim=1), position_ids=positions,
                   use_cache=True, **head, **{cache_kw: cache}).logits
    offset = None if head else suffix_ids.shape[1] - logits.shape[1]
    return _scores_from_logits(logits, offset, suffix_ids, [1] * len(suffixes), lengths, need_stats)


def _scores_from_logits(logits, offset, input_ids, starts, lengths, need_stats):
    """AnswerScores of the rows of ``input_ids`` ([B, T]) from their ``logits``: row ``r`` scores its tokens
    ``starts[r] .. lengths[r] - 1``.  ``logits[:, k]`` belongs to position ``offset + k``; ``offset=None``:
    ``logits`` are already ``[N, V]``, those of the scoring positions only, row by row."""
    b = len(starts)
    # Positions whose logits predict a scored token: start - 1 .. len - 2.
    n_answer = [length - start for length, start in zip(lengths, starts)]
    rows = torch.repeat_interleave(torch.arange(b), torch.tensor(n_answer))
    cols = torch.cat([torch.arange(start - 1, length - 1) for length, start in zip(lengths, starts)])
    rows, cols = rows.to(logits.device), cols.to(logits.device)
    picked = logits if offset is None else logits[rows, cols - offset]  # [N, V], answer positions only
    del logits
    work_dtype = torch.float64 if picked.dtype == torch.float64 else torch.float32
    picked = picked.to(work_dtype)
    targets = input_ids.to(picked.device)[rows, cols + 1]

    lse = torch.logsumexp(picked, dim=-1)
    token_lp = picked.gather(-1, targets[:, None]).squeeze(-1) - lse

    stat_rows = torch.tensor(
        [need for need, n in zip(need_stats, n_answer) for _ in range(n)], dtype=torch.bool, device=picked.device
    )
    mkpp = correct = None
    if bool(stat_rows.any()):
        sub = picked[stat_rows]
        logp = sub - lse[stat_rows][:, None]
        p = logp.exp()
        live = p > 0  # entries with p == 0 (-inf logits) contribute nothing
        zero = torch.zeros((), dtype=logp.dtype, device=logp.device)
        mu = torch.where(live, p * logp, zero).sum(-1)
        centred = logp - mu[:, None]
        var = torch.where(live, p * centred * centred, zero).sum(-1)
        del p, live, centred, logp
        sigma = var.clamp_min(MIN_K_PP_VARIANCE_FLOOR).sqrt()
        mkpp_sub = (token_lp[stat_rows] - mu) / sigma
        correct_sub = sub.argmax(dim=-1) == targets[stat_rows]
        del sub
        mkpp = torch.zeros_like(token_lp)
        mkpp[stat_rows] = mkpp_sub
        correct = torch.zeros_like(targets, dtype=torch.bool)
        correct[stat_rows] = correct_sub
        mkpp = mkpp.double().cpu().numpy()
        correct = correct.cpu().numpy()
    del picked

    token_lp = token_lp.double().cpu().numpy()
    out = []
    start = 0
    for n, need in zip(n_answer, need_stats):
        seg = slice(start, start + n)  # n >= 1: encode_qa always ends the answer with EOS
        start += n
        score = AnswerScore(avg_nll=float(-token_lp[seg].mean()), num_tokens=n)
        if need:
            no_eos = slice(seg.start, seg.stop - 1)
            score.token_logprobs = token_lp[no_eos].copy()
            score.min_k_plus_plus = mkpp[no_eos].copy()
            score.correct = correct[no_eos].copy()
        out.append(score)
    return out


def score_answers(
    model,
    tokenizer,
    pairs: Sequence[tuple[str, str]],
    batch_size: int = 32,
    with_token_stats: bool | Sequence[bool] = False,
    show_progress: bool = True,
    desc: str = "scoring answers",
    template: Optional[PromptTemplate] = None,
    share_prefix: Optional[bool] = None,
) -> list[AnswerScore]:
    """Scores every ``(question, answer)`` pair; returns one :class:`AnswerScore` per pair, in order.

    ``with_token_stats`` (one flag, or one per pair) asks for the per-token arrays without the
    final EOS (token log-probs, Min-K%++ scores, argmax-correct flags).  Pairs are batched
    ``batch_size`` at a time; the results do not depend on ``batch_size`` beyond floating-point
    noise. ``template``: the prompt format (default: auto).  ``share_prefix``: see
    :func:`score_sequences` (the answers of one question share its prompt).
    """
    pairs = list(pairs)
    if isinstance(with_token_stats, bool):
        need = [with_token_stats] * len(pairs)
    else:
        need = [bool(x) for x in with_token_stats]
        if len(need) != len(pairs):
            raise ValueError(f"with_token_stats has {len(need)} flags for {len(pairs)} pairs.")
    padding_id(tokenizer)  # fails first, with the fix, on a tokenizer that cannot pad
    return score_sequences(model, tokenizer, _encode_pairs(tokenizer, pairs, template), batch_size, need, show_progress,
                           desc, share_prefix=share_prefix)


def _prefix_batches(encoded, indices, batch_size) -> list[list[int]]:
    """Batches of at most ``batch_size`` sequences in which the sequences sharing a prefix
    (``ids[:n-1]``) sit together (a group larger than a batch is split), longest suffixes first."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i in indices:
        ids, n = encoded[i]
        groups.setdefault(tuple(ids[: n - 1]), []).append(i)
    suffix = [len(ids) - n for ids, n in encoded]
    members = [sorted(g, key=lambda i: -suffix[i]) for g in groups.values()]
    members.sort(key=lambda g: -suffix[g[0]])
    batches: list[list[int]] = [[]]
    for g in members:
        for chunk in _batches(g, batch_size):
            if len(batches[-1]) + len(chunk) > batch_size:
                batches.append([])
            batches[-1].extend(chunk)
    return [b for b in batches if b]


def score_sequences(
    model,
    tokenizer,
    encoded: Sequence[tuple[list[int], int]],
    batch_size: int = 32,
    with_token_stats: bool | Sequence[bool] = False,
    show_progress: bool = True,
    desc: str = "scoring",
    share_prefix: Optional[bool] = None,
) -> list[AnswerScore]:
    """:func:`score_answers` on already tokenised sequences: ``(input ids, n_context)`` each, scoring
    every token after the first ``n_context`` (>= 1); the per-token arrays leave out the last one.

    ``share_prefix``: sequences with the same context (all of it but its last token; e.g. the
    answers of one question, which share its prompt) run that context once, into a KV cache whose
    rows are repeated for each of them, then their own tokens on top
    (:func:`_score_batch_shared_prefix`: the same logits up to floating-point summation order).
    ``None`` (default): where it is safe -- a decoder whose cache is plain full attention
    (:func:`~hf_unlearn.eval.decoding.supports_row_pool`), not under DeepSpeed ZeRO-3 (whose ranks run
    every forward together), for contexts of at least two tokens that two or more sequences share;
    the others get one right-padded forward each, sorted by length.  ``False``: never; ``True``:
    wherever the context allows it (an error for a model that cannot).
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}.")
    encoded = list(encoded)
    need = [with_token_stats] * len(encoded) if isinstance(with_token_stats, bool) else list(with_token_stats)
    bad = [i for i, (ids, n) in enumerate(encoded) if not 1 <= n < len(ids)]
    if bad:
        raise ValueError(f"Sequences {bad[:10]} have no context token or nothing to score after it.")
    pad_id = padding_id(tokenizer)
    device = _model_device(model)
    shared: list[int] = []
    if share_prefix is not False:
        able = supports_row_pool(model)
        if share_prefix and not able:
            raise ValueError(f"share_prefix=True needs a decoder whose cache layers are plain full attention; "
                             f"{type(_base_model(model)).__name__} is not: use share_prefix=None (or False).")
        if able and (share_prefix or not _zero3()):
            counts: dict[tuple[int, ...], int] = {}
            for ids, n in encoded:
                key = tuple(ids[: n - 1])
                counts[key] = counts.get(key, 0) + 1
            shared = [i for i, (ids, n) in enumerate(encoded)
                      if n >= 2 and (share_prefix or counts[tuple(ids[: n - 1])] >= 2)]
    in_shared = set(shared)
    order = sorted((i for i in range(len(encoded)) if i not in in_shared), key=lambda i: -len(encoded[i][0]))
    batches = [(b, _score_batch_shared_prefix) for b in _prefix_batches(encoded, shared, batch_size)]
    batches += [(b, _score_batch) for b in _batches(order, batch_size)]
    n_batches = _synced_batch_count(len(batches), device)
    results: list[Optional[AnswerScore]] = [None] * len(encoded)
    with _eval_mode(model), _progress(n_batches, desc, show_progress) as bar:
        for k in range(n_batches):
            if k < len(batches):
                batch, score_batch = batches[k]
            elif batches:  # ZeRO-3: a rank with fewer batches repeats one so every rank runs a forward
                batch, score_batch = batches[-1]
            else:  # no pairs on this rank at all: score a throwaway pair
                dummy = _encode_pairs(tokenizer, [("?", "?")])
                _score_batch(model, dummy, [False], pad_id, device)
                bar.update(1)
                continue
            scores = score_batch(model, [encoded[i] for i in batch], [need[i] for i in batch], pad_id, device)
            if k < len(batches):
                for i, s in zip(batch, scores):
                    results[i] = s
            bar.update(1)
    return results  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# generation
# --------------------------------------------------------------------------------------------


def _base_model(model):
    get_base = getattr(model, "get_base_model", None)  # PeftModel
    return get_base() if callable(get_base) else model


def _static_cache_ok(model) -> bool:
    """Whether the model supports a preallocated KV cache (transformers marks such models with
    `_can_compile_fullgraph`).  It avoids re-concatenating the cache at every step, which halves
    greedy decoding time on CPU; outputs are the same as with the dynamic cache."""
    return bool(getattr(_base_model(model), "_can_compile_fullgraph", False))


@contextlib.contextmanager
def _keep_static_cache_length(model):
    """generate() remembers the longest static cache it made (`_previous_max_cache_length`) and
    never makes a shorter one again: leave no such trace on the caller's model."""
    base = _base_model(model)
    missing = object()
    before = getattr(base, "_previous_max_cache_length", missing)
    try:
        yield
    finally:
        if before is missing:
            if "_previous_max_cache_length" in vars(base):
                delattr(base, "_previous_max_cache_length")
        else:
            base._previous_max_cache_length = before


def _generation_config(model, tokenizer, max_new_tokens: int, pad_id: int):
    from transformers import GenerationConfig

    kwargs = {"cache_implementation": "static"} if _static_cache_ok(model) else {}
    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        eos_token_id=eos_ids(model, tokenizer),
        pad_token_id=pad_id,
        bos_token_id=getattr(tokenizer, "bos_token_id", None),
        use_cache=True,
        **kwargs,
    )


def _cut_at_eos(tokens: list[int], stop: set[int]) -> list[int]:
    for i, t in enumerate(tokens):
        if t in stop:
            return tokens[:i]
    return tokens


def generate_answers(
    model,
    tokenizer,
    questions: Sequence[str],
    batch_size: int = 32,
    max_new_tokens: int = 200,
    show_progress: bool = True,
    desc: str = "generating answers",
    template: Optional[PromptTemplate] = None,
    strategy: str = "auto",
    stats: Optional[DecodeStats] = None,
) -> list[str]:
    """Greedy answers to ``questions`` (``max_new_tokens`` at most, stopping at EOS), in order.

    Prompts are built by ``encode_prompt`` (as in training; ``template``: the prompt format, default
    auto) and decoded by :func:`generate_from_ids`, then stripped; ``strategy`` and ``stats`` are
    passed on to it.
    """
    questions = list(questions)
    padding_id(tokenizer)
    prompt_cache: dict[str, list[int]] = {}
    prompts = []
    for q in questions:
        if q not in prompt_cache:
            prompt_cache[q] = encode_prompt(tokenizer, q, template=template)
        prompts.append(prompt_cache[q])
    texts = generate_from_ids(model, tokenizer, prompts, batch_size, max_new_tokens, show_progress, desc,
                              strategy=strategy, stats=stats)
    return [text.strip() for text in texts]


def generate_from_ids(
    model,
    tokenizer,
    prompts: Sequence[Sequence[int]],
    batch_size: int = 32,
    max_new_tokens: int = 200,
    show_progress: bool = True,
    desc: str = "generating",
    strategy: str = "auto",
    stats: Optional[DecodeStats] = None,
    clean_up_tokenization_spaces: Optional[bool] = None,
) -> list[str]:
    """Greedy continuations of tokenised prompts, decoded (new tokens only, cut at the first EOS,
    special tokens skipped, not stripped; ``clean_up_tokenization_spaces`` is passed to ``decode``,
    None = the tokenizer's own setting).  The tokenizer is never modified.  ``strategy``:

    * ``"pool"``: :func:`hf_unlearn.eval.decoding.greedy_decode`, at most ``batch_size`` rows at once,
      finished rows dropped from the batch and its KV cache, new prompts prefilled as room frees up:
      no decode step on a finished row;
    * ``"generate"``: ``model.generate`` on batches of ``batch_size`` prompts sorted by length (a
      batch runs until its last row stops);
    * ``"auto"`` (default): ``"pool"`` where :func:`~hf_unlearn.eval.decoding.supports_row_pool`
      allows it and not under DeepSpeed ZeRO-3 (whose ranks must run every forward together:
      ``generate(synced_gpus=True)`` does that), else ``"generate"``.

    Both give the tokens of batch size 1 (up to floating-point summation order).  ``stats``, when
    given, accumulates the decode row-steps and those spent on finished rows.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}.")
    if max_new_tokens <= 0:
        raise ValueError(f"max_new_tokens must be > 0, got {max_new_tokens}.")
    if strategy not in ("auto", "pool", "generate"):
        raise ValueError(f"strategy must be 'auto', 'pool' or 'generate', got {strategy!r}.")
    if strategy == "auto":
        strategy = "pool" if supports_row_pool(model) and not _zero3() else "generate"
    elif strategy == "pool" and not supports_row_pool(model):
        raise ValueError(f"strategy='pool' needs a decoder whose cache layers are plain full attention; "
                         f"{type(_base_model(model)).__name__} is not: use strategy='generate' (or 'auto').")
    prompts = [list(p) for p in prompts]
    if any(not p for p in prompts):
        raise ValueError("Every prompt needs at least one token to generate from.")
    pad_id = padding_id(tokenizer)
    gen_config = _generation_config(model, tokenizer, max_new_tokens, pad_id)
    stats = stats if stats is not None else DecodeStats()
    with _eval_mode(model), _progress(len(prompts), desc, show_progress) as bar:
        if strategy == "pool":
            tokens = greedy_decode(model, prompts, batch_size=batch_size, max_new_tokens=max_new_tokens,
                                   stop_ids=set(gen_config.eos_token_id), pad_id=pad_id,
                                   device=_model_device(model), stats=stats, on_done=lambda i: bar.update(1))
        else:
            tokens = _generate_batches(model, tokenizer, prompts, batch_size, gen_config, stats, bar)
    return [tokenizer.decode(t, skip_special_tokens=True, clean_up_tokenization_spaces=clean_up_tokenization_spaces)
            for t in tokens]


def _generate_batches(model, tokenizer, prompts, batch_size, gen_config, stats, bar) -> list[list[int]]:
    """``model.generate`` on batches of prompts sorted by length (longest first), left-padded; the
    new tokens of each prompt cut at its first stop token.  Used under ZeRO-3 (``synced_gpus``) and
    for models the row pool cannot run; a batch runs until its last row stops, and ``stats``
    counts the row-steps spent on rows that had already stopped."""
    pad_id = gen_config.pad_token_id
    stop = set(gen_config.eos_token_id)
    device = _model_device(model)
    zero3 = _zero3()
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    batches = _batches(order, batch_size)
    n_batches = _synced_batch_count(len(batches), device)
    outputs: list[Optional[list[int]]] = [None] * len(prompts)
    with _keep_static_cache_length(model):
        for k in range(n_batches):
            if k < len(batches):
                batch = batches[k]
                seqs = [prompts[i] for i in batch]
            else:  # ZeRO-3 filler so that every rank calls generate the same number of times
                batch = []
                seqs = [prompts[batches[-1][0]]] if batches else [encode_prompt(tokenizer, "?")]
            width = max(len(s) for s in seqs)
            input_ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
            attention_mask = torch.zeros((len(seqs), width), dtype=torch.long)
            for row, s in enumerate(seqs):
                input_ids[row, width - len(s):] = torch.tensor(s, dtype=torch.long)
                attention_mask[row, width - len(s):] = 1
            kwargs = {"synced_gpus": True} if zero3 else {}
            out = model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention_mask.to(device),
                generation_config=gen_config,
                **kwargs,
            )
            new_tokens = out[:, width:].tolist()
            del out
            steps = len(new_tokens[0]) if new_tokens else 0
            stats.forwards += steps
            stats.row_steps += steps * len(seqs)
            for row, toks in enumerate(new_tokens):
                kept = _cut_at_eos(toks, stop)
                useful = min(len(kept) + 1, steps) if row < len(batch) else 0
                stats.finished_row_steps += steps - useful
                if row < len(batch):
                    outputs[batch[row]] = kept
            bar.update(len(batch))
    return outputs  # type: ignore[return-value]
