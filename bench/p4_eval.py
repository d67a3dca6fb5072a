"""P4: TOFU evaluation throughput, batched against one question at a time.

`hf_unlearn.eval.benchmarks.tofu.evaluate_tofu` on real TOFU forget10 (forget10_perturbed + holdout10 +
retain_perturbed + real_authors_perturbed + world_facts_perturbed; greedy, 200 new tokens) with the
default tiny model: the cached target model of the quality benches when it exists
(``<output_dir>/cache/pair-*/target``, answers stop at EOS as a trained model's do), else a random-init
tiny-llama (it never emits EOS, so every answer runs the full 200 tokens).

Batch size 1 on everything would take too long on 2 cores, so batch 1, 8 (what ``run_tofu.py`` passes:
TrainingArguments' ``per_device_eval_batch_size``) and 32 (`evaluate_tofu`'s default) are timed on the same
subsample (the first N questions of every split), interleaved in blocks; then the full evaluation once at
the default batch size. Throughput is questions per second (a question = one row of any split, with all its
scored answers and, except holdout, its generation).
"""

from __future__ import annotations

import inspect
import time

from . import common as C

ID = "P4"
MEASURE = "TOFU evaluation throughput (questions/s), batched vs batch size 1"
TARGET = "report; batched is the default"


def _model(ctx, tokenizer, size, folder):
    """(model, tokenizer, description): the cached target when there is one, else a random tiny-llama."""
    from . import quality

    target = quality.pair_dir(ctx) / "target"
    if not ctx.smoke and (target / "config.json").is_file():
        from transformers import AutoModelForCausalLM, AutoTokenizer

        return (AutoModelForCausalLM.from_pretrained(target), AutoTokenizer.from_pretrained(target),
                f"cached target {target} (trained on full)")
    return C.build_model(tokenizer, size, seed=0), tokenizer, "random-init tiny-llama (no EOS: every answer 200 tokens)"


def _generation_waste(tokenizer, per_sample: dict, batch_size: int, max_new_tokens: int) -> dict:
    """Share of decode steps spent on rows that had already finished, reconstructed from the generations
    and `generate_answers`' batching (prompts sorted longest first, `batch_size` per batch)."""
    from hf_unlearn.data.formatting import encode_prompt

    lengths, prompts = [], []
    for key in ("forget", "retain", "real_authors", "world_facts"):
        for rec in per_sample.get(key, []):
            n = len(tokenizer(rec["generation"], add_special_tokens=False)["input_ids"]) + 1  # + EOS
            lengths.append(min(n, max_new_tokens))
            prompts.append(len(encode_prompt(tokenizer, rec["question"])))
    order = sorted(range(len(lengths)), key=lambda i: -prompts[i])
    useful = total = 0
    for start in range(0, len(order), batch_size):
        batch = [lengths[i] for i in order[start:start + batch_size]]
        useful += sum(batch)
        total += max(batch) * len(batch)
    return {"generated_tokens_mean": sum(lengths) / max(1, len(lengths)),
            "rows_at_cap": sum(n >= max_new_tokens for n in lengths),
            "decode_row_steps_useful": useful, "decode_row_steps_total": total,
            "padding_waste": 1 - useful / total if total else None}


