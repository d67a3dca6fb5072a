"""What every benchmark shares: machine description, data, tiny models, fixed batches, timing helpers,
the result file and the table row.

Conventions
-----------
* Timings are only ever compared side by side, measured in the same process, interleaved in blocks
  (ABBA order) so that a slow patch of the machine (other processes on a 2-core box) hits both sides.
  Only ratios are claims; absolute times are recorded for context.
* Every result file ``<output_dir>/<id>.json`` holds ``id``, ``measure``, ``value`` (the number compared
  with the target), ``target``, ``passed`` (True / False, or None for "report only"), ``numbers`` (every
  measured number), ``settings``, ``machine`` and ``command``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
TOFU_DIR = REPO.parent / "shared" / "data" / "tofu"

# The smoke model: as small as the unit tests' model, so one step of every bench takes well under a second.
SMOKE_SIZE = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)


@dataclasses.dataclass
class BenchContext:
    """What a benchmark is told by `bench/__main__.py`."""

    output_dir: Path
    smoke: bool = False
    threads: int | None = None
    command: str = ""
    quick: bool = False  # a reduced (but real) run; recorded in the result

    @property
    def cache_dir(self) -> Path:
        return self.output_dir / "cache"

    @property
    def scratch(self) -> Path:
        """Output dirs of the trainers (nothing is saved in them): one temporary folder per process."""
        return _scratch()


@functools.lru_cache(maxsize=None)
def _scratch() -> Path:
    import atexit
    import shutil

    path = Path(tempfile.mkdtemp(prefix="hf_unlearn_bench_"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


# ------------------------------------------------------------------------------------------------
# machine
# ------------------------------------------------------------------------------------------------


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def machine_info() -> dict[str, Any]:
    """nproc, torch threads, versions, CPU model and the load average (other processes share the box)."""
    import transformers

    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        nproc = os.cpu_count()
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        load = None
    return {
        "nproc": nproc,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cuda": torch.cuda.is_available(),
        "loadavg_1_5_15": load,
    }


def machine_line(info: dict[str, Any] | None = None) -> str:
    info = info or machine_info()
    return (f"machine: nproc={info['nproc']}, torch threads={info['torch_threads']}, torch {info['torch']}, "
            f"load avg {info['loadavg_1_5_15']}, cpu {info['cpu']}")


# ------------------------------------------------------------------------------------------------
# data and models
# ------------------------------------------------------------------------------------------------


def quiet() -> None:
    """No progress bars, no advisory warnings, no network."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    import datasets
    import transformers

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    logging.getLogger("deepspeed").setLevel(logging.ERROR)


@functools.lru_cache(maxsize=None)
def synthetic_dir(num_authors: int = 20, questions_per_author: int = 5) -> str:
    """A synthetic TOFU folder in a temporary directory (removed at exit with the process' tmp)."""
    from hf_unlearn.offline.synthetic import write_synthetic_tofu

    out = Path(tempfile.mkdtemp(prefix="hf_unlearn_bench_tofu_"))
    write_synthetic_tofu(out, num_authors=num_authors, questions_per_author=questions_per_author, seed=0)
    return str(out)


def data_dir(ctx: BenchContext) -> tuple[str, str]:
    """(folder, kind): real TOFU from ../shared/data/tofu unless smoke mode or it is missing."""
    if not ctx.smoke and TOFU_DIR.is_dir():
        return str(TOFU_DIR), "real TOFU (../shared/data/tofu)"
    return synthetic_dir(), "synthetic TOFU (hf_unlearn.offline.synthetic, 20 authors x 5 questions)"


@functools.lru_cache(maxsize=None)
def tokenizer_for(folder: str, vocab_size: int = 4096):
    """The tiny-llama preset's tokenizer: byte-level BPE trained on the folder's TOFU strings."""
    from hf_unlearn.offline.tiny import train_tokenizer
    from hf_unlearn.pipeline import tofu_strings

    return train_tokenizer(tofu_strings(folder), vocab_size=vocab_size)


def model_size(ctx: BenchContext, name: str = "default") -> dict[str, int]:
    from hf_unlearn.pipeline import TINY_SIZES

    return dict(SMOKE_SIZE) if ctx.smoke else dict(TINY_SIZES[name])


