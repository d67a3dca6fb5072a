"""Pareto fronts of unlearning runs in the (model utility, forget quality) plane, for P5 and P6.

A point is one setting (method, optimizer, learning rate); both coordinates are to be maximised. Forget
quality is a p-value spanning tens of decades, so every distance and area uses log10 of it. The fronts are
compared three ways, each computed on the seed means and again on every seed alone (the seed spread):

* **dominance**: front A dominates front B when every point of B is weakly dominated by some point of A
  (A >= B on both coordinates), and A is not identical to B;
* **area** (hypervolume): the area dominated by the front above the reference corner (model utility 0,
  log10 forget quality of the target before unlearning), with log10 forget quality capped at 0 (p = 1);
  the larger, the better the front trades utility for forgetting;
* **best forget quality at a utility floor**: the highest forget quality of a point whose model utility is
  at least `floor` x the target's (the question a user tuning the learning rate asks).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

Point = tuple[float, float]  # (model utility, log10 forget quality)


def log_fq(forget_quality: float | None, floor: float = -300.0) -> float | None:
    """log10 of a forget-quality p-value, capped at 0 and floored (a p-value of exactly 0 underflowed)."""
    if forget_quality is None or not math.isfinite(forget_quality):
        return None
    return min(0.0, max(floor, math.log10(forget_quality))) if forget_quality > 0 else floor


def front(points: Iterable[Point]) -> list[Point]:
    """The non-dominated points, sorted by model utility (ascending; forget quality then descends)."""
    kept: list[Point] = []
    for p in sorted(set(points), key=lambda q: (-q[0], -q[1])):  # utility descending, ties: better FQ first
        if not kept or p[1] > kept[-1][1]:
            kept.append(p)
    return sorted(kept)


def dominates(a: Sequence[Point], b: Sequence[Point]) -> bool:
    """Every point of front `b` is weakly dominated by a point of front `a`, and the fronts differ."""
    covered = all(any(pa[0] >= pb[0] and pa[1] >= pb[1] for pa in a) for pb in b)
    return covered and sorted(set(a)) != sorted(set(b))


def area(points: Sequence[Point], reference: Point) -> float:
    """Hypervolume of the region dominated by `points` and dominating the corner `reference` (2-D)."""
    ref_u, ref_f = reference
    total, covered_f = 0.0, ref_f
    for u, f in sorted(front(points), key=lambda p: -p[0]):  # sweep utility downwards; FQ rises along the front
        if u <= ref_u or f <= covered_f:
            continue
        total += (u - ref_u) * (f - covered_f)
        covered_f = f
    return total


def best_at_floor(points: Sequence[Point], min_utility: float) -> float | None:
    """Highest log10 forget quality among points with model utility >= `min_utility` (None if none)."""
    eligible = [f for u, f in points if u >= min_utility]
    return max(eligible) if eligible else None


def series(records: Sequence[dict], key) -> dict:
    """Groups run records (`bench.quality.unlearn`) by `key(settings)` (e.g. the optimizer), then by learning
    rate: ``{name: {lr: {"seeds": [...], "runs": [(utility, log10 FQ), ...] in seed order}}}``."""
    out: dict = {}
    for r in records:
        s, summary = r["settings"], r["summary"]
        cell = out.setdefault(key(s), {}).setdefault(s["learning_rate"], {"seeds": [], "runs": []})
        cell["seeds"].append(s["seed"])
        cell["runs"].append((summary["model_utility"], log_fq(summary["forget_quality"])))
    for by_lr in out.values():
        for cell in by_lr.values():
            order = sorted(range(len(cell["seeds"])), key=cell["seeds"].__getitem__)
            cell["seeds"] = [cell["seeds"][i] for i in order]
            cell["runs"] = [cell["runs"][i] for i in order]
    return out


def mean_points(by_lr: dict) -> list[tuple[float, float, float, float, float]]:
    """(utility mean, log10 FQ mean, utility std, log10 FQ std, lr) per learning rate, lr ascending."""
    import statistics

    points = []
    for lr in sorted(by_lr):
        runs = by_lr[lr]["runs"]
        us, fs = [u for u, _ in runs], [f for _, f in runs]
        sd = (lambda v: statistics.stdev(v) if len(v) > 1 else 0.0)
        points.append((statistics.fmean(us), statistics.fmean(fs), sd(us), sd(fs), lr))
    return points


def compare(a: dict, b: dict, reference: Point, min_utility: float) -> dict:
    """Front `a` against front `b` (each ``{lr: {"seeds", "runs"}}`` with the same seeds), on the seed means
    and on each seed alone: dominance both ways, areas (and a - b), best log10 FQ at `min_utility`."""
    import statistics

    def one(pa: list[Point], pb: list[Point]) -> dict:
        fa, fb = front(pa), front(pb)
        best_a, best_b = best_at_floor(pa, min_utility), best_at_floor(pb, min_utility)
        return {"a_dominates_b": dominates(fa, fb), "b_dominates_a": dominates(fb, fa),
                "area_a": area(pa, reference), "area_b": area(pb, reference),
                "area_a_minus_b": area(pa, reference) - area(pb, reference),
                "best_log10_fq_a": best_a, "best_log10_fq_b": best_b,
                "best_log10_fq_a_minus_b": None if best_a is None or best_b is None else best_a - best_b,
                "front_a": fa, "front_b": fb}

    means = one([(u, f) for u, f, *_ in mean_points(a)], [(u, f) for u, f, *_ in mean_points(b)])
    seeds = sorted(set.intersection(*(set(c["seeds"]) for c in (*a.values(), *b.values()))))

    def at_seed(side: dict, seed: int) -> list[Point]:
        return [c["runs"][c["seeds"].index(seed)] for c in side.values()]

    per_seed = {seed: one(at_seed(a, seed), at_seed(b, seed)) for seed in seeds}
    diffs = [v["area_a_minus_b"] for v in per_seed.values()]
    return {"means": means, "per_seed": per_seed,
            "seeds_a_dominates_b": sum(v["a_dominates_b"] for v in per_seed.values()),
            "seeds_b_dominates_a": sum(v["b_dominates_a"] for v in per_seed.values()),
            "area_a_minus_b_per_seed": diffs,
            "area_a_minus_b_std": statistics.stdev(diffs) if len(diffs) > 1 else 0.0,
            "reference": reference, "min_utility": min_utility}


def plot_fronts(panels: dict[str, dict[str, dict]], target: Point, retain: Point, path, title: str) -> None:
    """One panel per method; per series (optimizer or method) the seed-mean points (error bars: seed std),
    labelled by learning rate, joined along their Pareto front; the target (before) and the retain model
    (the goal) as reference marks. `panels[name][series] = {"points": [(u, logfq, u_std, logfq_std, lr)]}`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(6.0 * len(panels), 4.6), dpi=110, squeeze=False)
    for ax, (name, series) in zip(axes[0], panels.items()):
        for label, data in series.items():
            pts = data["points"]
            bars = ax.errorbar([p[0] for p in pts], [10 ** p[1] for p in pts], xerr=[p[2] for p in pts],
                               yerr=None, fmt="o", markersize=4, capsize=2, label=label, alpha=0.9)
            color = bars[0].get_color()
            for u, f, _, f_std, lr in pts:  # the FQ spread as a vertical bar in log space
                ax.plot([u, u], [10 ** (f - f_std), 10 ** min(0.0, f + f_std)], color=color, alpha=0.4, linewidth=1)
                ax.annotate(f"{lr:g}", (u, 10 ** f), textcoords="offset points", xytext=(3, 3), fontsize=6,
                            color=color)
            line = front((p[0], p[1]) for p in pts)
            ax.plot([p[0] for p in line], [10 ** p[1] for p in line], "-", color=color, linewidth=1.2)
        ax.plot(*_linear(target), "kx", markersize=8, label="target (before)")
        ax.plot(*_linear(retain), "k*", markersize=10, label="retain model (goal)")
        ax.set_yscale("log")
        ax.set_xlabel("model utility")
        ax.set_ylabel("forget quality (KS-test p-value)")
        ax.set_title(name, fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _linear(point: Point) -> tuple[float, float]:
    return point[0], 10 ** point[1]
