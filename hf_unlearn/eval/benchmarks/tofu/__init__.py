"""TOFU, the first registered benchmark: splits -> model scores -> per-question values -> summary.

Definitions follow TOFU (Maini et al., 2024) and its public reference evaluator; the pure metric
functions live in :mod:`hf_unlearn.eval.metrics`, the model calls in :mod:`hf_unlearn.eval.scoring`,
sharding and the result files in :mod:`hf_unlearn.eval.runner`.

Splits (``dataset_name`` is a Hub id or a local folder of JSON-lines files, see
:func:`hf_unlearn.data.tofu.load_split`):

===============  ===========================  ====================================================
key              split                        used for
===============  ===========================  ====================================================
forget           ``{forget_split}_perturbed``  Probability, ROUGE, truth ratio, forget quality,
                                              MIA / memorisation
retain           ``retain_perturbed``         Probability, ROUGE, truth ratio (model utility)
real_authors     ``real_authors_perturbed``   normalised Probability, ROUGE, truth ratio
world_facts      ``world_facts_perturbed``    normalised Probability, ROUGE, truth ratio
holdout          ``holdout_split``            MIA (forget = members, holdout = non-members);
                 (default: holdoutXX)         skipped when there is none
===============  ===========================  ====================================================

The per-question values (``tofu_eval.json``) of an evaluation of the *retain* model are the
reference that gives ``forget_quality`` (KS test of forget truth ratios) and ``privleak``
(Min-K% AUC relative to the retain model's) to the evaluation of an unlearned model.

Several processes: when ``torch.distributed`` is initialised with more than one process, each
rank scores and generates a strided shard of every split's questions, the raw per-question
values are gathered and put back in the original order, so every rank computes the same
aggregates as one process would.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ....data.formatting import default_template
from ....data.tofu import default_splits, load_split
from ... import metrics as M
from ...runner import gather, shard
from ...scoring import AnswerScore, check_tokenizer, dist_rank_world, generate_answers, score_answers
from .. import Benchmark, register_benchmark
from ...attacks import AttackOptions
from ....validation import read_text

logger = logging.getLogger(__name__)

__all__ = [
    "SUMMARY_KEYS",
    "EVAL_FILE",
    "SUMMARY_FILE",
    "HISTORY_FILE",
    "SPLIT_KEYS",
    "TOFU",
    "TofuOptions",
    "resolve_splits",
    "load_reference",
    "check_tofu",
    "evaluate_tofu",
    "TofuRequests",
    "CARD_ROWS",
]

EVAL_FILE = "tofu_eval.json"
SUMMARY_FILE = "tofu_summary.json"
HISTORY_FILE = "tofu_history.json"
FORMAT_NAME = "hf-unlearn/tofu-eval"
FORMAT_VERSION = 1

#: Keys every summary has (public API).  ``forget_quality`` and ``privleak`` are None without a
#: retain reference; the MIA keys and ``privleak`` are None without a holdout split.
SUMMARY_KEYS = (
    "forget_quality",
    "model_utility",
    "forget_truth_ratio",
    "forget_prob",
    "forget_rouge",
    "retain_prob",
    "retain_rouge",
    "retain_truth_ratio",
    "ra_prob",
    "ra_rouge",
    "ra_truth_ratio",
    "wf_prob",
    "wf_rouge",
    "wf_truth_ratio",
    "mia_loss_auc",
    "mia_zlib_auc",
    "mia_min_k_auc",
    "mia_min_k_plus_plus_auc",
    "mia_gradnorm_auc",
    "mia_reference_auc",
    "privleak",
    "extraction_strength",
    "exact_memorization",
)

SPLIT_KEYS = ("forget", "retain", "real_authors", "world_facts", "holdout")
_LABELS = {
    "forget": "forget",
    "retain": "retain",
    "real_authors": "real authors",
    "world_facts": "world facts",
    "holdout": "holdout",
}
_COLUMNS = {
    "forget": ("question", "answer", "paraphrased_answer", "perturbed_answer"),
    "retain": ("question", "answer", "paraphrased_answer", "perturbed_answer"),
    "real_authors": ("question", "answer", "perturbed_answer"),
    "world_facts": ("question", "answer", "perturbed_answer"),
    "holdout": ("question", "answer"),
}
_GENERATED = ("forget", "retain", "real_authors", "world_facts")
_TOKEN_STATS = ("forget", "holdout")
_SHORT = {"real_authors": "ra", "world_facts": "wf"}


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------


def resolve_splits(forget_split: str, holdout_split: Optional[str] = None) -> dict[str, Optional[str]]:
    """The dataset split read for each part of the evaluation (holdout None when there is none)."""
    forget = forget_split if forget_split.endswith("_perturbed") else f"{forget_split}_perturbed"
    base = forget_split[: -len("_perturbed")] if forget_split.endswith("_perturbed") else forget_split
    if holdout_split is None:
        holdout_split = default_splits(base)[1]
    return {
        "forget": forget,
        "retain": "retain_perturbed",
        "real_authors": "real_authors_perturbed",
        "world_facts": "world_facts_perturbed",
        "holdout": holdout_split,
    }


def _nonempty_text(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _load_items(dataset_name: str, key: str, split: str, subsample: Optional[int]) -> list[dict]:
    empty = ValueError(f"Split {split!r} (the {_LABELS[key]} set) of {dataset_name} is empty: nothing to evaluate.")
    try:
        ds = load_split(dataset_name, split)
    except StopIteration:  # datasets' JSON reader on a 0-byte file
        raise empty from None
    if len(ds) == 0:
        raise empty
    required = _COLUMNS[key]
    missing = [c for c in required if c not in ds.column_names]
    if missing:
        raise ValueError(
            f"Split {split!r} (the {_LABELS[key]} set) of {dataset_name} has no column "
            f"{', '.join(map(repr, missing))}; columns found: {', '.join(ds.column_names) or 'none'}. "
            f"The {_LABELS[key]} set needs {', '.join(required)} (TOFU's *_perturbed splits have them)."
        )
    if subsample is not None:
        ds = ds.select(range(min(subsample, len(ds))))
    rows = ds.select_columns(list(required)).to_list()
    for i, row in enumerate(rows):
        for col in ("question", "answer", "paraphrased_answer"):
            if col in required and not _nonempty_text(row[col]):
                raise ValueError(f"Split {split!r}, row {i}: {col} is empty or not a string ({row[col]!r}).")
        if "perturbed_answer" in required:
            pert = row["perturbed_answer"]
            if isinstance(pert, str):
                pert = [pert]
            if not isinstance(pert, list) or not pert or not all(_nonempty_text(p) for p in pert):
                raise ValueError(
                    f"Split {split!r}, row {i}: perturbed_answer must be a non-empty list of non-empty strings, "
                    f"got {row['perturbed_answer']!r}."
                )
            row["perturbed_answer"] = pert
    return rows


def load_reference(reference: Union[str, os.PathLike, Mapping]) -> dict:
    """A retain-model reference: a ``tofu_eval.json`` path, its folder, or the loaded dict."""
    if isinstance(reference, Mapping):
        data, where = dict(reference), "the retain_reference dict"
    else:
        path = Path(reference).expanduser()
        if path.is_dir():
            path = path / EVAL_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"retain_reference {str(reference)!r} not found: give the {EVAL_FILE} written by evaluating the "
                "retain model with this evaluator (python -m hf_unlearn.eval ... --output_dir <dir>)."
            )
        data = json.loads(read_text(path, "retain reference"))
        where = str(path)
    forget = data.get("forget") if isinstance(data, dict) else None
    if not isinstance(forget, list) or not forget or not all(
        isinstance(r, dict) and "question" in r and "truth_ratio" in r for r in forget
    ):
        raise ValueError(
            f"{where} is not a per-question file written by hf_unlearn.eval ({EVAL_FILE}): it needs 'forget' "
            "records with 'question' and 'truth_ratio'."
        )
    return data


def _first_difference(ours: Sequence[str], theirs: Sequence[str]) -> Optional[int]:
    for i, q in enumerate(ours):
        if i >= len(theirs) or theirs[i] != q:
            return i
    return None


def _require_same_questions(ours: Sequence[str], theirs: Sequence[str], what: str, splits_line: str) -> None:
    """The reference must hold this evaluation's `what` questions, in order (it may hold more)."""
    i = _first_difference(ours, theirs)
    if i is None:
        return
    if i >= len(theirs):
        raise ValueError(f"The retain reference has only {len(theirs)} {what} questions, this evaluation has "
                         f"{len(ours)} ({splits_line}).")
    raise ValueError(f"The retain reference was evaluated on different {what} questions ({splits_line}): first "
                     f"difference at question {i}: the reference has {theirs[i]!r}, this evaluation has {ours[i]!r}.")


