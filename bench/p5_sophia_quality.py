"""P5: does SophiaG unlearn better than AdamW at equal tuning (SOUL, Jia et al. 2024, arXiv 2404.18239)?

GradDiff and NPO, each with AdamW and with SophiaG (GNB, k = 10), over `LEARNING_RATES` and `SEEDS` (the seed
moves the data order, the forget->retain pairing and the GNB label draws; the starting model is the same
cached target), on real TOFU forget10 with the target / retain pair of `bench.quality`. Each optimizer is
judged at its own best settings: for every (method, optimizer) the runs form a Pareto front in the
(model utility, forget quality) plane across learning rates, and SophiaG's front is compared with AdamW's
(`bench.pareto`: dominance, area, best forget quality at model utility >= `UTILITY_FLOOR` x the target's),
on the seed means and seed by seed. Plot: ``<output_dir>/P5_pareto.png``.

The claim holds for a method when SophiaG's front dominates AdamW's on the seed means.
"""

from __future__ import annotations

from . import common as C
from . import pareto as F
from . import quality as Q

ID = "P5"
MEASURE = "forget10, GradDiff & NPO: Pareto fronts of SophiaG vs AdamW over learning rates, 3 seeds"
TARGET = "SophiaG's front dominates AdamW's (seed means)"
METHODS = ("grad_diff", "npo")
OPTIMIZERS = ("adamw", "sophia")
LEARNING_RATES = (1e-4, 3e-4, 1e-3, 3e-3)  # 30x; both optimizers get the same grid
SEEDS = (0, 1, 2)
UTILITY_FLOOR = 0.9  # x the target's model utility


def grid(ctx: C.BenchContext) -> tuple[tuple[float, ...], tuple[int, ...]]:
    if ctx.smoke:
        return LEARNING_RATES[-2:], SEEDS[:1]
    return LEARNING_RATES, SEEDS[:1] if ctx.quick else SEEDS


def run(ctx: C.BenchContext) -> dict:
    pair = Q.ensure_pair(ctx)
    rates, seeds = grid(ctx)
    specs = [dict(method=m, optimizer=o, learning_rate=lr, seed=s)
             for m in METHODS for o in OPTIMIZERS for lr in rates for s in seeds]
    records = Q.unlearn_all(ctx, pair, specs)
    target_s, retain_s = pair["target_summary"], pair["retain_summary"]
    target = (target_s["model_utility"], F.log_fq(target_s["forget_quality"]))
    retain = (retain_s["model_utility"], 0.0)
    min_utility = UTILITY_FLOOR * target[0]

    methods, panels = {}, {}
    for method in METHODS:
        by_opt = F.series([r for r in records if r["settings"]["method"] == method], lambda s: s["optimizer"])
        verdict = F.compare(by_opt["sophia"], by_opt["adamw"], reference=(0.0, target[1]), min_utility=min_utility)
        methods[method] = {"verdict": verdict, "points": {o: F.mean_points(by_opt[o]) for o in OPTIMIZERS},
                           "runs": {o: {f"{lr:g}": c for lr, c in by_opt[o].items()} for o in OPTIMIZERS},
                           "sophia_win_rate": {f"{r['settings']['learning_rate']:g}/{r['settings']['seed']}":
                                               r.get("sophia", {}).get("win_rate") for r in records
                                               if r["settings"]["method"] == method
                                               and r["settings"]["optimizer"] == "sophia"}}
        panels[method] = {{"adamw": "AdamW", "sophia": "SophiaG"}[o]: {"points": methods[method]["points"][o]}
                          for o in OPTIMIZERS}
    plot = ctx.output_dir / "P5_pareto.png"
    F.plot_fronts(panels, target, retain, plot,
                  f"P5: forget10, seed means over {len(seeds)} seed(s), lr labelled; front = non-dominated points")

    C.log(f"[P5] {', '.join(METHODS)} x {', '.join(OPTIMIZERS)} x lr {', '.join(f'{x:g}' for x in rates)} x seeds "
          f"{list(seeds)}; {Q.settings(ctx)}; {C.machine_line()}")
    C.log(f"[P5] target: FQ {C.fmt(target_s['forget_quality'])}, MU {C.fmt(target[0], '.4f')}; retain model MU "
          f"{C.fmt(retain[0], '.4f')}")
    for method, info in methods.items():
        for opt in OPTIMIZERS:
            C.log(f"[P5] {method}/{opt}: " + "; ".join(
                f"lr {lr:g}: MU {u:.3f}+-{us:.3f}, log10 FQ {f:.2f}+-{fs:.2f}" for u, f, us, fs, lr in info["points"][opt]))
        v = info["verdict"]
        C.log(f"[P5] {method}: SophiaG front dominates AdamW's: {v['means']['a_dominates_b']} (seeds "
              f"{v['seeds_a_dominates_b']}/{len(seeds)}), AdamW's dominates SophiaG's: {v['means']['b_dominates_a']} "
              f"(seeds {v['seeds_b_dominates_a']}/{len(seeds)}); area SophiaG - AdamW {v['means']['area_a_minus_b']:+.3f} "
              f"(per seed {', '.join(f'{x:+.3f}' for x in v['area_a_minus_b_per_seed'])}); best log10 FQ at MU >= "
              f"{min_utility:.3f}: SophiaG {C.fmt(v['means']['best_log10_fq_a'], '.2f')}, AdamW "
              f"{C.fmt(v['means']['best_log10_fq_b'], '.2f')}")
    holds = {m: info["verdict"]["means"]["a_dominates_b"] for m, info in methods.items()}
    display = "; ".join(
        f"{m}: SophiaG front dominates {holds[m]} (AdamW's dominates {info['verdict']['means']['b_dominates_a']}), "
        f"area diff {info['verdict']['means']['area_a_minus_b']:+.2f} (seed std {info['verdict']['area_a_minus_b_std']:.2f})"
        for m, info in methods.items())
    return C.write_result(
        ctx, ID, measure=MEASURE, value=float(sum(holds.values())), target=TARGET,
        passed=None if ctx.smoke else all(holds.values()), display=display,
        numbers={"methods": methods, "target_summary": target_s, "retain_summary": retain_s,
                 "target_point": target, "retain_point": retain, "plot": str(plot)},
        settings={**Q.settings(ctx), "learning_rates": list(rates), "seeds": list(seeds), "utility_floor": UTILITY_FLOOR,
                  "sophia": "gnb, k=10, rho 0.04, betas (0.965, 0.99) (UnlearningConfig defaults)",
                  "adamw": "Trainer default adamw_torch_fused, betas (0.9, 0.999)", "pair_seconds": pair.get("seconds")},
        notes=["value = number of methods (of 2) whose SophiaG front dominates AdamW's on the seed means.",
               "area: hypervolume in (model utility, log10 forget quality) above (0, target's log10 FQ); FQ capped at 1."],
    )
