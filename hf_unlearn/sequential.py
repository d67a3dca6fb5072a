"""Sequential unlearning requests: forget A, then B, then C, each request starting from the model the
previous one produced, and evaluate after every request against that request's own reference.

Three protocols (`--sequential_mode`):

* ``cumulative`` (TOFU's default): the splits are growing sets, ``forget01,forget05,forget10``; request k
  trains on the rows of split k that no earlier request had (forget01, forget05 minus forget01, forget10
  minus forget05; rows compared by content) and is evaluated on split k, the whole set forgotten so far,
  against reference k (the retain99 / retain95 / retain90 model's evaluation).
* ``disjoint`` (MUSE sustainability, ``sust``): the splits must not share a row; request k trains on split k.
* ``independent`` (MUSE scalability, ``scal``): every request starts from the original model.

Each request is one complete `UnlearningTrainer` run: a new optimizer (SophiaG's m and h start at zero), a
new learning-rate schedule, and a reference model (NPO / KL / UNDIAL teacher) that is the request's
starting model. The plan (every split loaded, every row set computed, every reference checked) is built
before anything is trained or written. Output: ``request_<k>_<split>/`` per request (model, evaluation,
card), ``sequential_summary.json`` (metrics x request), ``sequential.png`` and a model card listing the
requests. A request whose folder holds a finished record of the same rows is not run again (resume).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import datasets
from accelerate import PartialState

from .eval.runner import atomic_json

logger = logging.getLogger(__name__)

SEQUENTIAL_MODES = ("cumulative", "disjoint", "independent")
REQUEST_FILE = "sequential_request.json"
SUMMARY_FILE = "sequential_summary.json"
PLOT_FILE = "sequential.png"


@dataclass
class SequentialArguments:
    """Flags of `examples/run_sequential.py` on top of `run_tofu.py`'s."""

    forget_splits: str = field(
        metadata={"help": "Comma-separated forget splits, one unlearning request each, e.g. forget01,forget05,forget10 "
                          "(replaces --forget_split). Request k starts from the model request k-1 produced, with a "
                          "fresh optimizer: SophiaG's m and h (and AdamW's moments, and the LR schedule) start anew "
                          "for every request, and the reference model of NPO / KL / UNDIAL is the request's starting "
                          "model."}
    )
    retain_references: str | None = field(
        default=None,
        metadata={"help": "Comma-separated reference files, one per request (same count as --forget_splits): the "
                          "retain model's evaluation on request k's evaluation split (TOFU cumulative: the retain99, "
                          "retain95, retain90 models' tofu_eval.json). Without them forget quality is not computed."},
    )
    sequential_mode: str | None = field(
        default=None,
        metadata={"help": "cumulative (splits are growing sets; request k forgets split k minus the earlier splits "
                          "and is evaluated on split k), disjoint (splits must share no row; MUSE sust) or "
                          "independent (each request from the original model; MUSE scal). Default: the "
                          "benchmark's (TOFU: cumulative)."},
    )


