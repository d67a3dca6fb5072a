"""MUSE's evaluation (Shi et al. 2024, "MUSE: Machine Unlearning Six-Way Evaluation", arXiv 2407.06460).

=================  ====================================  =============================================
summary key        data                                  definition
=================  ====================================  =============================================
forget_verbmem_    verbmem/forget                        greedy continuation of ``prompt`` (128 new
rouge                                                    tokens) vs ``gt`` cut as MUSE cuts it: its
                                                         first 128 tokens *with* the BOS (so 127 text
                                                         tokens), decoded without special tokens;
                                                         mean ROUGE-L F1 (no stemmer)
forget_knowmem_    knowmem/forget_qa (shots:             few-shot ``Question: {q}\\nAnswer: {a}\\n\\n``
rouge              forget_qa_icl)                        ... ``Question: {q}\\nAnswer: ``; greedy, 32 new
                                                         tokens, cut before "\\n\\n" / "\\nQuestion" /
                                                         "Question:"; mean ROUGE-L F1 vs ``answer``
retain_knowmem_    knowmem/retain_qa (shots:             the same: the model's utility
rouge              retain_qa_icl)
mia_*_auc          privleak/forget (members) vs          loss, zlib, Min-K% and Min-K%++ (k = 40%)
                   privleak/holdout (non-members)        attacks on the text tokens; ROC AUC in
                                                         ``metrics.mia_auc``'s orientation: 1 = the
                                                         forget texts all score as members, 0.5 = no
                                                         better than chance (MUSE's own AUC is 1 - it)
mia_gradnorm_auc,  privleak/forget vs privleak/holdout    gradient-norm attack (one backward per text) and
mia_reference_auc                                        reference-model attack (loss minus the reference
                                                         model's loss; default the retrain model's own,
                                                         from its muse_eval.json): `hf_unlearn.eval.attacks`
privleak           the same + the retrain model's        MUSE's PrivLeak, ``metrics.privleak``:
                   ``muse_eval.json``                    (A - A_retrain) / A_retrain * 100 with A =
                                                         MUSE's AUC = 1 - mia_min_k_auc; ~0 = like
                                                         the retrained model, strongly negative (to
                                                         -100) = under-unlearning, positive = over-
                                                         unlearning
retrain_min_k_auc  the retrain model's evaluation        its ``mia_min_k_auc`` (same orientation)
extraction_        verbmem/forget, teacher-forced        mean over items, on the reference's text
strength,          on prompt + gt                        tokens (the cut ``gt`` above)
exact_memorization
num_truncated_     every prompt and privleak text        how many were cut from the left (keeping
prompts                                                  their end, and BOS) to fit the context
=================  ====================================  =============================================

Tokenisation is MUSE's: prompts and texts are plain text with the tokenizer's special tokens (BOS),
no chat template; generations and the VerbMem reference are decoded as MUSE decodes them
(``skip_special_tokens=True, clean_up_tokenization_spaces=True``, which transformers applies to
non-BPE tokenizers only: :func:`muse_clean_up`). A privleak text is scored as ``BOS + text + EOS``: the
attacks read the text's tokens; the zlib attack divides by the zlib size of the whole text, as MUSE does,
also where the text was cut to fit the context. ``muse_eval.json`` holds the per-item values; the retrain
model's copy is the reference that gives ``privleak`` to an unlearned model's evaluation (its privleak texts must be the same).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

from ....data.muse import load_muse_split
from .. import Benchmark, register_benchmark
from ...attacks import AttackOptions
from ... import metrics as M
from ...scoring import check_tokenizer, dist_rank_world, generate_from_ids, score_sequences
from ....validation import read_text

logger = logging.getLogger(__name__)

EVAL_FILE = "muse_eval.json"
SUMMARY_FILE = "muse_summary.json"
FORMAT_NAME = "hf-unlearn/muse-eval"
FORMAT_VERSION = 1
VERBMEM_MAX_NEW_TOKENS = 128
KNOWMEM_MAX_NEW_TOKENS = 32
SHOT_TEMPLATE = "Question: {question}\nAnswer: {answer}\n\n"
QUESTION_TEMPLATE = "Question: {question}\nAnswer: "

#: Keys every summary has (public API). ``privleak`` is None without a retrain reference.
SUMMARY_KEYS = (
    "forget_verbmem_rouge",
    "forget_knowmem_rouge",
    "retain_knowmem_rouge",
    "privleak",
    "mia_loss_auc",
    "mia_zlib_auc",
    "mia_min_k_auc",
    "mia_min_k_plus_plus_auc",
    "mia_gradnorm_auc",
    "mia_reference_auc",
    "retrain_min_k_auc",
    "extraction_strength",
    "exact_memorization",
    "num_truncated_prompts",
)
SPLITS = {
    "verbmem_forget": "verbmem/forget",
    "knowmem_forget": "knowmem/forget_qa",
    "knowmem_retain": "knowmem/retain_qa",
    "privleak_forget": "privleak/forget",
    "privleak_holdout": "privleak/holdout",
}
SHOTS = {"knowmem_forget_shots": "knowmem/forget_qa_icl", "knowmem_retain_shots": "knowmem/retain_qa_icl"}


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def load_items(dataset_name: str, subsample: Optional[int] = None) -> dict[str, list[dict]]:
    """The evaluation's rows (first `subsample` of each split) and the few-shot examples, checked."""
    items = {}
    for key, split in {**SPLITS, **SHOTS}.items():
        rows = load_muse_split(dataset_name, split).to_list()
        if subsample is not None and key in SPLITS:
            rows = rows[:subsample]
        items[key] = rows
    return items