def _check_reference(reference: dict, items: dict[str, list[dict]], splits: dict) -> dict:
    """Aligns the reference with this evaluation; returns its forget truth ratios and Min-K% AUC."""
    ref_config = reference.get("config", {}) or {}
    ours = [it["question"] for it in items["forget"]]
    theirs = [r["question"] for r in reference["forget"]]
    _require_same_questions(ours, theirs, "forget", f"reference forget split {ref_config.get('forget_split', '?')!r}, "
                                                    f"this run {splits['forget']!r}")
    if len(theirs) != len(ours):
        logger.info("Using the first %d of the reference's %d forget questions.", len(ours), len(theirs))
    ref_r = np.array([float(r["truth_ratio"]) for r in reference["forget"][: len(ours)]], dtype=np.float64)

    ref_auc = None
    ref_holdout = reference.get("holdout") or []
    if items.get("holdout"):
        ours_h = [it["question"] for it in items["holdout"]]
        if not ref_holdout:
            logger.warning("The retain reference has no holdout scores: privleak is left out.")
        else:
            _require_same_questions(ours_h, [r.get("question") for r in ref_holdout], "holdout",
                                    f"reference holdout split {ref_config.get('holdout_split')!r}, this run "
                                    f"{splits['holdout']!r}")
            ref_auc = M.mia_auc(
                [r["mia_min_k"] for r in reference["forget"][: len(ours)]],
                [r["mia_min_k"] for r in ref_holdout[: len(ours_h)]],
            )
    return {"truth_ratios": ref_r, "auc_min_k": ref_auc}


