"""The benchmark-agnostic half of an evaluation run: work split over processes, and the result files.

* :func:`shard` / :func:`gather`: each rank evaluates a strided shard of the items; the per-item
  results are gathered with ``all_gather_object`` so every rank holds all of them (and computes the
  same aggregates as one process would).
* :func:`write_results` / :func:`read_results`: a benchmark's per-sample and summary files
  (its ``eval_file`` / ``summary_file``), written atomically on rank 0 only.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Union

import torch

from .scoring import dist_rank_world

__all__ = ["atomic_json", "gather", "read_results", "shard", "write_results"]


def shard(n: int, rank: int, world: int) -> list[tuple[int, bool]]:
    """Strided shard of range(n) for `rank` as ``(index, real)`` pairs, padded with ``(0, False)`` so that
    every rank has ceil(n/world) entries (ranks run the same number of batches: ZeRO-3 needs it)."""
    own = [(i, True) for i in range(rank, n, world)]
    size = -(-n // world)
    return own + [(0, False)] * (size - len(own))


def gather(local: dict) -> dict:
    """The union of every rank's `local` results (keys disjoint across ranks); `local` itself in one process."""
    _, world = dist_rank_world()
    if world == 1:
        return local
    gathered: list[Any] = [None] * world
    torch.distributed.all_gather_object(gathered, local)
    merged: dict = {}
    for part in gathered:
        merged.update(part)
    return merged


def atomic_json(path: Path, data: Any) -> None:
    """Writes `data` as JSON to `path` through a temporary file and a rename: never a half-written file; the
    file's mode follows the umask, as every other output's."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # as any other output file (mkstemp makes it 0600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, ensure_ascii=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _files(output_dir, benchmark) -> tuple[Path, Path]:
    from .benchmarks import get_benchmark  # not at the top: the benchmark modules import this one

    bench = get_benchmark(benchmark)
    if bench is None:
        raise ValueError("No result files without a benchmark (--benchmark none).")
    out = Path(output_dir).expanduser()
    return out / bench.eval_file, out / bench.summary_file


def write_results(output_dir: Union[str, os.PathLike], per_sample: dict, summary: dict,
                  benchmark="tofu") -> tuple[Path, Path]:
    """Writes the benchmark's per-sample file (e.g. ``tofu_eval.json``; a retain model's copy is TOFU's
    reference file) and summary file (``tofu_summary.json``) into `output_dir` (created), each atomically.

    Writes on rank 0 only in a multi-process run; returns the two paths on every rank.
    """
    eval_path, summary_path = _files(output_dir, benchmark)
    rank, _ = dist_rank_world()
    if rank == 0:
        eval_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_json(eval_path, per_sample)
        atomic_json(summary_path, summary)
    return eval_path, summary_path


def read_results(output_dir: Union[str, os.PathLike],
                 benchmark="tofu") -> tuple[dict, dict]:
    """``(per_sample, summary)`` read back from a folder written by :func:`write_results`."""
    eval_path, summary_path = _files(output_dir, benchmark)
    with open(eval_path, encoding="utf-8") as fh:
        per_sample = json.load(fh)
    with open(summary_path, encoding="utf-8") as fh:
        summary = json.load(fh)
    return per_sample, summary