def build_model(tokenizer, size: dict[str, int], seed: int = 0):
    from hf_unlearn.offline.tiny import build_tiny_llama

    return build_tiny_llama(tokenizer, seed=seed, **size)


def load_rows(folder: str, split: str, n: int | None = None):
    from hf_unlearn.data.tofu import load_split

    rows = load_split(folder, split)
    return rows.select(range(min(n, len(rows)))) if n is not None else rows


class FixedBatchDataset(torch.utils.data.Dataset):
    """B nested items ``{"forget": ..., "retain": ...}``: with ``per_device_train_batch_size=B`` every Trainer
    step sees exactly these B pairs (the sampler only permutes the rows, which changes neither the padded
    width nor the cost), so the trainer and a bare loop can be timed on the same batch."""

    def __init__(self, items: list[dict]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]


def fixed_pairs(tokenizer, folder: str, batch_size: int, seed: int = 0, needs_retain: bool = True) -> FixedBatchDataset:
    """The first ``batch_size`` forget10 rows, each paired with a seeded retain90 row (the package's pairing)."""
    from hf_unlearn.data.pairing import build_unlearning_dataset

    forget = load_rows(folder, "forget10", batch_size)
    retain = load_rows(folder, "retain90") if needs_retain else None
    pairs = build_unlearning_dataset(tokenizer, forget, retain, seed=seed)
    return FixedBatchDataset([pairs[i] for i in range(len(pairs))])


def collate(tokenizer, dataset: FixedBatchDataset) -> dict[str, dict[str, torch.Tensor]]:
    from hf_unlearn.data.pairing import UnlearningCollator

    return UnlearningCollator(tokenizer)([dataset[i] for i in range(len(dataset))])


def batch_shape(batch: dict) -> dict[str, Any]:
    return {part: {"rows": int(t["input_ids"].shape[0]), "width": int(t["input_ids"].shape[1]),
                   "tokens": int(t["attention_mask"].sum()),
                   "answer_tokens": int((t["labels"][:, 1:] != -100).sum())} for part, t in batch.items()}


def unlearning_config(output_dir: str | Path, **overrides):
    """An `UnlearningConfig` for timing: no saving, no tqdm, no logging inside the timed window."""
    from hf_unlearn import UnlearningConfig

    base = dict(output_dir=str(output_dir), report_to="none", disable_tqdm=True, save_strategy="no",
                logging_steps=10_000, seed=0, dataloader_num_workers=0, use_cpu=True)
    base.update(overrides)
    return UnlearningConfig(**base)


# ------------------------------------------------------------------------------------------------
# timing
# ------------------------------------------------------------------------------------------------


def step_timer_callback():
    """A TrainerCallback that records perf_counter time from `on_step_begin` to `on_step_end` per optimizer step.

    Trainer fetches the batch before `on_step_begin` and logs after `on_step_end`, so the window is
    forward + backward (+ a Hessian refresh when due) + clipping + optimizer + scheduler + zero_grad.
    """
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []
            self._start = None

        def on_step_begin(self, args, state, control, **kwargs):
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter() - self._start)

    return StepTimer()


class Stopwatch:
    """Wraps a bound method and records the wall time of each call (``obj.name`` replaced on the instance)."""

    def __init__(self, obj, name: str):
        self.times: list[float] = []
        original = getattr(obj, name)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.times.append(time.perf_counter() - start)

        setattr(obj, name, timed)


def median(xs) -> float:
    return float(statistics.median(xs))


def summarise_times(samples: list[list[float]]) -> dict[str, Any]:
    flat = [x for block in samples for x in block]
    return {
        "n": len(flat),
        "median_s": median(flat),
        "mean_s": float(statistics.fmean(flat)),
        "p10_s": float(_quantile(flat, 0.1)),
        "p90_s": float(_quantile(flat, 0.9)),
        "block_medians_s": [median(b) for b in samples],
    }