# --------------------------------------------------------------------------------------------
# running the model (sharded over processes)
# --------------------------------------------------------------------------------------------


def _run_model(model, tokenizer, items, batch_size, max_new_tokens, show_progress,
               template=None) -> dict[str, list[dict]]:
    rank, world = dist_rank_world()
    pairs: list[tuple[str, str]] = []
    need: list[bool] = []
    owners: list[tuple[str, int, str, int]] = []  # (split key, question index, role, j)
    gen_questions: list[str] = []
    gen_owners: list[tuple[str, int]] = []
    local: dict[tuple[str, int], dict] = {}
    for key, rows in items.items():
        for idx, real in shard(len(rows), rank, world):
            item = rows[idx]
            q = item["question"]
            pairs.append((q, item["answer"]))
            need.append(key in _TOKEN_STATS)
            owners.append((key, idx, "answer", 0) if real else ("", -1, "", 0))
            if "paraphrased_answer" in item:
                pairs.append((q, item["paraphrased_answer"]))
                need.append(False)
                owners.append((key, idx, "para", 0) if real else ("", -1, "", 0))
            for j, p in enumerate(item.get("perturbed_answer", ())):
                pairs.append((q, p))
                need.append(False)
                owners.append((key, idx, "pert", j) if real else ("", -1, "", 0))
            if key in _GENERATED:
                gen_questions.append(q)
                gen_owners.append((key, idx) if real else ("", -1))
            if real:
                local[(key, idx)] = {
                    "answer": None,
                    "para": None,
                    "pert": [None] * len(item.get("perturbed_answer", ())),
                    "generation": None,
                }

    scores = score_answers(model, tokenizer, pairs, batch_size=batch_size, with_token_stats=need,
                           show_progress=show_progress, desc="TOFU: scoring answers", template=template)
    for (key, idx, role, j), s in zip(owners, scores):
        if idx < 0:
            continue
        rec = local[(key, idx)]
        if role == "answer":
            rec["answer"] = s
        elif role == "para":
            rec["para"] = s.avg_nll
        else:
            rec["pert"][j] = s.avg_nll
    generations = generate_answers(model, tokenizer, gen_questions, batch_size=batch_size,
                                   max_new_tokens=max_new_tokens, show_progress=show_progress,
                                   desc="TOFU: generating answers", template=template)
    for (key, idx), text in zip(gen_owners, generations):
        if idx >= 0:
            local[(key, idx)]["generation"] = text

    local = gather(local)
    out: dict[str, list[dict]] = {}
    for key, rows in items.items():
        try:
            out[key] = [local[(key, i)] for i in range(len(rows))]
        except KeyError as exc:  # pragma: no cover - a sharding bug
            raise RuntimeError(f"Missing scores for {exc.args[0]} after gathering from {world} processes.") from exc
    return out