def load_reference(reference: Union[str, os.PathLike, Mapping]) -> dict:
    """A retrain model's ``muse_eval.json`` (path, its folder, or the loaded dict), checked to be MUSE's."""
    if isinstance(reference, Mapping):
        data, where = dict(reference), "the retain_reference dict"
    else:
        path = Path(reference).expanduser()
        path = path / EVAL_FILE if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(
                f"retain_reference {str(reference)!r} not found: give the {EVAL_FILE} written by evaluating the "
                "retrain model (examples/finetune_muse.py, or python -m hf_unlearn.eval --benchmark muse).")
        data, where = json.loads(read_text(path, "retain reference")), str(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{where} is not a MUSE evaluation ({EVAL_FILE}, format {FORMAT_NAME!r}) but {found!r}: "
                         "the retrain reference must come from the same benchmark.")
    for key in ("privleak_forget", "privleak_holdout"):
        if not data.get(key) or not all("mia_min_k" in r and "text_sha1" in r for r in data[key]):
            raise ValueError(f"{where} has no {key} Min-K% scores: re-evaluate the retrain model with this version.")
    return data


def check_reference(reference: dict, items: dict[str, list[dict]]) -> float:
    """The retrain model's Min-K% AUC, after checking that it scored the same privleak texts as `items`."""
    for key in ("privleak_forget", "privleak_holdout"):
        ours = [_sha1(row["text"]) for row in items[key]]
        theirs = [r["text_sha1"] for r in reference[key]]
        if theirs[: len(ours)] != ours:
            split = SPLITS[key]
            first = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
            ref_data = (reference.get("config") or {}).get("dataset_name")
            raise ValueError(
                f"The retrain reference scored other {split} texts than this evaluation (reference data "
                f"{ref_data!r}, {len(theirs)} texts; this run {len(ours)}; first difference at text {first}): "
                "evaluate the retrain model on the same MUSE corpus and split.")
    n_forget, n_holdout = len(items["privleak_forget"]), len(items["privleak_holdout"])
    return M.mia_auc([r["mia_min_k"] for r in reference["privleak_forget"][:n_forget]],
                     [r["mia_min_k"] for r in reference["privleak_holdout"][:n_holdout]])


# --------------------------------------------------------------------------------------------
# tokenisation and the context budget
# --------------------------------------------------------------------------------------------


def model_context(model) -> Optional[int]:
    get_base = getattr(model, "get_base_model", None)
    config = getattr(get_base() if callable(get_base) else model, "config", None)
    return getattr(config, "max_position_embeddings", None)


def keep_end(ids: list[int], budget: int, bos_id: Optional[int]) -> tuple[list[int], bool]:
    """`ids` cut from the left to `budget` tokens, keeping a leading BOS; and whether it was cut."""
    if budget < 1:
        raise ValueError(f"The model's context leaves no room for the prompt (budget {budget} tokens).")
    if len(ids) <= budget:
        return ids, False
    if bos_id is not None and ids and ids[0] == bos_id and budget > 1:
        return [bos_id] + ids[len(ids) - budget + 1:], True
    return ids[len(ids) - budget:], True


