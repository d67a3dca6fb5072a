"""P6: is UNDIAL robust to the learning rate (Dong et al., arXiv 2402.10052)?

UNDIAL, NPO and GA with AdamW over learning rates 1e-5 ... 1e-3 (`LEARNING_RATES`) and 3 seeds, on real TOFU
forget10 from the cached target of `bench.quality`. Reported: each method's Pareto front over learning rates
in the (model utility, forget quality) plane (`bench.pareto`; plot ``<output_dir>/P6_pareto.png``), UNDIAL's
front against NPO's and GA's, and the paper's claim as stated: UNDIAL's model utility (seed mean) stays
>= 0.9x the target's at every learning rate. Methods use their defaults (UNDIAL beta 10 without a retain
term, NPO beta 0.1 with the NLL retain term, GA forget term only). NPO's runs are P5's NPO+AdamW runs when
the grids overlap (one run cache).
"""

from __future__ import annotations

import statistics

from . import common as C
from . import pareto as F
from . import quality as Q

ID = "P6"
MEASURE = "UNDIAL vs NPO vs GA (AdamW), lr 1e-5 ... 1e-3, 3 seeds: Pareto fronts; UNDIAL MU / target's"
TARGET = "UNDIAL MU >= 0.9x target MU at every lr"
METHODS = ("undial", "npo", "ga")
LEARNING_RATES = (1e-5, 1e-4, 3e-4, 1e-3)
SEEDS = (0, 1, 2)
FLOOR = 0.9


def grid(ctx: C.BenchContext) -> tuple[tuple[float, ...], tuple[int, ...]]:
    if ctx.smoke:
        return LEARNING_RATES[1:2], SEEDS[:1]
    return LEARNING_RATES, SEEDS[:1] if ctx.quick else SEEDS


def run(ctx: C.BenchContext) -> dict:
    pair = Q.ensure_pair(ctx)
    rates, seeds = grid(ctx)
    specs = [dict(method=m, optimizer="adamw", learning_rate=lr, seed=s) for m in METHODS for lr in rates for s in seeds]
    records = Q.unlearn_all(ctx, pair, specs)
    target_s, retain_s = pair["target_summary"], pair["retain_summary"]
    target = (target_s["model_utility"], F.log_fq(target_s["forget_quality"]))
    retain = (retain_s["model_utility"], 0.0)
    by_method = F.series(records, lambda s: s["method"])
    points = {m: F.mean_points(by_method[m]) for m in METHODS}
    versus = {other: F.compare(by_method["undial"], by_method[other], reference=(0.0, target[1]),
                               min_utility=FLOOR * target[0]) for other in METHODS if other != "undial"}
    def over_target(u):
        return u / target[0] if target[0] else None  # the smoke model's utility is 0

    undial_ratio = [over_target(u) for u, *_ in points["undial"]]
    undial_ratio_per_seed = {f"{lr:g}": [over_target(u) for u, _ in by_method["undial"][lr]["runs"]] for lr in rates}
    worst = min(x for x in undial_ratio if x is not None) if any(x is not None for x in undial_ratio) else None
    holds = worst is not None and worst >= FLOOR
    plot = ctx.output_dir / "P6_pareto.png"
    F.plot_fronts({"UNDIAL vs NPO vs GA (AdamW)": {m.upper(): {"points": points[m]} for m in METHODS}}, target, retain,
                  plot, f"P6: forget10, seed means over {len(seeds)} seed(s), lr labelled")

    C.log(f"[P6] {', '.join(METHODS)} with AdamW at lr {', '.join(f'{x:g}' for x in rates)}, seeds {list(seeds)}; "
          f"target MU {C.fmt(target[0], '.4f')}; {Q.settings(ctx)}; {C.machine_line()}")
    for m in METHODS:
        C.log(f"[P6] {m}: " + "; ".join(f"lr {lr:g}: MU {u:.3f}+-{us:.3f} (x target {C.fmt(over_target(u), '.2f')}), log10 FQ "
                                       f"{f:.2f}+-{fs:.2f}" for u, f, us, fs, lr in points[m]))
    for other, v in versus.items():
        C.log(f"[P6] UNDIAL vs {other}: UNDIAL dominates {v['means']['a_dominates_b']} (seeds {v['seeds_a_dominates_b']}), "
              f"{other} dominates {v['means']['b_dominates_a']} (seeds {v['seeds_b_dominates_a']}); area diff "
              f"{v['means']['area_a_minus_b']:+.3f} (seed std {v['area_a_minus_b_std']:.3f})")
    display = ("UNDIAL MU/target (seed mean) " + ", ".join(f"{lr:g}: {C.fmt(x, '.2f')}" for lr, x in zip(rates, undial_ratio))
               + "; " + "; ".join(f"UNDIAL front vs {o}: dominates {v['means']['a_dominates_b']}, dominated "
                                   f"{v['means']['b_dominates_a']}" for o, v in versus.items()))
    return C.write_result(
        ctx, ID, measure=MEASURE, value=worst, target=TARGET, passed=None if ctx.smoke else holds, display=display,
        numbers={"points": points, "runs": {m: {f"{lr:g}": c for lr, c in by_method[m].items()} for m in METHODS},
                 "undial_mu_over_target": undial_ratio, "undial_mu_over_target_per_seed": undial_ratio_per_seed,
                 "undial_mu_over_target_seed_std": {k: statistics.stdev(v) if len(v) > 1 and None not in v else None
                                                    for k, v in undial_ratio_per_seed.items()},
                 "undial_versus": versus, "target_summary": target_s, "retain_summary": retain_s,
                 "target_point": target, "retain_point": retain, "plot": str(plot)},
        settings={**Q.settings(ctx), "learning_rates": list(rates), "seeds": list(seeds), "optimizer": "adamw",
                  "floor": FLOOR},
        notes=["value = UNDIAL's lowest seed-mean model utility over the target's, across the learning rates."],
    )