def split_list(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


# --------------------------------------------------------------------------------------------------
# the benchmark side: what a request loads, how it is evaluated, what its reference must be
# --------------------------------------------------------------------------------------------------


class SequentialRequests:
    """The benchmark side of a sequential run: what a request loads, how it is evaluated, what its reference
    must be. A benchmark that runs sequentially names a subclass as its ``Benchmark.sequential`` (built as
    ``cls(dataset_name, **options)``, beside the benchmark); `name` is the registered benchmark's, whose
    entry gives the plot and the result files."""

    name: str
    key_columns: tuple[str, ...] = ()  # two requests' rows are the same row when these columns are
    card_metrics: tuple[str, ...] = ()  # the columns of the card's requests table

    @property
    def benchmark(self):
        from .eval.benchmarks import get_benchmark

        return get_benchmark(self.name)

    @property
    def plot_metrics(self) -> tuple[str, ...]:
        return self.benchmark.drawn_metrics

    @property
    def log_scale(self) -> tuple[str, ...]:
        return self.benchmark.log_scale

    def default_mode(self, splits: list[str]) -> str:
        return "disjoint"

    def load(self, split: str, role: str = "forget") -> datasets.Dataset:
        raise NotImplementedError

    def default_retain(self, eval_split: str) -> str | None:
        return None

    def check_evaluation(self, eval_split: str) -> None:
        """Raises if the evaluation after a request on `eval_split` cannot run (checked before any training)."""

    def check_reference(self, reference: str, eval_split: str, number: int) -> None:
        """Raises if `reference` is no reference for request `number`, evaluated on `eval_split`."""

    def evaluate(self, model, tokenizer, eval_split: str, reference: str | None, template=None) -> tuple[dict, dict]:
        raise NotImplementedError

    def write(self, folder: Path, per_sample: dict, summary: dict) -> None:
        from .eval.runner import write_results

        write_results(folder, per_sample, summary, self.benchmark)


def sequential_requests(benchmark, dataset_name: str, **options) -> SequentialRequests:
    """The sequential requests of registered benchmark `benchmark` (name or entry) on `dataset_name`; a
    ValueError for a benchmark without a sequential mode."""
    from .eval.benchmarks import get_benchmark

    entry = get_benchmark(benchmark)
    if entry is None or entry.sequential is None:
        raise ValueError(f"Benchmark {getattr(entry, 'name', benchmark)!r} has no sequential mode (its Benchmark "
                         "entry names no `sequential` class): every request is evaluated, so a sequential run needs "
                         "a benchmark that declares one.")
    return entry.sequential(dataset_name, **options)


def __getattr__(name: str):
    # The benchmarks' request classes (TofuRequests, ...) live beside their benchmarks; importable here too.
    from .eval.benchmarks import registered

    for entry in registered():
        if entry.sequential is not None and entry.sequential.__name__ == name:
            return entry.sequential
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------------------------------
# the plan
# --------------------------------------------------------------------------------------------------


@dataclass
class Request:
    number: int  # 1-based
    split: str  # as given in --forget_splits
    eval_split: str  # the split its evaluation reads (cumulative: the whole set forgotten so far)
    reference: str | None
    retain_split: str | None
    forget: datasets.Dataset = field(repr=False)  # the rows this request trains on
    already_forgotten: int = 0  # rows of `split` dropped because an earlier request forgot them
    continues: bool = True  # starts from the previous request's model (False: from the original model)
    rows_sha1: str = ""  # of the trained rows' contents: a resumed request must have the same rows

    @property
    def folder(self) -> str:
        return f"request_{self.number}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', self.split)}"

    def record(self) -> dict:
        return {"number": self.number, "split": self.split, "eval_split": self.eval_split,
                "reference": self.reference, "retain_split": self.retain_split, "rows": len(self.forget),
                "already_forgotten": self.already_forgotten, "folder": self.folder, "rows_sha1": self.rows_sha1}


def _row_keys(rows: datasets.Dataset, columns: tuple[str, ...], split: str) -> list[tuple]:
    missing = [c for c in columns if c not in rows.column_names]
    if missing:
        raise ValueError(f"Split {split!r} has no column {', '.join(map(repr, missing))} (columns: "
                         f"{', '.join(rows.column_names)}): rows are compared by {', '.join(columns)}.")
    return list(zip(*(rows[c] for c in columns)))


def plan_requests(benchmark, forget_splits: list[str], retain_references: list[str] | None = None, *,
                  mode: str | None = None, retain_split: str | None = None, needs_retain: bool = True
                  ) -> list[Request]:
    """Every request, its rows and its reference, checked; raises ValueError naming the problem and the fix."""
    mode = mode or benchmark.default_mode(forget_splits)
    if mode not in SEQUENTIAL_MODES:
        raise ValueError(f"Unknown --sequential_mode {mode!r}; known: {', '.join(SEQUENTIAL_MODES)}.")
    if not forget_splits:
        raise ValueError("--forget_splits is empty: give the requests' splits, e.g. forget01,forget05,forget10.")
    repeated = sorted({s for s in forget_splits if forget_splits.count(s) > 1})
    if repeated:
        raise ValueError(f"--forget_splits names {', '.join(repeated)} more than once: each request is one split.")
    references = list(retain_references or [])
    if references and len(references) != len(forget_splits):
        raise ValueError(
            f"--forget_splits has {len(forget_splits)} requests ({', '.join(forget_splits)}) but --retain_references "
            f"has {len(references)} files: give exactly one reference per request, in the same order.")

    requests, earlier_keys, earlier_split = [], set(), None
    retain_cache: dict[str, set] = {}
    for number, split in enumerate(forget_splits, start=1):
        rows = benchmark.load(split)
        keys = _row_keys(rows, benchmark.key_columns, split)
        fresh = [i for i, key in enumerate(keys) if key not in earlier_keys]
        if mode == "cumulative" and earlier_split is not None:
            lost = len(earlier_keys - set(keys))
            if lost:
                raise ValueError(
                    f"--sequential_mode cumulative needs growing splits, but {split!r} lacks {lost} rows of the "
                    f"earlier requests ({earlier_split!r} and before): order the splits smallest first (e.g. "
                    "forget01,forget05,forget10), or use --sequential_mode disjoint / independent.")
        if mode == "disjoint" and len(fresh) != len(keys):
            raise ValueError(
                f"--sequential_mode disjoint needs requests that share no row, but {split!r} has "
                f"{len(keys) - len(fresh)} rows of earlier requests ({', '.join(forget_splits[:number - 1])}): give "
                "disjoint splits (MUSE sust forget_1..forget_4), or use --sequential_mode cumulative.")
        train_rows = rows.select(fresh) if mode == "cumulative" else rows
        if len(train_rows) == 0:
            raise ValueError(
                f"Request {number} ({split!r}) has no rows left: all {len(keys)} were forgotten by earlier requests "
                f"({', '.join(forget_splits[:number - 1]) or 'none'}) or the split is empty. Drop it from "
                "--forget_splits, or give a split with new rows.")
        retain = (retain_split or benchmark.default_retain(split)) if needs_retain else None
        if needs_retain and retain is None:
            raise ValueError(f"Request {number} ({split!r}) has no default retain split: give --retain_split.")
        if retain is not None:
            if retain not in retain_cache:
                retain_cache[retain] = set(_row_keys(benchmark.load(retain, "retain"), benchmark.key_columns, retain))
            # Retain rows that this request (or, sequentially, an earlier one) forgets would be taught back.
            forgotten = set(keys) if mode == "independent" else earlier_keys | set(keys)
            clash = len(retain_cache[retain] & forgotten)
            if clash:
                raise ValueError(
                    f"Retain split {retain!r} of request {number} holds {clash} rows that "
                    f"{'this request' if mode == 'independent' else f'requests 1..{number}'} forget: training on "
                    "them would teach them back. Give a retain split without them (TOFU: the retain split that "
                    "matches the largest forget split so far, the default).")
        benchmark.check_evaluation(split)
        reference = references[number - 1] if references else None
        if reference is not None:
            benchmark.check_reference(reference, split, number)
        trained_keys = [keys[i] for i in fresh] if mode == "cumulative" else keys
        requests.append(Request(number, split, split, reference, retain, train_rows,
                                already_forgotten=len(keys) - len(fresh) if mode == "cumulative" else 0,
                                continues=mode != "independent",
                                rows_sha1=hashlib.sha1(json.dumps(trained_keys).encode()).hexdigest()))
        earlier_keys |= set(keys)
        earlier_split = split
    return requests


# --------------------------------------------------------------------------------------------------
# running the requests
# --------------------------------------------------------------------------------------------------


def _same_request(a: dict, b: dict) -> bool:
    return all(a.get(k) == b.get(k) for k in ("number", "split", "eval_split", "retain_split", "rows_sha1"))


def _finished(folder: Path, request: Request) -> dict | None:
    """The record of a finished request in `folder`, or None; a record of other rows is an error."""
    path = folder / REQUEST_FILE
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    planned = request.record()
    if not _same_request(record["request"], planned):
        raise ValueError(f"{folder} holds a finished request of another plan ({record['request']}), not "
                         f"{planned}: use a new --output_dir.")
    return record


def resolve_resume_flag(value) -> bool:
    """`--resume_from_checkpoint` of a sequential run: true continues the run in --output_dir (finished
    requests kept, the interrupted one from its latest complete checkpoint); a checkpoint path is refused
    (which request would it belong to?)."""
    if value is None or value is False or str(value).strip().lower() in ("", "false", "none"):
        return False
    if value is True or str(value).strip().lower() == "true":
        return True
    raise ValueError(f"--resume_from_checkpoint {value}: a sequential run resumes as a whole; pass true to continue "
                     "the run in --output_dir (finished requests are kept, an interrupted one goes on from its latest "
                     "complete checkpoint).")


def run_requests(requests: list[Request], benchmark, *, load_model: Callable[[list[str]], Any], tokenizer,
                 args, make_trainer: Callable[..., Any], evaluate_before: bool = True,
                 card: Callable[[list[dict], dict | None, Path], None] | None = None, resume: bool = False) -> dict:
    """Runs the planned requests in order and returns the content of ``sequential_summary.json``.

    `load_model(chain)` returns a request's starting model: the original for an empty chain, else the
    original after the requests whose folders are listed (in order; the last holds the latest weights,
    and with LoRA each holds one adapter to merge). `make_trainer(model, args, request)` builds one
    request's trainer (a fresh one each time: fresh optimizer state). `args.output_dir` is the top folder.
    """
    top = Path(args.output_dir)
    summary_path = top / SUMMARY_FILE
    state = json.loads(summary_path.read_text()) if resume and summary_path.is_file() else {}
    for old, new in zip(state.get("requests", []), requests):
        if not _same_request(old, new.record()):
            raise ValueError(f"{top} holds a finished request of another plan ({old}), not {new.record()}: use a new "
                             "--output_dir.")
    done: list[dict] = []
    before = state.get("before")
    is_main = PartialState().is_main_process
    chain: list[str] = []
    for request in requests:
        folder = top / request.folder
        record = _finished(folder, request) if resume else None
        if record is None:
            start_from = list(chain) if request.continues else []
            request_args = copy.copy(args)
            request_args.output_dir = str(folder)
            trainer = make_trainer(load_model(start_from), request_args, request)
            template = getattr(trainer, "prompt_template", None)  # the format the request trains in
            if evaluate_before and before is None and request.number == 1:
                before = benchmark.evaluate(trainer.model, tokenizer, request.eval_split, request.reference,
                                            template=template)[1]
            checkpoint = None  # resuming: an interrupted request goes on from its latest complete checkpoint
            if resume:
                from .validation import latest_complete_checkpoint

                checkpoint = latest_complete_checkpoint(folder)
            start = time.perf_counter()
            trainer.train(resume_from_checkpoint=checkpoint)
            train_seconds = time.perf_counter() - start
            trainer.save_model()
            trainer.accelerator.wait_for_everyone()
            per_sample, summary = benchmark.evaluate(trainer.model, tokenizer, request.eval_split, request.reference,
                                                     template=template)
            record = {"request": request.record(), "benchmark": benchmark.name, "started_from": Path(start_from[-1]).name if start_from else "original model",
                      "steps": trainer.state.global_step, "train_seconds": train_seconds, "summary": summary}
            if is_main:
                benchmark.write(folder, per_sample, summary)
                atomic_json(folder / REQUEST_FILE, record)  # last: marks the request finished
            trainer.accelerator.wait_for_everyone()
            del trainer
        else:
            logger.info("Request %d (%s) already finished in %s: not run again.", request.number, request.split, folder)
        done.append(record)
        if request.continues:
            chain.append(str(folder))
        result = summarise(done, before, benchmark, total=len(requests))
        if is_main:  # progress after every request: the summary, and the card of the model in `folder`
            atomic_json(top / SUMMARY_FILE, result)
            if card is not None:
                card(done, before, folder)
    if is_main:
        plot_requests(result, top / PLOT_FILE, benchmark.plot_metrics, benchmark.log_scale)
        if card is not None:
            card(done, before, top)
    return result


def summarise(done: list[dict], before: dict | None, benchmark, total: int) -> dict:
    """The content of ``sequential_summary.json``: the requests, and each metric's value after each request."""
    metrics = sorted({k for record in done for k, v in record["summary"].items() if v is None or
                      isinstance(v, (int, float))})
    return {
        "benchmark": benchmark.name, "requests": [r["request"] for r in done], "finished": len(done),
        "planned": total, "before": before,
        "metrics": {k: [r["summary"].get(k) for r in done] for k in metrics},
        "train_seconds": [r["train_seconds"] for r in done], "steps": [r["steps"] for r in done],
    }


def plot_requests(result: dict, path: Path, metrics, log_scale=()) -> Path:
    """One panel per metric: its value after each request (request 0 = the starting model)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in metrics if any(v is not None for v in result["metrics"].get(m, []))]
    columns = min(3, max(1, len(metrics)))
    rows = max(1, math.ceil(len(metrics) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 2.9 * rows), dpi=110, squeeze=False)
    before = result.get("before") or {}
    labels = ["start"] + [r["split"] for r in result["requests"]]
    for ax, metric in zip(axes.flat, metrics):
        points = [(0, before.get(metric))] + list(enumerate(result["metrics"][metric], start=1))
        points = [(x, y) for x, y in points if y is not None and (metric not in log_scale or y > 0)]
        ax.plot([x for x, _ in points], [y for _, y in points], "-o", markersize=4)
        if metric in log_scale:
            ax.set_yscale("log")
        ax.set_xticks(range(len(labels)), labels, fontsize=7)
        ax.set_title(metric, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.suptitle("after each unlearning request (start: the original model)", fontsize=10)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.1, top=0.86, wspace=0.35, hspace=0.45)
    fig.savefig(path)
    plt.close(fig)
    return path


def requests_table(done: list[dict], before: dict | None, metrics) -> str:
    """Markdown: one row per request (its split, rows trained, reference) with the chosen metrics."""
    def cell(v):
        return "–" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| request | forget split | rows trained | evaluated on | " + " | ".join(metrics) + " |",
             "|---|---|---|---|" + "---|" * len(metrics)]
    if before:
        lines.append("| 0 (start) | – | – | " + (done[0]["request"]["eval_split"] if done else "–") + " | "
                     + " | ".join(cell(before.get(m)) for m in metrics) + " |")
    for record in done:
        r = record["request"]
        rows = f"{r['rows']}" + (f" (+{r['already_forgotten']} forgotten earlier)" if r["already_forgotten"] else "")
        lines.append(f"| {r['number']} | {r['split']} | {rows} | {r['eval_split']} | "
                     + " | ".join(cell(record["summary"].get(m)) for m in metrics) + " |")
    return "\n".join(lines)


def sequential_model_card(done: list[dict], before: dict | None, *, model_name: str, base_model: str | None,
                          method: str, optimizer: str, dataset_name: str, recipe: dict, metrics,
                          plot_file: str | None = None, library_name: str = "transformers", benchmark=None):
    """The model card of the model after `done` requests: the usual card (final results against the
    starting model's; `benchmark`, an entry or name, gives its rows; default: the one the requests were
    evaluated on) plus a section listing every request with its metrics."""
    from huggingface_hub import ModelCard

    from .hub import unlearning_model_card

    splits = [r["request"]["split"] for r in done]
    card = unlearning_model_card(
        model_name=model_name, base_model=base_model, method=method, optimizer=optimizer, dataset_name=dataset_name,
        forget_split=" -> ".join(splits), retain_split=", ".join(dict.fromkeys(
            r["request"]["retain_split"] for r in done if r["request"]["retain_split"])) or None,
        recipe=recipe, library_name=library_name, results=done[-1]["summary"] if done else None,
        results_before=before, extra_tags=["sequential-unlearning"],
        benchmark=benchmark if benchmark is not None or not done else done[-1].get("benchmark"))
    section = [f"## Sequential unlearning requests ({len(done)})", "",
               "Each request starts from the model the previous one produced, with a fresh optimizer; it is "
               "evaluated after training on the split named (the whole set forgotten so far, for cumulative splits).",
               "", requests_table(done, before, metrics), ""]
    if plot_file:
        section += [f"![metrics after each request]({plot_file})", ""]
    head, recipe_part = card.content.split("## Recipe", 1)
    return ModelCard(head + "\n".join(section) + "\n## Recipe" + recipe_part)


__all__ = ["SequentialArguments", "SequentialRequests", "sequential_requests", "Request", "plan_requests", "run_requests", "summarise",
           "plot_requests", "requests_table", "sequential_model_card", "split_list", "resolve_resume_flag", "SEQUENTIAL_MODES", "REQUEST_FILE", "SUMMARY_FILE",
           "PLOT_FILE"]