def muse_clean_up(tokenizer) -> bool:
    """The ``clean_up_tokenization_spaces`` that MUSE's ``decode(..., clean_up_tokenization_spaces=True)`` gets:
    True, except for BPE tokenizers, where transformers (>= 5) skips that clean-up anyway (with a warning that
    would only confuse here)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return not (backend is not None and type(backend.model).__name__ == "BPE")


def verbmem_reference_ids(tokenizer, gt: str, max_tokens: int) -> list[int]:
    """The text tokens of MUSE's VerbMem reference: ``gt`` tokenised *with* the tokenizer's special tokens
    and cut to `max_tokens` (so a BOS takes one of them), special tokens then dropped (MUSE decodes the cut
    with ``skip_special_tokens=True``)."""
    special = set(tokenizer.all_special_ids)
    return [t for t in tokenizer(gt, add_special_tokens=True)["input_ids"][:max_tokens] if t not in special]


def knowmem_prompt(shots: Sequence[Mapping], question: str) -> str:
    return "".join(SHOT_TEMPLATE.format(question=s["question"], answer=s["answer"]) for s in shots) + \
        QUESTION_TEMPLATE.format(question=question)


# --------------------------------------------------------------------------------------------
# running the model (strided shards over processes, gathered back in order)
# --------------------------------------------------------------------------------------------


def _sharded(function: Callable[[list], list], inputs: list) -> list:
    rank, world = dist_rank_world()
    if world == 1:
        return function(inputs)
    mine = function(inputs[rank::world])
    gathered: list[Any] = [None] * world
    torch.distributed.all_gather_object(gathered, mine)
    out: list[Any] = [None] * len(inputs)
    for r, part in enumerate(gathered):
        out[r::world] = part
    return out


def _load(dataset_name, retain_reference, verbmem_max_new_tokens, knowmem_max_new_tokens, subsample, max_context):
    for name, value in (("verbmem_max_new_tokens", verbmem_max_new_tokens),
                        ("knowmem_max_new_tokens", knowmem_max_new_tokens), ("subsample", subsample),
                        ("max_context", max_context)):
        if value is None and name in ("subsample", "max_context"):
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer{' or None' if name in ('subsample', 'max_context') else ''}"
                             f", got {value!r}.")
    reference = load_reference(retain_reference) if retain_reference is not None else None
    items = load_items(dataset_name, subsample)
    return items, (check_reference(reference, items) if reference is not None else None)


def check_muse(
    dataset_name: str,
    retain_reference: Union[None, str, os.PathLike, Mapping] = None,
    verbmem_max_new_tokens: int = VERBMEM_MAX_NEW_TOKENS,
    knowmem_max_new_tokens: int = KNOWMEM_MAX_NEW_TOKENS,
    subsample: Optional[int] = None,
    max_context: Optional[int] = None,
    mia_gradnorm: bool = True,
    mia_reference_model: Optional[str] = None,
) -> dict:
    """Checks the options of :func:`evaluate_muse` without a model: numbers, every split (present, its
    columns, string values) and the retrain reference (MUSE's, same privleak texts). Returns the options with
    the reference loaded."""
    reference = load_reference(retain_reference) if retain_reference is not None else None
    _load(dataset_name, reference, verbmem_max_new_tokens, knowmem_max_new_tokens, subsample, max_context)
    return dict(dataset_name=dataset_name, retain_reference=reference, verbmem_max_new_tokens=verbmem_max_new_tokens,
                knowmem_max_new_tokens=knowmem_max_new_tokens, subsample=subsample, max_context=max_context,
                mia_gradnorm=bool(mia_gradnorm), mia_reference_model=mia_reference_model)


def evaluate_muse(
    model,
    tokenizer,
    dataset_name: str,
    retain_reference: Union[None, str, os.PathLike, Mapping] = None,
    batch_size: int = 32,
    verbmem_max_new_tokens: int = VERBMEM_MAX_NEW_TOKENS,
    knowmem_max_new_tokens: int = KNOWMEM_MAX_NEW_TOKENS,
    subsample: Optional[int] = None,
    max_context: Optional[int] = None,
    show_progress: bool = True,
    template=None,
    mia_gradnorm: bool = True,
    mia_reference_model=None,
) -> tuple[dict, dict]:
    """Evaluates ``model`` on MUSE; returns ``(per_sample, summary)`` (see the module docstring).

    Args:
        dataset_name: ``muse-bench/MUSE-News`` / ``muse-bench/MUSE-Books`` or a local folder in MUSE's
            GitHub release layout (see :mod:`hf_unlearn.data.muse`).
        retain_reference: the retrain model's ``muse_eval.json`` (path, folder or dict): gives ``privleak``.
        verbmem_max_new_tokens, knowmem_max_new_tokens: MUSE's 128 and 32 (the first is also the ``gt`` cut,
            BOS included as MUSE counts it).
        subsample: only the first N items of each split (quick evaluations during training).
        max_context: the model's context in tokens; default ``config.max_position_embeddings``.
        template: the evaluation layer's prompt format; not used: MUSE's prompts are plain text, as MUSE
            defines them, whatever format the model was fine-tuned on.
        mia_gradnorm: run the gradient-norm attack on the privleak texts (one backward each; left out under
            ZeRO-3).
        mia_reference_model: the reference attack's model (a model or a path); default: the retrain
            reference's own per-text losses (its ``mia_loss``), when a retain reference is given.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    check_tokenizer(tokenizer)
    items, reference_auc = _load(dataset_name, retain_reference, verbmem_max_new_tokens, knowmem_max_new_tokens,
                                 subsample, max_context)
    context = max_context or model_context(model) or 10**9
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id

    def encode(text: str, special: bool) -> list[int]:
        return tokenizer(text, add_special_tokens=special)["input_ids"]

    clean_up = muse_clean_up(tokenizer)

    def decode(ids: list[int]) -> str:
        return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=clean_up)

    # VerbMem: generate from the prompt; teacher-force prompt + the reference's tokens for ES / EM.
    verbmem, generate_prompts, scored = [], [], []
    for i, row in enumerate(items["verbmem_forget"]):
        gt_ids = verbmem_reference_ids(tokenizer, row["gt"], verbmem_max_new_tokens)
        if not gt_ids:
            raise ValueError(f"verbmem/forget row {i} has an empty gt: nothing to compare its continuation with.")
        prompt = encode(row["prompt"], True)
        gen_ids, cut_gen = keep_end(prompt, context - verbmem_max_new_tokens, bos)
        forced, cut_forced = keep_end(prompt, context - len(gt_ids) - 1, bos)
        verbmem.append({"gt": decode(gt_ids), "truncated": cut_gen or cut_forced})
        generate_prompts.append(gen_ids)
        scored.append((forced + gt_ids + [eos], len(forced)))
    # KnowMem: few-shot prompts.
    knowmem = {}
    for key in ("knowmem_forget", "knowmem_retain"):
        shots = items[f"{key}_shots"]
        cut = [keep_end(encode(knowmem_prompt(shots, row["question"]), True), context - knowmem_max_new_tokens, bos)
               for row in items[key]]
        knowmem[key] = cut
    # PrivLeak: BOS + text + EOS, the text's tokens scored.
    privleak = {}
    for key in ("privleak_forget", "privleak_holdout"):
        privleak[key] = []
        for row in items[key]:
            head = [bos] if bos is not None else []
            body, cut = keep_end(encode(row["text"], False), context - len(head) - 1, None)
            privleak[key].append(((head + body + [eos], max(1, len(head))), cut))
    too_short = [i for key in privleak for i, ((ids, n), _) in enumerate(privleak[key]) if len(ids) - n < 2]
    if too_short:
        raise ValueError(f"privleak texts {too_short[:10]} have fewer than 2 tokens to score.")

    def generate(prompts: list, max_new: int, desc: str) -> list[str]:
        return _sharded(lambda part: generate_from_ids(model, tokenizer, part, batch_size, max_new, show_progress,
                                                       desc, clean_up_tokenization_spaces=clean_up), prompts)

    def score(sequences: list, desc: str) -> list:
        return _sharded(lambda part: score_sequences(model, tokenizer, part, batch_size, True, show_progress, desc),
                        sequences)

    verbmem_out = generate(generate_prompts, verbmem_max_new_tokens, "MUSE verbmem: generating")
    verbmem_scores = score(scored, "MUSE verbmem: scoring")
    knowmem_out = {key: generate([ids for ids, _ in knowmem[key]], knowmem_max_new_tokens,
                                 f"MUSE {key.replace('_', ' ')}: generating") for key in knowmem}
    privleak_scores = {key: score([seq for seq, _ in privleak[key]], f"MUSE {key.replace('_', ' ')}: scoring")
                       for key in privleak}

    per_sample: dict[str, Any] = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "config": {
        "benchmark": "muse", "dataset_name": str(dataset_name), "splits": {**SPLITS, **SHOTS},
        "subsample": subsample, "verbmem_max_new_tokens": verbmem_max_new_tokens,
        "knowmem_max_new_tokens": knowmem_max_new_tokens, "context": context if context < 10**9 else None,
        "num_items": {key: len(items[key]) for key in SPLITS},
        "model": getattr(getattr(model, "config", None), "_name_or_path", None) or None,
    }}
    rouge = M.rouge_l_f1(verbmem_out, [v["gt"] for v in verbmem])
    correct = [s.correct for s in verbmem_scores]
    em, es = M.exact_memorization(correct), M.extraction_strength(correct)
    per_sample["verbmem_forget"] = [
        {"index": i, "prompt": row["prompt"], "gt": v["gt"], "generation": out, "rouge_l_f1": rouge[i],
         "exact_memorization": float(em[i]), "extraction_strength": float(es[i]), "truncated": v["truncated"]}
        for i, (row, v, out) in enumerate(zip(items["verbmem_forget"], verbmem, verbmem_out))]
    for key in knowmem:
        answers = [M.cut_at_stop_strings(out) for out in knowmem_out[key]]
        rouge = M.rouge_l_f1(answers, [row["answer"] for row in items[key]])
        per_sample[key] = [
            {"index": i, "question": row["question"], "answer": row["answer"], "generation": answer,
             "rouge_l_f1": rouge[i], "truncated": cut}
            for i, (row, answer, (_, cut)) in enumerate(zip(items[key], answers, knowmem[key]))]
    for key in privleak:
        scores = privleak_scores[key]
        lps = [s.token_logprobs for s in scores]
        # MUSE's zlib normaliser is the whole text's compressed size, also for a text cut to fit the context.
        attacks = {"mia_loss": M.mia_loss_scores(lps),
                   "mia_zlib": M.mia_zlib_scores(lps, [row["text"] for row in items[key]]),
                   "mia_min_k": M.mia_min_k_scores(lps),
                   "mia_min_k_plus_plus": M.mia_min_k_plus_plus_scores([s.min_k_plus_plus for s in scores])}
        per_sample[key] = [
            {"index": i, "text_sha1": _sha1(row["text"]), "num_tokens": len(lps[i]), "truncated": cut,
             **{name: float(values[i]) for name, values in attacks.items()}}
            for i, (row, (_, cut)) in enumerate(zip(items[key], privleak[key]))]
    _add_model_attacks(per_sample, {key: [seq for seq, _ in privleak[key]] for key in privleak}, model, tokenizer,
                       load_reference(retain_reference) if retain_reference is not None else None, batch_size,
                       show_progress, mia_gradnorm, mia_reference_model)
    return per_sample, summarise(per_sample, reference_auc)