# --------------------------------------------------------------------------------------------
# per-question values and the summary
# --------------------------------------------------------------------------------------------


def _truth_ratios(para: Sequence[float], pert: Sequence[Sequence[float]]) -> np.ndarray:
    return np.array([M.truth_ratio([p], [list(q)])[0] for p, q in zip(para, pert)], dtype=np.float64)


def _split_records(key: str, rows: list[dict], raw: list[dict], mia_include_eos: bool = False) -> list[dict]:
    records = []
    answers: list[AnswerScore] = [r["answer"] for r in raw]
    avg = [a.avg_nll for a in answers]
    if key in _GENERATED:
        rouge = M.rouge_l_recall([r["generation"] for r in raw], [row["answer"] for row in rows])
    if key in ("forget", "retain"):
        tr = _truth_ratios([r["para"] for r in raw], [r["pert"] for r in raw])
    elif key in ("real_authors", "world_facts"):
        tr = _truth_ratios(avg, [r["pert"] for r in raw])
        norm = [float(M.normalised_probability([a], [list(r["pert"])])[0]) for a, r in zip(avg, raw)]
    if key in _TOKEN_STATS:
        lps = [a.token_logprobs for a in answers]
        # The reference evaluator's loss and zlib attacks count the closing EOS's log-prob; its Min-K% and
        # Min-K%++ attacks drop it (open-unlearning's tokenwise_logprobs), as ours always do.
        loss_lps = ([np.append(lp, -a.avg_nll * a.num_tokens - float(np.sum(lp))) for lp, a in zip(lps, answers)]
                    if mia_include_eos else lps)
        mia = {
            "mia_loss": M.mia_loss_scores(loss_lps),
            "mia_zlib": M.mia_zlib_scores(loss_lps, [row["answer"] for row in rows]),
            "mia_min_k": M.mia_min_k_scores(lps),
            "mia_min_k_plus_plus": M.mia_min_k_plus_plus_scores([a.min_k_plus_plus for a in answers]),
        }
        if key == "forget":
            em = M.exact_memorization([a.correct for a in answers])
            es = M.extraction_strength([a.correct for a in answers])
    for i, (row, r, a) in enumerate(zip(rows, raw, answers)):
        rec: dict[str, Any] = {"index": i, "question": row["question"], "answer": row["answer"]}
        if key in _GENERATED:
            rec["generation"] = r["generation"]
            rec["rouge_l_recall"] = float(rouge[i])
        rec["prob"] = math.exp(-a.avg_nll)
        rec["avg_nll"] = float(a.avg_nll)
        rec["num_answer_tokens"] = int(a.num_tokens)
        if key in ("real_authors", "world_facts"):
            rec["normalised_prob"] = norm[i]
        if key in ("forget", "retain"):
            rec["paraphrased_avg_nll"] = float(r["para"])
        if "pert" in r and r["pert"]:
            rec["perturbed_avg_nll"] = [float(x) for x in r["pert"]]
        if key in ("forget", "retain", "real_authors", "world_facts"):
            rec["truth_ratio"] = float(tr[i])
        if key in _TOKEN_STATS:
            for name, values in mia.items():
                rec[name] = float(values[i])
        if key == "forget":
            rec["exact_memorization"] = float(em[i])
            rec["extraction_strength"] = float(es[i])
        records.append(rec)
    return records