def run(ctx: C.BenchContext) -> dict:
    from hf_unlearn.eval.benchmarks.tofu import evaluate_tofu

    folder, data_kind = C.data_dir(ctx)
    tokenizer = C.tokenizer_for(folder, 512 if ctx.smoke else 4096)
    size = C.model_size(ctx)
    model, tokenizer, model_kind = _model(ctx, tokenizer, size, folder)
    model.eval()
    default_bs = inspect.signature(evaluate_tofu).parameters["batch_size"].default
    max_new = 4 if ctx.smoke else 200
    subsample = 2 if ctx.smoke else 8
    blocks = 1 if ctx.smoke else 4
    sizes = (1, 8, default_bs)
    if ctx.quick:
        subsample, blocks = 4, 1

    def evaluate(batch_size, sub):
        start = time.perf_counter()
        per_sample, summary = evaluate_tofu(model, tokenizer, folder, "forget10", batch_size=batch_size,
                                            max_new_tokens=max_new, subsample=sub, show_progress=False)
        seconds = time.perf_counter() - start
        questions = sum(per_sample["config"]["num_questions"].values())
        return seconds, questions, per_sample, summary

    sub_times: dict[int, list[float]] = {bs: [] for bs in sizes}
    sub_questions = None
    sub_summaries = {}
    for block in range(blocks):
        for bs in sizes if block % 2 == 0 else sizes[::-1]:
            seconds, sub_questions, _, summary = evaluate(bs, subsample)
            sub_times[bs].append(seconds)
            sub_summaries[bs] = summary
    sub_qps = {bs: sub_questions / C.median(ts) for bs, ts in sub_times.items()}

    full_seconds, full_questions, per_sample, full_summary = evaluate(default_bs, 2 if ctx.smoke else None)
    waste = _generation_waste(tokenizer, per_sample, default_bs, max_new)
    full_qps = full_questions / full_seconds
    speedup = sub_qps[default_bs] / sub_qps[1]
    # Batch size must not change the numbers (beyond float noise): compare the subsample summaries.
    drift = max(abs((sub_summaries[default_bs][k] or 0.0) - (sub_summaries[1][k] or 0.0))
                for k in ("forget_prob", "retain_prob", "forget_truth_ratio", "model_utility"))

    C.log(f"[P4] compared: evaluate_tofu batch {', '.join(map(str, sizes))} on the first {subsample} questions of "
          f"every split ({sub_questions} questions), then the full evaluation at batch {default_bs}; {model_kind}; "
          f"{data_kind}; max_new_tokens {max_new}; {C.machine_line()}")
    C.log("[P4] subsample questions/s: " + ", ".join(f"bs {bs}: {q:.2f}" for bs, q in sub_qps.items())
          + f" -> batch {default_bs} / batch 1 = {speedup:.2f}x; full eval {full_questions} questions in "
          f"{full_seconds:.0f}s = {full_qps:.2f} q/s; generation padding waste at bs {default_bs} "
          f"{(waste['padding_waste'] or 0) * 100:.1f}%; default batch_size={default_bs}")
    return C.write_result(
        ctx, ID, measure=MEASURE, value=speedup, target=TARGET,
        passed=None if ctx.smoke else bool(default_bs > 1),
        display=f"{speedup:.2f}x (bs {default_bs}: {sub_qps[default_bs]:.2f} q/s vs bs 1: {sub_qps[1]:.2f} q/s; "
                f"full {full_qps:.2f} q/s)",
        numbers={"subsample_seconds": {str(k): v for k, v in sub_times.items()},
                 "subsample_questions": sub_questions,
                 "subsample_questions_per_s": {str(k): v for k, v in sub_qps.items()},
                 "speedup_default_vs_bs1": speedup,
                 "full_seconds": full_seconds, "full_questions": full_questions, "full_questions_per_s": full_qps,
                 "full_num_questions": per_sample["config"]["num_questions"],
                 "generation_padding": waste, "summary_drift_bs_default_vs_1": drift,
                 "full_summary": {k: full_summary.get(k) for k in ("model_utility", "forget_rouge", "retain_rouge")}},
        settings={"data": data_kind, "model": model_kind, "model_size": size, "forget_split": "forget10",
                  "max_new_tokens": max_new, "subsample_per_split": subsample, "blocks": blocks,
                  "batch_sizes": list(sizes), "evaluate_tofu_default_batch_size": default_bs,
                  "run_tofu_batch_size": "TrainingArguments.per_device_eval_batch_size (default 8)"},
        notes=["passed = the default batch_size of evaluate_tofu is > 1 (the batched path is the default)."],
    )
