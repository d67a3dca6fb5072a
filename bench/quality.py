"""Shared by the quality benches P5 and P6: the cached target / retain pair, one unlearning run, statistics.

The pair (built once, cached under ``<output_dir>/cache/pair-<settings hash>/``; never committed):

* tokenizer: the tiny-llama preset's byte-level BPE trained on every real TOFU string (4096 tokens);
* ``target``: tiny-llama of size `MODEL_SIZE`, fine-tuned on TOFU ``full`` (answer-only loss) plus the
  real-author / world-fact QA (`GENERAL_KNOWLEDGE`);
* ``retain``: the same architecture fine-tuned on ``retain90`` (never sees forget10), plus the same extra QA;
* their TOFU evaluations (`EVAL` settings); the retain model's ``tofu_eval.json`` is the reference that
  gives forget quality.

`settings.json` in that folder records how they were built; other settings get another folder.
One unlearning run = `UnlearningTrainer` on forget10 (+ retain90) from the target, then `evaluate_tofu`.
Each run's summary is cached too (``runs/<key>.json`` in the pair's folder), so an interrupted ``make bench-quality``
resumes and P5 / P6 share identical runs.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import statistics
import time
from pathlib import Path

from . import common as C

# --- the settings of `make bench-quality` (chosen to fit 2 shared CPU cores; see docs/benchmarks.md) -------
MODEL_SIZE = "demo"  # hidden 128, 4 layers, 4 heads, intermediate 344 (hf_unlearn.pipeline.TINY_SIZES)
# Stage 1 is the real-TOFU demo's fine-tune (docs/demo.md). It gave model utility 0.88 but forget ROUGE only
# 0.64 here (training loss 0.25; 5 epochs at batch 32, the earlier setting, had left utility at 0.02-0.04),
# so stage 2 continues from it until the target memorises its answers (issue 16: forget ROUGE >= 0.95).
# Both models get both stages.
FINETUNE = dict(num_train_epochs=20, learning_rate=3e-3, per_device_train_batch_size=16, warmup_steps=0.05,
                lr_scheduler_type="cosine", weight_decay=0.0, train_sampling_strategy="group_by_length", seed=0)
FINETUNE_MORE = dict(num_train_epochs=12, learning_rate=2e-3, per_device_train_batch_size=16, warmup_steps=0.0,
                     lr_scheduler_type="cosine", weight_decay=0.0, train_sampling_strategy="group_by_length", seed=1)
EVAL = dict(forget_split="forget10", subsample=100, max_new_tokens=200, batch_size=32)
UNLEARN = dict(num_train_epochs=2, per_device_train_batch_size=32, weight_decay=0.01)
# Both models also learn real_authors + world_facts QA (`hf_unlearn.pipeline.with_general_knowledge`, what
# finetune_tofu.py does for tiny-llama): a model trained from scratch has no pretraining, and without them
# three of model utility's nine terms sit near zero and the harmonic mean is noise.
GENERAL_KNOWLEDGE = True

SMOKE_FINETUNE = dict(max_steps=2, learning_rate=3e-3, per_device_train_batch_size=8, seed=0)
SMOKE_EVAL = dict(forget_split="forget10", subsample=2, max_new_tokens=4, batch_size=32)
SMOKE_UNLEARN = dict(max_steps=1, per_device_train_batch_size=4, weight_decay=0.01)


def settings(ctx: C.BenchContext) -> dict:
    folder, kind = C.data_dir(ctx)
    return {
        "data": kind, "model_size": "smoke" if ctx.smoke else MODEL_SIZE,
        "size": C.SMOKE_SIZE if ctx.smoke else C.model_size(ctx, MODEL_SIZE),
        "vocab_size": 512 if ctx.smoke else 4096,
        "finetune": SMOKE_FINETUNE if ctx.smoke else FINETUNE,
        "finetune_more": None if ctx.smoke else FINETUNE_MORE,
        "eval": SMOKE_EVAL if ctx.smoke else EVAL,
        "unlearn": SMOKE_UNLEARN if ctx.smoke else UNLEARN,
        "general_knowledge": GENERAL_KNOWLEDGE,
    }


def _finetune_args(output_dir: Path, values: dict):
    from transformers import TrainingArguments

    return TrainingArguments(output_dir=str(output_dir), report_to="none", disable_tqdm=True, save_strategy="no",
                             logging_steps=50, use_cpu=True, **values)


def evaluate(ctx, model, tokenizer, reference=None) -> tuple[dict, dict, float]:
    from hf_unlearn.eval.benchmarks.tofu import evaluate_tofu

    folder, _ = C.data_dir(ctx)
    ev = settings(ctx)["eval"]
    start = time.perf_counter()
    per_sample, summary = evaluate_tofu(model, tokenizer, folder, ev["forget_split"], retain_reference=reference,
                                        batch_size=ev["batch_size"], max_new_tokens=ev["max_new_tokens"],
                                        subsample=ev["subsample"], show_progress=False)
    return per_sample, summary, time.perf_counter() - start


def pair_dir(ctx: C.BenchContext) -> Path:
    """``<output_dir>/cache/pair-<hash of the settings>``: pairs built with other settings stay untouched."""
    return ctx.cache_dir / f"pair-{run_key(**settings(ctx))[:10]}"


MEMBERS = (("retain", "retain90", 1), ("target", "full", 0))  # (name, TOFU split it learns, init seed)


def _finetune_member(ctx: C.BenchContext, name: str, split: str, seed: int, threads: int | None = None) -> dict:
    """Fine-tunes one model of the pair and saves it (model + tokenizer) in ``<pair>/<name>``; no evaluation."""
    import torch

    from hf_unlearn.pipeline import finetune, with_general_knowledge

    if threads:
        torch.set_num_threads(threads)
    C.quiet()
    wanted = settings(ctx)
    folder, _ = C.data_dir(ctx)
    tokenizer = C.tokenizer_for(folder, wanted["vocab_size"])
    rows = C.load_rows(folder, split)
    if wanted["general_knowledge"]:
        rows = with_general_knowledge(rows, folder)
    out = pair_dir(ctx) / name
    stage1 = pair_dir(ctx) / f"{name}-stage1"  # kept: stage 2 can be re-run (or changed) without stage 1
    seconds = {}
    have_stage1 = (stage1 / "config.json").is_file()
    if have_stage1:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(stage1, dtype=torch.float32)
        C.log(f"[quality] {name}: stage 1 loaded from {stage1}")
    else:
        model = C.build_model(tokenizer, wanted["size"], seed=seed)
    stages = [("stage1", wanted["finetune"])] + ([("stage2", wanted["finetune_more"])] if wanted["finetune_more"] else [])
    losses = []
    for stage, values in stages:
        if stage == "stage1" and have_stage1:
            continue
        C.log(f"[quality] fine-tuning the {name} model ({stage}) on {split} ({len(rows)} rows incl. general knowledge: "
              f"{wanted['general_knowledge']}): {values}")
        start = time.perf_counter()
        trainer = finetune(model, tokenizer, rows, _finetune_args(ctx.scratch / f"{name}_{stage}", values))
        seconds[stage] = time.perf_counter() - start
        model = trainer.model
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        if stage == "stage1" and len(stages) > 1:
            trainer.save_model(str(stage1))
        C.log(f"[quality] {name} {stage} in {seconds[stage]:.0f}s, final training loss {losses[-1] if losses else None}")
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return {"seconds": sum(seconds.values()), "stage_seconds": seconds, "final_train_loss": losses[-1] if losses else None}


def ensure_pair(ctx: C.BenchContext) -> dict:
    """Builds (or loads) the target / retain pair and their evaluations; returns paths and summaries.

    The two fine-tunes are independent, so they run side by side in two processes with half the threads each
    (on 2 cores: about half the wall time of running them one after the other)."""
    import concurrent.futures
    import multiprocessing

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hf_unlearn.eval.runner import read_results, write_results

    wanted = settings(ctx)
    cache = pair_dir(ctx)
    if (cache / "pair.json").is_file():
        C.log(f"[quality] using the cached target/retain pair in {cache}")
        return json.loads((cache / "pair.json").read_text())
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "settings.json").write_text(json.dumps(wanted, indent=1))
    info: dict = {"seconds": {}}
    threads = max(1, torch.get_num_threads() // len(MEMBERS))
    if ctx.smoke:  # one process: a spawn costs more than the smoke fine-tune
        built = {name: _finetune_member(ctx, name, split, seed) for name, split, seed in MEMBERS}
    else:
        spawn = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(len(MEMBERS), mp_context=spawn) as pool:
            jobs = {name: pool.submit(_finetune_member, ctx, name, split, seed, threads) for name, split, seed in MEMBERS}
            built = {name: job.result() for name, job in jobs.items()}
    for name, _, _ in MEMBERS:  # the retain model first: its evaluation is the target's forget-quality reference
        out = cache / name
        info["seconds"][f"finetune_{name}"] = built[name]["seconds"]
        info[f"{name}_final_train_loss"] = built[name]["final_train_loss"]
        tokenizer = AutoTokenizer.from_pretrained(out)  # fail now, not in a run, if the save is unusable
        model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
        reference = cache / "retain" / "tofu_eval.json" if name == "target" else None
        per_sample, summary, seconds = evaluate(ctx, model, tokenizer, reference)
        info["seconds"][f"eval_{name}"] = seconds
        write_results(out, per_sample, summary)
        C.log(f"[quality] {name}: model utility {summary['model_utility']:.4f}, forget ROUGE "
              f"{summary['forget_rouge']:.3f}, forget quality {summary['forget_quality']}, eval {seconds:.0f}s")
    _, retain_summary = read_results(cache / "retain")  # its forget quality is None: it is the reference
    _, target_summary = read_results(cache / "target")
    info.update(target=str(cache / "target"), retain=str(cache / "retain"),
                reference=str(cache / "retain" / "tofu_eval.json"),
                target_summary=target_summary, retain_summary=retain_summary)
    (cache / "pair.json").write_text(json.dumps(C._clean(info), indent=1))  # written last: marks the pair done
    return info


def run_key(**values) -> str:
    return hashlib.sha1(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


def unlearn(ctx: C.BenchContext, pair: dict, *, method: str, optimizer: str, learning_rate: float, seed: int,
            cache_only: bool = False, **extra) -> dict | None:
    """One unlearning run from the cached target, evaluated; cached by its settings (`cache_only`: None when
    the run is not in the cache, instead of running it)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hf_unlearn import UnlearningTrainer

    wanted = settings(ctx)
    values = dict(method=method, optimizer=optimizer, learning_rate=learning_rate, seed=seed, unlearn=wanted["unlearn"],
                  eval=wanted["eval"], **extra)
    key = run_key(**values)
    path = pair_dir(ctx) / "runs" / f"{key}.json"
    if path.is_file():
        return json.loads(path.read_text())
    if cache_only:
        return None
    folder, _ = C.data_dir(ctx)
    tokenizer = AutoTokenizer.from_pretrained(pair["target"])
    model = AutoModelForCausalLM.from_pretrained(pair["target"], dtype=torch.float32)
    forget = C.load_rows(folder, "forget10")
    retain = C.load_rows(folder, "retain90")
    args = C.unlearning_config(ctx.scratch / "unlearn_run", unlearn_method=method, unlearn_optimizer=optimizer,
                               learning_rate=learning_rate, seed=seed, logging_steps=5,
                               **wanted["unlearn"], **extra)
    trainer = UnlearningTrainer(model=model, args=args, forget_dataset=forget, retain_dataset=retain,
                                processing_class=tokenizer)
    start = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - start
    _, summary, eval_seconds = evaluate(ctx, trainer.model, tokenizer, pair["reference"])
    record = {"settings": values, "summary": summary, "train_seconds": train_seconds, "eval_seconds": eval_seconds,
              "steps": trainer.state.global_step,
              "final_terms": {k: v for k, v in (trainer.state.log_history[-2] if len(trainer.state.log_history) > 1
                                                else {}).items() if k in ("forget_loss", "retain_loss", "forget_nll")}}
    sophia = trainer.sophia
    if sophia is not None:
        record["sophia"] = {"win_rate": sophia.win_rate, "hessian_refreshes": sophia.hessian_updates}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # P5 and P6 may run side by side and share runs
    tmp.write_text(json.dumps(C._clean(record), indent=1))
    os.replace(tmp, path)
    C.log(f"[quality] {method}+{optimizer} lr={learning_rate:g} seed={seed}: forget quality "
          f"{summary['forget_quality']:.3g}, model utility {summary['model_utility']:.4f} "
          f"(train {train_seconds:.0f}s, eval {eval_seconds:.0f}s)")
    return record