def _add_model_attacks(per_sample, sequences, model, tokenizer, reference, batch_size, show_progress, gradnorm,
                       reference_model) -> None:
    """The gradient-norm and reference-model attacks' scores (`hf_unlearn.eval.attacks`) into the privleak
    records: the text tokens, as the other attacks read them (the closing EOS left out)."""
    from ...attacks import sequence_attack_scores
    from ...scoring import _zero3

    if gradnorm and _zero3():
        logger.warning("The gradient-norm attack is left out under ZeRO-3 (partitioned parameters).")
        gradnorm = False
    reference_loss = None
    if reference_model is None and reference is not None and all(
            all("mia_loss" in r for r in reference[key]) for key in sequences):
        reference_loss = {key: [r["mia_loss"] for r in reference[key][: len(sequences[key])]] for key in sequences}
    scores = sequence_attack_scores(
        model, tokenizer, sequences, {key: [r["mia_loss"] for r in per_sample[key]] for key in sequences},
        include_eos=False, gradnorm=gradnorm, reference_model=reference_model, reference_loss=reference_loss,
        batch_size=batch_size, show_progress=show_progress)
    for key, by_attack in scores.items():
        for name, values in by_attack.items():
            for record, value in zip(per_sample[key], values):
                record[name] = value


def summarise(per_sample: dict, reference_auc: Optional[float] = None) -> dict:
    """The summary (:data:`SUMMARY_KEYS`) of a ``muse_eval.json``-shaped dict."""
    summary: dict[str, Any] = {key: None for key in SUMMARY_KEYS}
    verbmem = per_sample["verbmem_forget"]
    summary["forget_verbmem_rouge"] = float(np.mean([r["rouge_l_f1"] for r in verbmem]))
    summary["forget_knowmem_rouge"] = float(np.mean([r["rouge_l_f1"] for r in per_sample["knowmem_forget"]]))
    summary["retain_knowmem_rouge"] = float(np.mean([r["rouge_l_f1"] for r in per_sample["knowmem_retain"]]))
    forget, holdout = per_sample["privleak_forget"], per_sample["privleak_holdout"]
    for name in ("mia_loss", "mia_zlib", "mia_min_k", "mia_min_k_plus_plus", "mia_gradnorm", "mia_reference"):
        if name in forget[0] and name in holdout[0]:  # gradnorm and reference only where they were run
            summary[f"{name}_auc"] = M.mia_auc([r[name] for r in forget], [r[name] for r in holdout])
    if reference_auc is not None:
        summary["retrain_min_k_auc"] = reference_auc
        if reference_auc < 1:
            summary["privleak"] = M.privleak(summary["mia_min_k_auc"], reference_auc)
        else:  # MUSE's AUC of the retrain model, 1 - reference_auc, is 0: the relative difference is undefined
            logger.warning("The retrain reference's Min-K%% AUC is 1: privleak is undefined, left out.")
    summary["extraction_strength"] = float(np.mean([r["extraction_strength"] for r in verbmem]))
    summary["exact_memorization"] = float(np.mean([r["exact_memorization"] for r in verbmem]))
    summary["num_truncated_prompts"] = int(sum(r["truncated"] for key in SPLITS for r in per_sample[key]))
    return summary


