"""What a person looks at after a run: the forget / utility plot and result tables. What a plot draws comes from
the benchmark's entry (`Benchmark.forget_metric` against `utility_metric`, `log_scale`, `forget_metric_line`)."""

from __future__ import annotations

import math
from pathlib import Path


def _entry(benchmark):
    from .eval.benchmarks import DEFAULT_BENCHMARK, get_benchmark

    return get_benchmark(DEFAULT_BENCHMARK if benchmark is None else benchmark)


def _axes(ax, bench) -> None:
    """Axis labels, the forget axis's scale and its reference line."""
    log = bench.forget_metric in bench.log_scale
    if log:
        ax.set_yscale("log")
    if bench.forget_metric_line is not None:
        value, label = bench.forget_metric_line
        ax.axhline(value, color="tab:green", linestyle=":", linewidth=1, label=label)
    ax.set_xlabel(bench.label(bench.utility_metric))
    ax.set_ylabel(bench.label(bench.forget_metric) + (" (log)" if log else ""))


def plot_unlearning(history: list[dict], path: str | Path, before: dict | None = None, after: dict | None = None,
                    title: str = "", subsample: int | None = None, final_subsample: int | None = None,
                    benchmark=None) -> Path:
    """The benchmark's forget metric (TOFU, the default: forget quality, log scale) against its utility metric at
    each evaluation, before -> after. The evaluations during training on the first `subsample` questions per split
    (TOFU: p-values from fewer truth ratios) are a dotted path of their own, labelled so; before and after (all
    questions) are separate markers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bench = _entry(benchmark)
    x_key, y_key = bench.utility_metric, bench.forget_metric
    points = [(h[x_key], h[y_key], h.get("step")) for h in history
              if h.get(y_key) is not None and h.get(x_key) is not None]
    fig, ax = plt.subplots(figsize=(5.5, 4.2), dpi=120)
    if points:
        xs, ys, steps = zip(*points)
        during = f"during training (first {subsample} questions per split)" if subsample else "during training"
        ax.plot(xs, ys, ":o" if subsample else "-o", color="tab:blue", markersize=4, label=during)
        for x, y, step in points:
            ax.annotate(str(step), (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)
    questions = f"first {final_subsample} questions per split" if final_subsample else "all questions"
    for summary, marker, colour, label in ((before, "s", "tab:gray", f"before ({questions})"),
                                           (after, "*", "tab:red", f"after ({questions})")):
        if summary and summary.get(y_key) is not None and summary.get(x_key) is not None:
            ax.plot(summary[x_key], summary[y_key], marker, color=colour, markersize=10, label=label)
    _axes(ax, bench)
    ax.set_title(title or f"{bench.title}: {y_key.replace('_', ' ')} vs {x_key.replace('_', ' ')}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _fmt(value, digits=4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e4):
            return f"{value:.2e}"
        return f"{value:.{digits}f}" if not math.isnan(value) else "nan"
    return str(value)


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def plot_runs(runs: list[tuple[str, Path]], path: str | Path, benchmark=None) -> Path:
    """One figure with every run's path from the target (before) to the unlearned model (after).

    Each run folder holds `run_info.json` (before/after summaries) and the benchmark's history file
    (`tofu_history.json` for TOFU, the default: evaluations during training, written by `ForgetQualityCallback`)."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bench = _entry(benchmark)
    x_key, y_key = bench.utility_metric, bench.forget_metric
    fig, ax = plt.subplots(figsize=(6.5, 4.5), dpi=120)
    subsamples = set()
    for label, folder in runs:
        folder = Path(folder)
        info = json.loads((folder / "run_info.json").read_text())
        history_file = folder / bench.history_file
        history = json.loads(history_file.read_text()) if history_file.exists() else []
        if isinstance(history, dict):
            subsamples.add(history.get("subsample"))
            history = history.get("history", [])
        ends = [p for p in (info.get("before"), info.get("after")) if p and p.get(y_key) is not None]
        during = [h.get("metrics", h) for h in history]
        during = [p for p in during if p and p.get(y_key) is not None]
        color = None
        if ends:
            (line,) = ax.plot([p[x_key] for p in ends], [p[y_key] for p in ends], "-o", markersize=3, label=label)
            color = line.get_color()
            ax.plot(ends[-1][x_key], ends[-1][y_key], "*", color="black", markersize=8)
        if during:
            # Evaluations during training may use a subsample of the questions (TOFU: KS p-values from fewer
            # truth ratios than the full evaluations'), so they get their own dotted path.
            ax.plot([p[x_key] for p in during], [p[y_key] for p in during], ":.", color=color, markersize=4,
                    label=None if ends else label)
    _axes(ax, bench)
    subsamples.discard(None)
    during = f"first {', '.join(map(str, sorted(subsamples)))} questions per split" if subsamples else "all questions"
    ax.set_title(f"{bench.title} unlearning: target -> unlearned (star); dotted: during training ({during})", fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