def _quantile(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def paired_ratio(a: list[list[float]], b: list[list[float]], stat=median) -> dict[str, Any]:
    """Ratio of a to b: of the pooled statistic, and per block (the spread says how noisy the machine was)."""
    per_block = [stat(x) / stat(y) for x, y in zip(a, b)]
    pooled = stat([x for blk in a for x in blk]) / stat([y for blk in b for y in blk])
    return {"ratio": pooled, "block_ratios": per_block,
            "block_ratio_median": median(per_block), "block_ratio_min": min(per_block),
            "block_ratio_max": max(per_block)}


# ------------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------------


def _clean(value):
    """JSON-safe: NaN/inf become None, tensors and numpy scalars become numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _clean(value.tolist())
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (TypeError, ValueError):
            pass
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_result(ctx: BenchContext, bench_id: str, *, measure: str, value: float | None, target: str,
                 passed: bool | None, numbers: dict, settings: dict, notes: list[str] | None = None,
                 display: str | None = None) -> dict:
    """Writes ``<output_dir>/<bench_id>.json`` and returns the record (also what the table prints)."""
    record = {
        "id": bench_id,
        "measure": measure,
        "value": value,
        "display": display if display is not None else (f"{value:.3f}" if isinstance(value, float) else str(value)),
        "target": target,
        "passed": passed,
        "smoke": ctx.smoke,
        "quick": ctx.quick,
        "numbers": numbers,
        "settings": settings,
        "notes": notes or [],
        "machine": machine_info(),
        "command": ctx.command,
        "finished_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    record = _clean(record)
    ctx.output_dir.mkdir(parents=True, exist_ok=True)
    path = ctx.output_dir / f"{bench_id}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return record


def log(message: str) -> None:
    print(message, flush=True, file=sys.stdout)


# ------------------------------------------------------------------------------------------------
# several trainers in lockstep
# ------------------------------------------------------------------------------------------------


def lockstep_train(trainers: dict[str, Any], timeout_s: float = 1800.0) -> dict[str, list[float]]:
    """Trains several Trainers step by step in turn (round robin) and returns each one's step times.

    Each `trainer.train()` runs in its own Python thread, but a baton (one semaphore per trainer) lets
    exactly one of them work at any time: at `on_step_begin` a trainer hands the baton to the next one and
    waits for it to come back before its timed window opens. Data loading and callbacks between steps also
    run while holding the baton, so no two windows ever overlap; consecutive steps of the trainers are
    seconds apart, and a slow moment of a shared machine hits all of them alike. The first step of each
    trainer may overlap another one's set-up: drop it (warm-up).
    """
    import threading

    from transformers import TrainerCallback

    names = list(trainers)
    batons = {name: threading.Semaphore(1 if i == 0 else 0) for i, name in enumerate(names)}
    following = {name: names[(i + 1) % len(names)] for i, name in enumerate(names)}
    failed = threading.Event()
    errors: dict[str, BaseException] = {}

    def take(name: str) -> None:
        if not batons[name].acquire(timeout=timeout_s) or failed.is_set():
            raise RuntimeError(f"lockstep: {name} gave up waiting for its turn (another trainer failed?)")

    class Baton(TrainerCallback):
        def __init__(self, name):
            self.name, self.first = name, True

        def on_step_begin(self, args, state, control, **kwargs):
            if self.first:
                self.first = False
                take(self.name)
            else:
                batons[following[self.name]].release()
                take(self.name)

        def on_train_end(self, args, state, control, **kwargs):
            batons[following[self.name]].release()

    timers = {}
    for name, trainer in trainers.items():
        trainer.add_callback(Baton(name))
        timers[name] = step_timer_callback()
        trainer.add_callback(timers[name])

    def target(name):
        try:
            trainers[name].train()
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller
            errors[name] = err
            failed.set()
            for sem in batons.values():
                for _ in range(4):
                    sem.release()

    threads = [threading.Thread(target=target, args=(name,), name=f"lockstep-{name}") for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        name, err = next(iter(errors.items()))
        raise RuntimeError(f"lockstep: trainer {name!r} failed: {err!r}") from err
    return {name: timer.times for name, timer in timers.items()}


def fmt(value, spec: str = ".3g") -> str:
    """`format(value, spec)`, or "n/a" for None / NaN (a metric that does not apply)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return format(value, spec)


def adjacent_ratio(a: list[list[float]], b: list[list[float]]) -> float:
    """Median over steps of a[i] / b[i], step i of each block (lockstep neighbours: the least noisy view)."""
    return median([x / y for xa, yb in zip(a, b) for x, y in zip(xa, yb)])