def _add_model_attacks(per_sample, items, model, tokenizer, reference, template, batch_size, show_progress,
                       include_eos, gradnorm, reference_model) -> None:
    """The gradient-norm and reference-model attacks' scores into the forget and holdout records."""
    from ...attacks import qa_attack_scores
    from ...scoring import _zero3

    keys = ("forget", "holdout")
    if gradnorm and _zero3():
        logger.warning("The gradient-norm attack is left out under ZeRO-3 (partitioned parameters).")
        gradnorm = False
    reference_loss = None
    if reference_model is None and reference is not None and all(
            reference.get(k) and all("mia_loss" in r for r in reference[k]) for k in keys):
        reference_loss = {k: [r["mia_loss"] for r in reference[k][: len(items[k])]] for k in keys}
    scores = qa_attack_scores(
        model, tokenizer, {k: [(row["question"], row["answer"]) for row in items[k]] for k in keys},
        {k: [r["mia_loss"] for r in per_sample[k]] for k in keys}, include_eos=include_eos, template=template,
        gradnorm=gradnorm, reference_model=reference_model, reference_loss=reference_loss, batch_size=batch_size,
        show_progress=show_progress)
    for key in keys:
        for name, values in scores[key].items():
            for rec, value in zip(per_sample[key], values):
                rec[name] = value


def _summarise(per_sample: dict, reference_info: Optional[dict]) -> dict:
    forget = per_sample["forget"]
    summary: dict[str, Optional[float]] = {k: None for k in SUMMARY_KEYS}
    r_forget = [r["truth_ratio"] for r in forget]
    summary["forget_prob"] = M.probability([r["avg_nll"] for r in forget])
    summary["forget_rouge"] = float(np.mean([r["rouge_l_recall"] for r in forget]))
    summary["forget_truth_ratio"] = M.truth_ratio_forget_stat(r_forget)
    summary["exact_memorization"] = float(np.mean([r["exact_memorization"] for r in forget]))
    summary["extraction_strength"] = float(np.mean([r["extraction_strength"] for r in forget]))

    retain = per_sample["retain"]
    summary["retain_prob"] = M.probability([r["avg_nll"] for r in retain])
    summary["retain_rouge"] = float(np.mean([r["rouge_l_recall"] for r in retain]))
    summary["retain_truth_ratio"] = M.truth_ratio_utility_stat([r["truth_ratio"] for r in retain])
    for key in ("real_authors", "world_facts"):
        rows, short = per_sample[key], _SHORT[key]
        summary[f"{short}_prob"] = float(np.mean([r["normalised_prob"] for r in rows]))
        summary[f"{short}_rouge"] = float(np.mean([r["rouge_l_recall"] for r in rows]))
        summary[f"{short}_truth_ratio"] = M.truth_ratio_utility_stat([r["truth_ratio"] for r in rows])
    summary["model_utility"] = M.model_utility({
        "retain_probability": summary["retain_prob"],
        "retain_rouge": summary["retain_rouge"],
        "retain_truth_ratio": summary["retain_truth_ratio"],
        "real_authors_probability": summary["ra_prob"],
        "real_authors_rouge": summary["ra_rouge"],
        "real_authors_truth_ratio": summary["ra_truth_ratio"],
        "world_facts_probability": summary["wf_prob"],
        "world_facts_rouge": summary["wf_rouge"],
        "world_facts_truth_ratio": summary["wf_truth_ratio"],
    })

    holdout = per_sample.get("holdout") or []
    if holdout:
        for name in ("mia_loss", "mia_zlib", "mia_min_k", "mia_min_k_plus_plus", "mia_gradnorm", "mia_reference"):
            if name in forget[0] and name in holdout[0]:  # gradnorm and reference only where they were run
                summary[f"{name}_auc"] = M.mia_auc([r[name] for r in forget], [r[name] for r in holdout])
    if reference_info is not None:
        summary["forget_quality"] = M.forget_quality(r_forget, reference_info["truth_ratios"])
        ref_auc = reference_info["auc_min_k"]
        if summary["mia_min_k_auc"] is not None and ref_auc is not None:
            if ref_auc >= 1.0:  # a_ref = 1 - AUC = 0: the relative difference is undefined
                logger.warning("The retain reference's Min-K%% AUC is 1 (a_ref = 0): privleak is undefined, left out.")
            else:
                summary["privleak"] = M.privleak(summary["mia_min_k_auc"], ref_auc)
    return summary


