"""Fronts and verdicts of the real-LM grid (`bench.real_lm`) from whatever runs are cached: R1 (SOUL: SophiaG vs
AdamW for GradDiff and NPO) and R2 (UNDIAL's utility over learning rates next to NPO and GA).

Writes ``R1.json``, ``R2.json``, ``R1_pareto.png``, ``R2_pareto.png`` and ``real_lm_runs.json`` (every cached run's
record, committed so that the grid's results survive the cache) into the results folder. A grid that is not
complete is reported as such: each verdict names the runs it rests on.
"""

from __future__ import annotations

import json
from pathlib import Path

from . import common as C
from . import pareto as F
from . import real_lm as R

UTILITY_FLOOR = 0.9  # "model utility >= 0.9x the target's" (issue: the seeds' claims on the real LM)
FQ_GOAL = 0.05  # TOFU's usual bar for "forgotten": the KS test cannot tell the model from the retain model


def records(results: Path) -> list[dict]:
    folder = R.pair_dir(results) / "runs"
    found = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
    return sorted(found, key=lambda r: (r["settings"]["method"], r["settings"]["optimizer"],
                                        r["settings"]["learning_rate"], r["settings"]["seed"]))


def _point(summary: dict) -> tuple[float, float]:
    return summary["model_utility"], F.log_fq(summary["forget_quality"])


def report(results: Path) -> dict:
    results = Path(results)
    pair = json.loads((R.pair_dir(results) / "pair.json").read_text())
    runs = records(results)
    (results / "real_lm_runs.json").write_text(json.dumps({"pair": {k: pair[k] for k in pair if k.endswith("summary")
                                                                     or k.endswith("finetune")},
                                                          "settings": R.settings(), "runs": runs}, indent=1))
    target_s, retain_s = pair["target_summary"], pair["retain_summary"]
    target, retain = _point(target_s), (retain_s["model_utility"], 0.0)
    floor = UTILITY_FLOOR * target[0]
    goal_runs = [r for r in runs if r["summary"]["model_utility"] >= floor
                 and (r["summary"]["forget_quality"] or 0) >= FQ_GOAL]

    soul, panels = {}, {}
    for method in ("grad_diff", "npo"):
        by_opt = F.series([r for r in runs if r["settings"]["method"] == method], lambda s: s["optimizer"])
        if not {"adamw", "sophia"} <= by_opt.keys():
            soul[method] = {"complete": False, "runs": sum(len(c["runs"]) for o in by_opt.values() for c in o.values())}
            continue
        common_lrs = sorted(set(by_opt["adamw"]) & set(by_opt["sophia"]))
        a = {lr: by_opt["sophia"][lr] for lr in common_lrs}
        b = {lr: by_opt["adamw"][lr] for lr in common_lrs}
        verdict = F.compare(a, b, reference=(0.0, target[1]), min_utility=floor)
        soul[method] = {"complete": len(common_lrs) == len(R.LEARNING_RATES) and all(
            len(c["runs"]) == len(R.SEEDS) for c in (*a.values(), *b.values())),
            "learning_rates": common_lrs, "verdict": verdict,
            "points": {o: F.mean_points(by_opt[o]) for o in ("adamw", "sophia")}}
        panels[method] = {name: {"points": soul[method]["points"][o]} for o, name in (("adamw", "AdamW"),
                                                                                      ("sophia", "SophiaG"))}
    if panels:
        F.plot_fronts(panels, target, retain, results / "R1_pareto.png",
                      "R1 (SmolLM2-135M, forget01): SophiaG vs AdamW, seed means, lr labelled")

    undial = {}
    by_method = F.series([r for r in runs if r["settings"]["optimizer"] == "adamw" and r["settings"]["seed"] == 0
                          and r["settings"]["method"] in ("undial", "npo", "ga")], lambda s: s["method"])
    for method, by_lr in by_method.items():
        undial[method] = {f"{lr:g}": {"utility_ratio": cell["runs"][0][0] / target[0],
                                      "model_utility": cell["runs"][0][0], "log10_forget_quality": cell["runs"][0][1]}
                          for lr, cell in sorted(by_lr.items())}
    if by_method:
        F.plot_fronts({"UNDIAL vs NPO vs GA (AdamW, seed 0)": {m.upper(): {"points": F.mean_points(by_lr)}
                                                              for m, by_lr in by_method.items()}},
                      target, retain, results / "R2_pareto.png", "R2 (SmolLM2-135M, forget01): lr labelled")

    common = dict(target_summary=target_s, retain_summary=retain_s, base_summary=pair.get("base_summary"),
                  target_point=target, retain_point=retain, runs=len(runs), planned=len(R.grid_specs()),
                  goal_runs=[r["settings"] for r in goal_runs])
    # R3: the one-shot influence step next to GradDiff's iterative runs (seed 0), each a point on the same plane
    influence = [{"influence_damping": r["settings"]["influence_damping"], "learning_rate": r["settings"]["learning_rate"],
                  "model_utility": r["summary"]["model_utility"], "forget_quality": r["summary"]["forget_quality"],
                  "forget_rouge": r["summary"]["forget_rouge"], "hessian_refreshes": r.get("sophia", {}).get(
                      "hessian_refreshes")} for r in runs if r["settings"]["optimizer"] == "influence"]
    gd_seed0 = [{"optimizer": r["settings"]["optimizer"], "learning_rate": r["settings"]["learning_rate"],
                 "model_utility": r["summary"]["model_utility"], "forget_quality": r["summary"]["forget_quality"],
                 "forget_rouge": r["summary"]["forget_rouge"]} for r in runs
                if r["settings"]["method"] == "grad_diff" and r["settings"]["seed"] == 0
                and r["settings"]["optimizer"] in ("adamw", "sophia")]
    r1 = C._clean(dict(common, methods=soul, influence=influence, grad_diff_seed0=gd_seed0))
    r2 = C._clean(dict(common, undial=undial))
    (results / "R1.json").write_text(json.dumps(r1, indent=1))
    (results / "R2.json").write_text(json.dumps(r2, indent=1))
    print(summary_text(r1, r2, floor))
    return {"R1": r1, "R2": r2}