@dataclass
class MuseOptions(AttackOptions):
    """MUSE's flags of ``python -m hf_unlearn.eval --benchmark muse`` (the keywords of :func:`evaluate_muse`)."""

    dataset_name: str = field(
        default="muse-bench/MUSE-News",
        metadata={"help": "MUSE data: muse-bench/MUSE-News, muse-bench/MUSE-Books, or a local folder in MUSE's GitHub "
                          "release layout (<dir>/<config>/<split>.json)."},
    )
    retain_reference: Optional[str] = field(
        default=None,
        metadata={"help": "muse_eval.json of the retrain model (trained without the forget set), evaluated on the same "
                          "corpus: gives privleak (MUSE's sign: ~0 like the retrained model, strongly negative = "
                          "under-unlearning, positive = over-unlearning; null without it)."},
    )
    verbmem_max_new_tokens: int = field(
        default=VERBMEM_MAX_NEW_TOKENS,
        metadata={"help": "VerbMem continuation length and gt cut (counted with the BOS, as MUSE). Default 128 (MUSE)."}
    )
    knowmem_max_new_tokens: int = field(
        default=KNOWMEM_MAX_NEW_TOKENS, metadata={"help": "KnowMem answer length. Default 32 (MUSE)."}
    )
    subsample: Optional[int] = field(
        default=None, metadata={"help": "Evaluate only the first N items of each split (quick checks)."}
    )
    max_context: Optional[int] = field(
        default=None,
        metadata={"help": "Context length in tokens; longer prompts and texts are cut from the left (counted in "
                          "num_truncated_prompts). Default: the model's max_position_embeddings."},
    )