# --------------------------------------------------------------------------------------------
# public entry points
# --------------------------------------------------------------------------------------------


def _check_numbers(max_new_tokens, subsample) -> None:
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens <= 0:
        raise ValueError(
            f"max_new_tokens must be a positive integer (ROUGE needs generations), got {max_new_tokens!r}."
        )
    if subsample is not None and (isinstance(subsample, bool) or not isinstance(subsample, int) or subsample <= 0):
        raise ValueError(f"subsample must be a positive integer or None, got {subsample!r}.")


def _load(dataset_name, forget_split, holdout_split, retain_reference, subsample):
    """The splits read, the loaded reference, the questions of every split and the reference aligned with them."""
    splits = resolve_splits(forget_split, holdout_split)
    reference = load_reference(retain_reference) if retain_reference is not None else None
    items: dict[str, list[dict]] = {}
    for key in SPLIT_KEYS:
        if splits[key] is None:
            logger.warning("No holdout split for %r: the MIA metrics and privleak are left out.", forget_split)
            continue
        items[key] = _load_items(dataset_name, key, splits[key], subsample)
    if items.get("holdout"):
        forget_questions = {it["question"] for it in items["forget"]}
        shared = sum(it["question"] in forget_questions for it in items["holdout"])
        if shared * 2 > len(items["holdout"]):
            raise ValueError(
                f"holdout split {splits['holdout']!r}: {shared} of its {len(items['holdout'])} questions are forget "
                f"questions ({splits['forget']!r}): the membership attacks would compare the forget set with itself "
                "(every AUC near 0.5, which reads as perfect unlearning). Give questions the model never saw "
                "(holdout10 goes with forget10)."
            )
    reference_info = _check_reference(reference, items, splits) if reference is not None else None
    return splits, reference, items, reference_info


def check_tofu(
    dataset_name: str,
    forget_split: str = "forget10",
    holdout_split: Optional[str] = None,
    retain_reference: Union[None, str, os.PathLike, Mapping] = None,
    max_new_tokens: int = 200,
    subsample: Optional[int] = None,
    mia_include_eos: bool = False,
    mia_gradnorm: bool = True,
    mia_reference_model: Optional[str] = None,
) -> dict:
    """Checks the options of :func:`evaluate_tofu` without a model: numbers, every split (present, its
    columns, non-empty answers) and the retain reference (readable, same forget and holdout questions).

    Returns the options with the reference loaded, ready for :func:`evaluate_tofu`.
    """
    _check_numbers(max_new_tokens, subsample)
    _, reference, _, _ = _load(dataset_name, forget_split, holdout_split, retain_reference, subsample)
    return dict(dataset_name=dataset_name, forget_split=forget_split, holdout_split=holdout_split,
                retain_reference=reference, max_new_tokens=max_new_tokens, subsample=subsample,
                mia_include_eos=bool(mia_include_eos), mia_gradnorm=bool(mia_gradnorm),
                mia_reference_model=mia_reference_model)


