"""P8: sequential unlearning requests on TOFU (UNDIAL's claim: its utility holds across requests).

Three requests from a tiny target (`hf_unlearn.sequential`, cumulative mode): forget01, then forget05 minus
forget01, then forget10 minus forget05, each starting from the model the previous request produced, with a
fresh optimizer. After request k the model is evaluated on the whole cumulative forget set (forget01 /
forget05 / forget10, every question) against the retain99 / retain95 / retain90 model's evaluation.
UNDIAL, NPO and GA with AdamW, each method's defaults.

The models: four tiny-llamas of the quality pair's size and recipe (`bench.quality`: demo size, 5 epochs,
lr 3e-3, cosine, general-knowledge QA; target seed 0, retain models seed 1) -- but, to fit a shared 2-core
box, fine-tuned on the TOFU authors the evaluation reads (`AUTHORS`: the 20 forget10 authors and the 23 whose
questions make up retain_perturbed, 860 of TOFU's 4000 questions) instead of all 200. target = those
authors; retainXX = those authors minus forgetXX's. Everything is cached under
``<output_dir>/cache/sequential-<settings hash>/``: models, references, and each method's whole sequence.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from . import common as C
from . import quality as Q

ID = "P8"
MEASURE = "sequential TOFU, 3 requests (forget01 -> 05 -> 10): model utility, forget quality after each"
TARGET = "UNDIAL MU >= 0.9x target MU after every request"
METHODS = ("undial", "npo", "ga")
SPLITS = ("forget01", "forget05", "forget10")
RETAIN = {"forget01": "retain99", "forget05": "retain95", "forget10": "retain90"}
FLOOR = 0.9
AUTHORS = tuple(range(0, 23)) + tuple(range(180, 200))  # TOFU: 20 questions per author, in author order
QUESTIONS_PER_AUTHOR = 20
# Every question of every split: the cumulative forget set must be whole (a first-N subsample of forget10
# would hold none of the rows the first two requests forgot).
EVAL = dict(subsample=None, max_new_tokens=200, batch_size=32)
UNLEARN = dict(num_train_epochs=2, per_device_train_batch_size=32, weight_decay=0.01, learning_rate=1e-3)
SMOKE_SPLITS = ("forget01", "forget10")  # synthetic 20 authors: forget05 = forget01 (one author each)
SMOKE_EVAL = dict(subsample=2, max_new_tokens=4, batch_size=32)
SMOKE_UNLEARN = dict(max_steps=1, per_device_train_batch_size=4, weight_decay=0.01, learning_rate=1e-4)


def settings(ctx: C.BenchContext) -> dict:
    q = Q.settings(ctx)
    return {"data": q["data"], "model_size": q["model_size"], "size": q["size"], "vocab_size": q["vocab_size"],
            "finetune": q["finetune"], "general_knowledge": q["general_knowledge"],
            "authors": None if ctx.smoke else list(AUTHORS),
            "splits": list(SMOKE_SPLITS if ctx.smoke else SPLITS), "eval": SMOKE_EVAL if ctx.smoke else EVAL,
            "unlearn": SMOKE_UNLEARN if ctx.smoke else UNLEARN}


def cache_dir(ctx: C.BenchContext) -> Path:
    key = hashlib.sha1(json.dumps(settings(ctx), sort_keys=True).encode()).hexdigest()[:10]
    return ctx.cache_dir / f"sequential-{key}"


def _rows(ctx, split: str):
    """`split`'s rows of the kept authors (all rows in smoke mode)."""
    folder, _ = C.data_dir(ctx)
    rows = C.load_rows(folder, split)
    wanted = settings(ctx)["authors"]
    if wanted is None:
        return rows
    full = C.load_rows(folder, "full")["question"]
    kept = {q for i, q in enumerate(full) if i // QUESTIONS_PER_AUTHOR in set(wanted)}
    return rows.filter(lambda row: row["question"] in kept)


def ensure_model(ctx: C.BenchContext, name: str) -> str:
    """``target`` (the kept authors) or ``retain99/95/90`` (minus forgetXX), fine-tuned like the quality pair."""
    from hf_unlearn.pipeline import finetune, with_general_knowledge

    wanted = settings(ctx)
    folder, _ = C.data_dir(ctx)
    out = cache_dir(ctx) / name
    if (out / "model.safetensors").is_file():
        return str(out)
    tokenizer = C.tokenizer_for(folder, wanted["vocab_size"])
    rows = _rows(ctx, "full" if name == "target" else name)
    if wanted["general_knowledge"]:
        rows = with_general_knowledge(rows, folder)
    model = C.build_model(tokenizer, wanted["size"], seed=0 if name == "target" else 1)
    C.log(f"[P8] fine-tuning {name} on {len(rows)} rows: {wanted['finetune']}")
    start = time.perf_counter()
    trainer = finetune(model, tokenizer, rows, Q._finetune_args(ctx.scratch / f"p8_{name}", wanted["finetune"]))
    C.log(f"[P8] {name} fine-tuned in {time.perf_counter() - start:.0f}s")
    tokenizer.save_pretrained(str(out))
    trainer.save_model(str(out))  # model.safetensors marks the model done
    return str(out)


def benchmark(ctx: C.BenchContext):
    """`TofuRequests` on the TOFU folder whose training splits hold the kept authors' rows only (the
    evaluation splits stay whole)."""
    from hf_unlearn.sequential import TofuRequests

    class KeptAuthors(TofuRequests):
        def load(self, split, role="forget"):
            return _rows(ctx, split)

    folder, _ = C.data_dir(ctx)
    ev = settings(ctx)["eval"]
    return KeptAuthors(folder, batch_size=ev["batch_size"], max_new_tokens=ev["max_new_tokens"],
                       subsample=ev["subsample"], show_progress=False)


def ensure_reference(ctx: C.BenchContext, split: str) -> str:
    """The retain model of `split` evaluated on it: the reference file of the request evaluated on `split`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = cache_dir(ctx) / f"reference-{split}"
    if not (out / "tofu_summary.json").is_file():
        path = ensure_model(ctx, RETAIN[split])
        bench = benchmark(ctx)
        start = time.perf_counter()
        per_sample, summary = bench.evaluate(AutoModelForCausalLM.from_pretrained(path),
                                             AutoTokenizer.from_pretrained(path), split, None)
        bench.write(out, per_sample, summary)
        C.log(f"[P8] {RETAIN[split]} on {split}: MU {summary['model_utility']:.4f} ({time.perf_counter() - start:.0f}s)")
    return str(out / "tofu_eval.json")


def ensure_target_eval(ctx: C.BenchContext, split: str) -> dict:
    """The target evaluated on the cumulative set `split` (its forget quality before any request)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hf_unlearn.eval.runner import read_results

    out = cache_dir(ctx) / f"target-{split}"
    if not (out / "tofu_summary.json").is_file():
        reference = ensure_reference(ctx, split)
        target = ensure_model(ctx, "target")
        bench = benchmark(ctx)
        start = time.perf_counter()
        per_sample, summary = bench.evaluate(AutoModelForCausalLM.from_pretrained(target),
                                             AutoTokenizer.from_pretrained(target), split, reference)
        bench.write(out, per_sample, summary)
        C.log(f"[P8] target on {split}: FQ {summary['forget_quality']:.3g}, MU {summary['model_utility']:.4f} "
              f"({time.perf_counter() - start:.0f}s)")
    return read_results(out)[1]


def ensure_references(ctx: C.BenchContext) -> dict:
    """Each retain model's evaluation on its forget split (the references) and the target's evaluation on
    the first request's split (request 0: the model before any request, as run_sequential's "start")."""
    from hf_unlearn.eval.runner import read_results

    splits = settings(ctx)["splits"]
    references = {split: ensure_reference(ctx, split) for split in splits}
    return {"references": references, "target": ensure_target_eval(ctx, splits[0]),
            "retain": {split: read_results(Path(references[split]).parent)[1] for split in splits},
            "target_model": ensure_model(ctx, "target")}


def run_method(ctx: C.BenchContext, refs: dict, method: str) -> dict:
    """One method's three requests through `hf_unlearn.sequential` (resumes per request); its summary."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hf_unlearn import UnlearningTrainer
    from hf_unlearn.sequential import plan_requests, run_requests

    from hf_unlearn.methods import get_method

    wanted = settings(ctx)
    bench = benchmark(ctx)
    tokenizer = AutoTokenizer.from_pretrained(refs["target_model"])
    args = C.unlearning_config(cache_dir(ctx) / "runs" / method, unlearn_method=method, unlearn_optimizer="adamw",
                               logging_steps=5, save_strategy="no", **wanted["unlearn"])
    definition = get_method(method)
    requests = plan_requests(bench, wanted["splits"], [refs["references"][s] for s in wanted["splits"]],
                             needs_retain=definition.needs_retain(definition.settings_from(args)))

    def load_model(chain):
        return AutoModelForCausalLM.from_pretrained(chain[-1] if chain else refs["target_model"])

    def make_trainer(model, request_args, request):
        retain = bench.load(request.retain_split, "retain") if request.retain_split else None
        return UnlearningTrainer(model=model, args=request_args, forget_dataset=request.forget, retain_dataset=retain,
                                 processing_class=tokenizer)

    start = time.perf_counter()
    result = run_requests(requests, bench, load_model=load_model, tokenizer=tokenizer, args=args,
                          make_trainer=make_trainer, evaluate_before=False, resume=True)  # cached per request
    C.log(f"[P8] {method}: FQ {[C.fmt(x) for x in result['metrics']['forget_quality']]}, MU "
          f"{[C.fmt(x, '.4f') for x in result['metrics']['model_utility']]} ({time.perf_counter() - start:.0f}s)")
    return result


def _ratio(x, y):
    return x / y if x is not None and y else None


def run(ctx: C.BenchContext) -> dict:
    refs = ensure_references(ctx)
    wanted = settings(ctx)
    splits = wanted["splits"]
    start = refs["target"]
    target_mu = start["model_utility"]
    table = {"target": {"forget_quality": [start["forget_quality"]], "model_utility": [target_mu],
                        "forget_rouge": [start["forget_rouge"]], "forget_prob": [start["forget_prob"]],
                        "retain_utility": [Q.retain_utility(start)]}}
    for method in METHODS:
        result = run_method(ctx, refs, method)
        m = result["metrics"]
        table[method] = {"forget_quality": m["forget_quality"], "model_utility": m["model_utility"],
                         "forget_rouge": m["forget_rouge"], "forget_prob": m["forget_prob"],
                         "retain_utility": [Q.retain_utility({k: m[k][i] for k in ("retain_prob", "retain_rouge",
                                                                                   "retain_truth_ratio")})
                                            for i in range(len(splits))],
                         "mu_over_target": [_ratio(x, target_mu) for x in m["model_utility"]],
                         "retain_utility_over_target": [_ratio(Q.retain_utility({k: m[k][i] for k in (
                             "retain_prob", "retain_rouge", "retain_truth_ratio")}), Q.retain_utility(start))
                             for i in range(len(splits))],
                         "rows": [r["rows"] for r in result["requests"]], "steps": result["steps"],
                         "train_seconds": result["train_seconds"]}
    undial = table["undial"]["mu_over_target"]
    worst = min((x for x in undial if x is not None), default=None)
    for name, cells in table.items():
        C.log(f"[P8] {name}: FQ {', '.join(C.fmt(x) for x in cells['forget_quality'])}; MU "
              f"{', '.join(C.fmt(x, '.4f') for x in cells['model_utility'])}")
    display = ("UNDIAL MU/target after requests " + ", ".join(C.fmt(x, ".2f") for x in undial) + "; retain-side "
               "utility/target " + ", ".join(C.fmt(x, ".2f") for x in table["undial"]["retain_utility_over_target"]))
    return C.write_result(
        ctx, ID, measure=MEASURE, value=worst, target=TARGET,
        passed=None if ctx.smoke or worst is None else worst >= FLOOR, display=display,
        numbers={"table": table, "target_model_utility": target_mu,
                 "final": {name: {k: cells[k][-1] for k in ("forget_quality", "model_utility", "mu_over_target")
                                  if k in cells} for name, cells in table.items()},
                 "references": refs["retain"],
                 "target_summary": refs["target"]},
        settings=wanted,
        notes=["value = UNDIAL's lowest model utility over the target's (target MU on forget01's evaluation; the "
               "utility splits are the same for every request), across the requests.",
               "forget quality after request k: KS test of the cumulative forget set's truth ratios against the "
               "retain model of that set (retain99 / retain95 / retain90)."],
    )