from .sequential import MuseRequests  # noqa: E402 (it reads the names above)

#: The model card's results table (muse_summary.json keys).
CARD_ROWS = (
    ("forget_verbmem_rouge", "VerbMem on forget (ROUGE-L F1)"),
    ("forget_knowmem_rouge", "KnowMem on forget (ROUGE-L F1)"),
    ("retain_knowmem_rouge", "KnowMem on retain (ROUGE-L F1, utility)"),
    *M.PRIVACY_CARD_ROWS,
)

MUSE = register_benchmark(Benchmark(
    name="muse",
    description="MUSE (Shi et al. 2024): VerbMem, KnowMem on forget and retain, PrivLeak, MIA AUCs, extraction "
                "strength, exact memorisation.",
    evaluate=evaluate_muse,
    check=check_muse,
    options=MuseOptions,
    eval_file=EVAL_FILE,
    summary_file=SUMMARY_FILE,
    history_file="muse_history.json",
    summary_keys=SUMMARY_KEYS,
    # VerbMem, MUSE's first criterion (verbatim memorisation of the forget text), falls as the model forgets;
    # KnowMem on retain is MUSE's utility.
    forget_metric="forget_verbmem_rouge",
    utility_metric="retain_knowmem_rouge",
    forget_metric_higher_is_better=False,
    card_rows=CARD_ROWS,
    plot_metrics=("forget_verbmem_rouge", "forget_knowmem_rouge", "retain_knowmem_rouge", "privleak", "mia_min_k_auc"),
    sequential=MuseRequests,
))
