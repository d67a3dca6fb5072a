"""P4: the full TOFU evaluation, whole process, before -> after; and the generation padding waste.

Model: the held-out Llama of issue 16's figure (`bench.eval_model`: hidden 256, 4 layers, vocabulary
4096, context 256, 5.5 M parameters, trained briefly on real TOFU so that its answers end at EOS).
Data: real TOFU, forget10 (forget10_perturbed + holdout10 + retain_perturbed + real_authors_perturbed +
world_facts_perturbed: 1417 questions), greedy, 200 new tokens, batch 32 (the defaults).

1. **Whole process.**  ``python -m hf_unlearn.eval`` (what users run) as a subprocess, wall time from
   spawn to exit, for two code trees side by side, alternated ABBA: *before* = this repository just
   before the row-pool generation (the parent of the commit that added ``hf_unlearn/eval/decoding.py``,
   exported with ``git archive``), *after* = the working tree.  Value: median before / median after.  The two runs' summaries must agree (largest
   absolute difference reported) and their generations must be identical.
2. **Generation only, in process** (the same questions the evaluation generates for): `generate_answers`
   with ``strategy="generate"`` (``model.generate`` on length-sorted batches: what *before* does) and
   ``strategy="pool"`` (the default now), once each; decode row-steps and the share spent on rows that
   had already finished (the padding waste), and whether the outputs are identical.

3. **Answer scoring only, in process** (the evaluation's 6,868 (question, answer) pairs): `score_answers` with
   ``share_prefix=False`` (one forward per pair: what the evaluation did before the shared-prefix scoring)
   and the default (each question's prompt run once into a KV cache that its answers share), once each; the
   largest per-pair difference of ``avg_nll`` and of the token statistics, and the tokens each one runs.

``--smoke``: a tiny random model on synthetic data, 4 new tokens, the CLI's ``main`` in process and no
*before* side (no ratio).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import common as C

ID = "P4"
MEASURE = "full TOFU evaluation, whole process (python -m hf_unlearn.eval): before / after wall time"
TARGET = "report (issue 16: >= 3x over open-unlearning's evaluator; here before -> after, same model); waste <= 15%"
ROW_POOL_FILE = "hf_unlearn/eval/decoding.py"


def baseline_rev() -> str | None:
    """The parent of the commit that added the row pool (``ROW_POOL_FILE``): main just before it."""
    try:
        added = subprocess.run(["git", "-C", str(C.REPO), "log", "--diff-filter=A", "--format=%H", "--", ROW_POOL_FILE],
                               check=True, capture_output=True, text=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{added[-1][:10]}^" if added else None
GENERATED_SPLITS = ("forget10_perturbed", "retain_perturbed", "real_authors_perturbed", "world_facts_perturbed")
SCORED_SPLITS = ("forget10_perturbed", "holdout10", *GENERATED_SPLITS[1:])
TOKEN_STATS_SPLITS = ("forget10_perturbed", "holdout10")


def export_baseline(rev: str, dest: Path) -> Path | None:
    """The repository's code at ``rev`` (git archive) in ``dest``; None when git or the revision is missing."""
    try:
        archive = subprocess.run(["git", "-C", str(C.REPO), "archive", rev, "hf_unlearn"], check=True,
                                 capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def run_cli(code_root: Path, model: str, data: str, out: Path, threads: int, max_new: int,
            subsample: int | None, in_process: bool = False) -> dict:
    """One ``python -m hf_unlearn.eval`` in a fresh process with ``code_root`` first on the path
    (``in_process``: its ``main`` in this process, for the smoke run)."""
    env = dict(os.environ, PYTHONPATH=str(code_root), OMP_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false",
               HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_NO_ADVISORY_WARNINGS="1")
    cmd = [sys.executable, "-m", "hf_unlearn.eval", "--model_name_or_path", model, "--dataset_name", data,
           "--forget_split", "forget10", "--output_dir", str(out), "--max_new_tokens", str(max_new),
           "--disable_tqdm", "true"]
    if subsample:
        cmd += ["--subsample", str(subsample)]
    load = os.getloadavg()[0]
    start = time.perf_counter()
    if in_process:
        from hf_unlearn.eval.__main__ import main

        main(cmd[3:])
        proc = subprocess.CompletedProcess(cmd, 0)
    else:
        proc = subprocess.run(cmd, cwd=str(code_root), env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed in {code_root}:\n{proc.stderr[-3000:]}")
    summary = json.loads((out / "tofu_summary.json").read_text())
    per_sample = json.loads((out / "tofu_eval.json").read_text())
    generations = [rec.get("generation") for key in ("forget", "retain", "real_authors", "world_facts")
                   for rec in per_sample.get(key, [])]
    return {"seconds": seconds, "load_1min_before": round(load, 2), "summary": summary, "generations": generations}


def _summary_drift(a: dict, b: dict) -> float:
    keys = [k for k, v in a.items() if isinstance(v, (int, float)) and isinstance(b.get(k), (int, float))]
    return max((abs(a[k] - b[k]) for k in keys), default=0.0)


def _generation_side_by_side(model, tokenizer, questions, max_new, rounds):
    from hf_unlearn.eval.scoring import DecodeStats, generate_answers

    times = {"generate": [], "pool": []}
    stats, texts = {}, {}
    for r in range(rounds):
        for strategy in ("generate", "pool") if r % 2 == 0 else ("pool", "generate"):
            st = DecodeStats()
            start = time.perf_counter()
            texts[strategy] = generate_answers(model, tokenizer, questions, max_new_tokens=max_new,
                                               show_progress=False, strategy=strategy, stats=st)
            times[strategy].append(time.perf_counter() - start)
            stats[strategy] = st
    return times, stats, texts


def _scoring_pairs(data, subsample):
    """The evaluation's (question, answer) pairs and their token-statistics flags (as TOFU's _run_model)."""
    pairs, need = [], []
    for split in SCORED_SPLITS:
        for row in C.load_rows(data, split, subsample):
            answers = [row["answer"], *([row["paraphrased_answer"]] if row.get("paraphrased_answer") else []),
                       *(row.get("perturbed_answer") or [])]
            pairs += [(row["question"], a) for a in answers]
            need += [split in TOKEN_STATS_SPLITS] + [False] * (len(answers) - 1)
    return pairs, need


def _scoring_side_by_side(model, tokenizer, pairs, need):
    from hf_unlearn.eval.scoring import _encode_pairs, score_answers

    times, scores = {}, {}
    for name, share in (("one_forward_per_pair", False), ("shared_prefix", None)):
        start = time.perf_counter()
        scores[name] = score_answers(model, tokenizer, pairs, with_token_stats=need, show_progress=False,
                                     share_prefix=share)
        times[name] = time.perf_counter() - start
    a, b = scores["one_forward_per_pair"], scores["shared_prefix"]
    stats = [(x, y) for x, y in zip(a, b) if x.token_logprobs is not None and len(x.token_logprobs)]
    encoded = _encode_pairs(tokenizer, pairs)
    contexts = {tuple(ids[: n - 1]) for ids, n in encoded}
    total = sum(len(ids) for ids, _ in encoded)
    return {"seconds": times, "ratio": times["one_forward_per_pair"] / times["shared_prefix"], "pairs": len(pairs),
            "largest_avg_nll_difference": max(abs(x.avg_nll - y.avg_nll) for x, y in zip(a, b)),
            "largest_token_logprob_difference": max((float(abs(x.token_logprobs - y.token_logprobs).max())
                                                     for x, y in stats), default=0.0),
            "argmax_flags_differing": sum(int((x.correct != y.correct).sum()) for x, y in stats),
            "tokens_one_forward_per_pair": total,
            "tokens_shared_prefix": total - sum(n - 1 for _, n in encoded) + sum(len(c) for c in contexts)}


def run(ctx: C.BenchContext) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from . import eval_model

    data, data_kind = C.data_dir(ctx)
    max_new = 4 if ctx.smoke else 200
    subsample = 2 if ctx.smoke else None
    repeats = 1 if (ctx.smoke or ctx.quick) else 2
    if ctx.smoke:
        tokenizer = C.tokenizer_for(data, 512)
        model = C.build_model(tokenizer, C.model_size(ctx))
        model_dir = ctx.scratch / "p4-model"
        model.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        model_kind = "random-init smoke Llama"
    else:
        model_dir = eval_model.ensure(ctx)
        model = AutoModelForCausalLM.from_pretrained(model_dir)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model_kind = (f"bench.eval_model {model_dir.name}: {eval_model.SHAPE} trained {eval_model.TRAIN} "
                      f"then {eval_model.STAGE2}")
    n_params = sum(p.numel() for p in model.parameters())
    model.eval()

    # 2. generation only, in process
    questions = [q for split in GENERATED_SPLITS for q in C.load_rows(data, split, subsample)["question"]]
    # one round each: the decode counts are deterministic, the whole-process runs below carry the timing claim
    gen_times, gen_stats, gen_texts = _generation_side_by_side(model, tokenizer, questions, max_new, 1)
    # 3. answer scoring only, in process
    scoring = _scoring_side_by_side(model, tokenizer, *_scoring_pairs(data, subsample))
    C.log(f"[P4] answer scoring only ({scoring['pairs']} pairs): one forward per pair "
          f"{C.fmt(scoring['seconds']['one_forward_per_pair'])} s vs shared prefix "
          f"{C.fmt(scoring['seconds']['shared_prefix'])} s = {scoring['ratio']:.2f}x; tokens run "
          f"{scoring['tokens_one_forward_per_pair']} -> {scoring['tokens_shared_prefix']}; largest avg_nll difference "
          f"{scoring['largest_avg_nll_difference']:.2g}; {C.machine_line()}")
    del model
    gen_ratio = C.median(gen_times["generate"]) / C.median(gen_times["pool"])
    C.log(f"[P4] generation only ({len(questions)} questions): generate {C.fmt(C.median(gen_times['generate']))} s "
          f"vs pool {C.fmt(C.median(gen_times['pool']))} s = {gen_ratio:.2f}x; decode waste "
          f"{gen_stats['generate'].waste * 100:.1f}% -> {gen_stats['pool'].waste * 100:.1f}%; identical outputs: "
          f"{gen_texts['generate'] == gen_texts['pool']}; {C.machine_line()}")

    # 1. whole process, ABBA
    work = Path(tempfile.mkdtemp(prefix="hf_unlearn_p4_"))
    try:
        rev = None if ctx.smoke else baseline_rev()
        baseline = export_baseline(rev, work / "before-code") if rev else None
        sides = {"after": C.REPO} | ({"before": baseline} if baseline else {})
        runs: dict[str, list[dict]] = {name: [] for name in sides}
        for r in range(repeats):
            order = list(sides) if r % 2 else list(sides)[::-1]
            for name in order:
                runs[name].append(run_cli(sides[name], str(Path(model_dir).resolve()), str(Path(data).resolve()),
                                          work / f"{name}-{r}", ctx.threads or 1,
                                          max_new, subsample, in_process=ctx.smoke))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    after_s = C.median([x["seconds"] for x in runs["after"]])
    before_s = C.median([x["seconds"] for x in runs["before"]]) if "before" in runs else None
    ratio = before_s / after_s if before_s else None
    same_generations = same_drift = None
    if "before" in runs:
        same_generations = runs["before"][0]["generations"] == runs["after"][0]["generations"]
        same_drift = _summary_drift(runs["before"][0]["summary"], runs["after"][0]["summary"])
    waste = {k: {"row_steps": s.row_steps, "finished_row_steps": s.finished_row_steps, "waste": s.waste}
             for k, s in gen_stats.items()}

    C.log(f"[P4] compared: python -m hf_unlearn.eval at {rev} (before) vs the working tree (after), "
          f"{repeats} run(s) each, ABBA; {model_kind} ({n_params / 1e6:.2f}M parameters); {data_kind}; "
          f"max_new_tokens {max_new}; {C.machine_line()}")
    C.log("[P4] whole process: " + ", ".join(f"{k} {[round(x['seconds'], 1) for x in v]} s (1-min load "
                                             f"{[x['load_1min_before'] for x in v]})" for k, v in runs.items())
          + (f" -> before/after {ratio:.2f}x; identical generations: {same_generations}; largest summary "
             f"difference {same_drift:.2g}" if ratio else " (no before side: smoke run, or git archive failed)"))
    return C.write_result(
        ctx, ID, measure=MEASURE, value=ratio, target=TARGET,
        passed=None if (ctx.smoke or ratio is None) else bool(waste["pool"]["waste"] <= 0.15 and same_generations),
        display=(f"{ratio:.2f}x" if ratio else "n/a") + f" (before {C.fmt(before_s)} s -> after {C.fmt(after_s)} s); "
                f"decode waste {waste['generate']['waste'] * 100:.0f}% -> {waste['pool']['waste'] * 100:.0f}%; "
                f"generation {gen_ratio:.2f}x; answer scoring {scoring['ratio']:.2f}x",
        numbers={"whole_process_seconds": {k: [x["seconds"] for x in v] for k, v in runs.items()},
                 "load_1min_at_start": {k: [x["load_1min_before"] for x in v] for k, v in runs.items()},
                 "before_over_after": ratio, "before_median_s": before_s, "after_median_s": after_s,
                 "identical_generations_before_after": same_generations,
                 "largest_summary_difference_before_after": same_drift,
                 "generation_seconds": gen_times, "generation_ratio_generate_over_pool": gen_ratio,
                 "generation_questions": len(questions), "decode": waste, "scoring": scoring,
                 "identical_generations_pool_vs_generate": gen_texts["generate"] == gen_texts["pool"],
                 "summary_after": {k: runs["after"][0]["summary"].get(k)
                                   for k in ("model_utility", "forget_rouge", "retain_rouge", "forget_truth_ratio")},
                 "model_parameters": n_params},
        settings={"data": data_kind, "model": model_kind, "forget_split": "forget10", "max_new_tokens": max_new,
                  "batch_size": 32, "repeats": repeats, "baseline": rev, "subsample": subsample,
                  "threads": ctx.threads},
        notes=["passed = the row pool's decode waste <= 15% and before/after generate identical answers.",
               "Only the ratios of interleaved runs are claims; the load column says how busy the machine was."],
    )