def summary_text(r1: dict, r2: dict, floor: float) -> str:
    lines = [f"runs cached: {r1['runs']} of {r1['planned']} planned",
             f"target: MU {r1['target_point'][0]:.4f}, log10 FQ {r1['target_point'][1]:.2f}; retain model MU "
             f"{r1['retain_point'][0]:.4f}; utility floor {floor:.4f}",
             f"runs with FQ >= {FQ_GOAL} and MU >= {UTILITY_FLOOR}x target's: {len(r1['goal_runs'])} {r1['goal_runs']}"]
    for method, info in r1["methods"].items():
        if "verdict" not in info:
            lines.append(f"R1 {method}: not enough runs ({info})")
            continue
        v = info["verdict"]
        lines.append(f"R1 {method} (lr {info['learning_rates']}, complete {info['complete']}): SophiaG front dominates "
                     f"AdamW's {v['means']['a_dominates_b']}, AdamW's dominates SophiaG's {v['means']['b_dominates_a']}, "
                     f"area SophiaG - AdamW {v['means']['area_a_minus_b']:+.3f} (per seed "
                     f"{', '.join(f'{x:+.3f}' for x in v['area_a_minus_b_per_seed'])})")
        for opt, pts in info["points"].items():
            lines.append(f"   {opt}: " + "; ".join(f"lr {lr:g}: MU {u:.3f}, log10 FQ {f:.2f}" for u, f, _, _, lr in pts))
    for row in r1.get("influence", []):
        lines.append(f"R3 influence (damping {row['influence_damping']:g}, lr {row['learning_rate']:g}): MU "
                     f"{row['model_utility']:.3f}, FQ {row['forget_quality']:.3g}, forget ROUGE {row['forget_rouge']:.3f}")
    for method, by_lr in r2["undial"].items():
        lines.append(f"R2 {method}: " + "; ".join(f"lr {lr}: MU/target {c['utility_ratio']:.3f}, log10 FQ "
                                                  f"{c['log10_forget_quality']:.2f}" for lr, c in by_lr.items()))
    return "\n".join(lines)