def evaluate_tofu(
    model,
    tokenizer,
    dataset_name: str,
    forget_split: str = "forget10",
    holdout_split: Optional[str] = None,
    retain_reference: Union[None, str, os.PathLike, Mapping] = None,
    batch_size: int = 32,
    max_new_tokens: int = 200,
    subsample: Optional[int] = None,
    show_progress: bool = True,
    template=None,
    mia_include_eos: bool = False,
    mia_gradnorm: bool = True,
    mia_reference_model=None,
) -> tuple[dict, dict]:
    """Evaluates ``model`` on TOFU; returns ``(per_sample, summary)``.

    Args:
        model: a causal LM (or ``PeftModel``) on its device; left in the training mode it was in.
        tokenizer: its tokenizer; prompts and answers are tokenised with ``encode_qa`` as in training.
        dataset_name: Hub id (``locuslab/TOFU``) or local folder of TOFU-format JSON-lines files.
        forget_split: ``forget01`` / ``forget05`` / ``forget10`` (``{forget_split}_perturbed`` is read).
        holdout_split: non-member questions for the MIA metrics; default the matching ``holdoutXX``.
        retain_reference: the retain model's ``tofu_eval.json`` (path, folder or loaded dict) for
            ``forget_quality`` and ``privleak``; both are None without it.
        batch_size: pairs per forward and prompts per ``generate`` call.
        max_new_tokens: generation length for ROUGE (greedy, stops at EOS).
        subsample: evaluate only the first N questions of every split (quick checks during training).
        show_progress: tqdm bars (on rank 0 only).
        mia_include_eos: MIA loss and zlib scores over the answer tokens and the closing EOS instead of the
            answer tokens alone; with it all four attacks are computed as the reference evaluator
            (open-unlearning) computes them, whose Min-K% and Min-K%++ leave the EOS out as ours always do
            (docs/conventions.md).
        mia_gradnorm: run the gradient-norm attack (one backward per forget and holdout answer; not under
            ZeRO-3, where it is left out).
        mia_reference_model: the reference attack's model (a model or a path); default: the retain
            reference's own per-answer losses (its ``mia_loss``), when a retain reference is given.
        template: the `PromptTemplate` the model was trained with (default: auto, see
            ``hf_unlearn.data.formatting``).

    ``per_sample`` holds ``config`` and one list of per-question records per split (the content of
    ``tofu_eval.json``); ``summary`` has every key of :data:`SUMMARY_KEYS`.  Every rank of a
    multi-process run returns the same values.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    _check_numbers(max_new_tokens, subsample)
    check_tokenizer(tokenizer)
    splits, reference, items, reference_info = _load(dataset_name, forget_split, holdout_split, retain_reference,
                                                     subsample)
    template_fields = (template or default_template(tokenizer)).to_dict()
    ref_config = (reference or {}).get("config") or {}
    if reference is not None and bool(ref_config.get("mia_include_eos", False)) != mia_include_eos:
        logger.warning("The retain reference's MIA scores were computed %s the final EOS, this evaluation's %s: "
                       "privleak compares across conventions.", "with" if ref_config.get("mia_include_eos") else
                       "without", "with" if mia_include_eos else "without")
    ref_template = ref_config.get("prompt_template")
    if ref_template is not None and ref_template != template_fields:
        logger.warning("The retain reference was scored with another prompt format (%s) than this evaluation (%s): "
                       "forget quality compares truth ratios across formats.", ref_template, template_fields)

    raw = _run_model(model, tokenizer, items, batch_size, max_new_tokens, show_progress, template)

    per_sample: dict[str, Any] = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "config": {
            "dataset_name": str(dataset_name),
            "forget_split": forget_split,
            "holdout_split": splits["holdout"],
            "splits": splits,
            "subsample": subsample,
            "max_new_tokens": max_new_tokens,
            "num_questions": {key: len(rows) for key, rows in items.items()},
            "model": getattr(getattr(model, "config", None), "_name_or_path", None) or None,
            "prompt_template": template_fields,
            "mia_include_eos": mia_include_eos,
        },
    }
    for key, rows in items.items():
        per_sample[key] = _split_records(key, rows, raw[key], mia_include_eos)
    if items.get("holdout"):
        _add_model_attacks(per_sample, items, model, tokenizer, reference, template, batch_size, show_progress,
                           mia_include_eos, mia_gradnorm, mia_reference_model)
    summary = _summarise(per_sample, reference_info)
    return per_sample, summary




#: One help text for the flag of the evaluation CLI and of the training scripts. argparse %-formats help
#: strings: a bare percent sign must be written %%.
MIA_INCLUDE_EOS_HELP = (
    "MIA loss and zlib scores include the closing EOS, as the reference evaluator (open-unlearning) computes "
    "them; Min-K%% and Min-K%%++ leave it out either way, as it does. With the flag all four attacks match it "
    "(docs/conventions.md). Default off: the answer tokens only.")


@dataclass
class TofuOptions(AttackOptions):
    """TOFU's flags of ``python -m hf_unlearn.eval --benchmark tofu`` (the keywords of :func:`evaluate_tofu`)."""

    dataset_name: str = field(
        default="locuslab/TOFU",
        metadata={"help": "TOFU data: a Hub id (default locuslab/TOFU) or a local folder of JSON-lines files "
                          "named like the Hub configs (forget10_perturbed.json, ...)."},
    )
    forget_split: str = field(
        default="forget10",
        metadata={"help": "Forget split: forget01, forget05 or forget10 (its _perturbed version is read). "
                          "Default forget10."},
    )
    holdout_split: Optional[str] = field(
        default=None,
        metadata={"help": "Non-member split for the membership-inference metrics. Default: the holdoutXX "
                          "matching the forget split."},
    )
    retain_reference: Optional[str] = field(
        default=None,
        metadata={"help": "tofu_eval.json of the retain model, evaluated with this tool on the same forget split: "
                          "gives forget_quality and privleak (null without it)."},
    )
    max_new_tokens: int = field(
        default=200, metadata={"help": "Greedy generation length for ROUGE (stops at EOS). Default 200 (TOFU)."}
    )
    subsample: Optional[int] = field(
        default=None, metadata={"help": "Evaluate only the first N questions of each split (quick checks)."}
    )
    mia_include_eos: bool = field(
        default=False,
        metadata={"help": MIA_INCLUDE_EOS_HELP},
    )