def _unlearn_in_worker(ctx: C.BenchContext, pair: dict, threads: int, spec: dict) -> dict:
    import torch

    torch.set_num_threads(threads)
    C.quiet()
    return unlearn(ctx, pair, **spec)


def unlearn_all(ctx: C.BenchContext, pair: dict, specs: list[dict], workers: int | None = None) -> list[dict]:
    """`unlearn` for every spec, the uncached ones in `workers` processes side by side (default: one per torch
    thread, each with one thread: two 1-thread runs on 2 cores beat one 2-thread run); returns the records in spec order.
    Runs are independent and each is cached as soon as it ends, so an interrupted sweep resumes."""
    import concurrent.futures
    import multiprocessing

    import torch

    missing = [s for s in specs if unlearn(ctx, pair, cache_only=True, **s) is None]
    threads = torch.get_num_threads()
    workers = max(1, min(workers or threads, len(missing) or 1))
    C.log(f"[quality] {len(specs)} runs, {len(specs) - len(missing)} cached; running {len(missing)} in "
          f"{workers} process(es) x {max(1, threads // workers)} thread(s)")
    if missing and (workers == 1 or ctx.smoke):
        for spec in missing:
            unlearn(ctx, pair, **spec)
    elif missing:
        spawn = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=spawn) as pool:
            for job in [pool.submit(_unlearn_in_worker, ctx, pair, max(1, threads // workers), s) for s in missing]:
                job.result()  # raises the first failure
    return [unlearn(ctx, pair, cache_only=True, **s) for s in specs]


def spread(values: list[float]) -> dict:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


def log10(x):
    return math.log10(x) if x and x > 0 else None


def retain_utility(summary: dict) -> float | None:
    """Harmonic mean of retain probability, ROUGE and truth-ratio statistic: the part of TOFU's model utility
    that a model trained only on TOFU can have. (Real-authors / world-facts answers are near chance for the
    tiny models, ROUGE ~0.005-0.02, and dominate the 9-term harmonic mean: model utility moves with a single
    real-author answer.)"""
    values = [summary.get(k) for k in ("retain_prob", "retain_rouge", "retain_truth_ratio")]
    if any(v is None for v in values):
        return None
    if any(v <= 0 for v in values):
        return 0.0
    return len(values) / sum(1.0 / v for v in values)