from .sequential import TofuRequests  # noqa: E402 (it reads the names above)

#: The model card's results table (tofu_summary.json keys).
CARD_ROWS = (
    ("forget_quality", "Forget quality (KS p-value vs retain model)"),
    ("model_utility", "Model utility (hmean of 9)"),
    ("forget_truth_ratio", "Forget truth ratio"),
    ("forget_prob", "Forget probability"),
    ("forget_rouge", "Forget ROUGE-L recall"),
    ("retain_prob", "Retain probability"),
    ("retain_rouge", "Retain ROUGE-L recall"),
    ("retain_truth_ratio", "Retain truth ratio"),
    ("ra_prob", "Real authors probability"),
    ("ra_rouge", "Real authors ROUGE-L recall"),
    ("ra_truth_ratio", "Real authors truth ratio"),
    ("wf_prob", "World facts probability"),
    ("wf_rouge", "World facts ROUGE-L recall"),
    ("wf_truth_ratio", "World facts truth ratio"),
    *M.PRIVACY_CARD_ROWS,
)

TOFU = register_benchmark(Benchmark(
    name="tofu",
    description="TOFU (Maini et al. 2024): forget quality, model utility, truth ratios, MIA, memorisation.",
    evaluate=evaluate_tofu,
    check=check_tofu,
    options=TofuOptions,
    eval_file=EVAL_FILE,
    summary_file=SUMMARY_FILE,
    history_file=HISTORY_FILE,
    summary_keys=SUMMARY_KEYS,
    forget_metric="forget_quality",
    utility_metric="model_utility",
    forget_metric_needs="retain_reference",
    card_rows=CARD_ROWS,
    plot_metrics=("forget_quality", "model_utility", "forget_truth_ratio", "forget_rouge", "forget_prob", "privleak"),
    log_scale=("forget_quality",),  # a KS p-value: its interesting range spans decades
    forget_metric_line=(0.05, "p = 0.05"),
    sequential=TofuRequests,
))
