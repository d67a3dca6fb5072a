"""P3: what UNDIAL's teacher costs: step time against GA, and peak memory of LoRA-UNDIAL / LoRA-NPO against LoRA-GA.

Step time: two `UnlearningTrainer`s, ``undial`` (student forward + backward, frozen teacher forward) and
``ga`` (forward + backward), same model seed and fixed forget batch, AdamW, full fine-tuning, trained in
lockstep (`common.lockstep_train`); value = median(UNDIAL step) / median(GA step).

Peak memory (LoRA r=8 on q_proj/v_proj, the reference is the adapters-off model, so no second copy): on
CPU torch has no `max_memory_allocated`, so one training step (after warm-up) is recorded with
`torch.profiler.profile(profile_memory=True)`. Its allocator events (`[memory]`, signed byte counts,
timestamped) are summed in time order; the running maximum is the step's transient peak above what was
alive when the step began. Peak = that + the bytes alive at the step's start (parameters, buffers,
optimizer state: the same storages counted once). The ratios use the total peak; the transient-only ratios
are recorded too.
"""

from __future__ import annotations

import time

import torch

from . import common as C

ID = "P3"
MEASURE = "UNDIAL / GA step time; peak memory LoRA-UNDIAL, LoRA-NPO / LoRA-GA"
TARGET = "<= 1.35x; <= 1.05x"
LIMITS = (1.35, 1.05)


def _bytes_alive(model, optimizer) -> int:
    """Bytes of the distinct storages of parameters, buffers and optimizer state."""
    seen, total = set(), 0

    def add(t):
        nonlocal total
        if isinstance(t, torch.Tensor):
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key not in seen and storage.nbytes():
                seen.add(key)
                total += storage.nbytes()

    for t in list(model.parameters()) + list(model.buffers()):
        add(t)
    if optimizer is not None:
        for state in optimizer.state.values():
            for t in state.values():
                add(t)
    return total


def _allocator_peak(prof) -> dict:
    """Running maximum of the CPU allocator's signed byte counts, in time order."""
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    running = peak = 0
    for e in events:
        running += e.nbytes()
        peak = max(peak, running)
    return {"peak_bytes": peak, "net_bytes": running, "events": len(events)}


def _memory_run(ctx, tokenizer, size, dataset, method: str, warmup: int) -> dict:
    """One LoRA trainer of `method`; profiles step `warmup` (0-based) for memory."""
    from peft import LoraConfig
    from torch.profiler import ProfilerActivity, profile
    from transformers import TrainerCallback

    from hf_unlearn import UnlearningTrainer

    record: dict = {}

    class Profiled(TrainerCallback):
        def on_step_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
            if state.global_step == warmup:
                inner = getattr(optimizer, "optimizer", optimizer)
                record["alive_bytes"] = _bytes_alive(model, inner)
                record["profiler"] = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
                record["profiler"].__enter__()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == warmup + 1:
                prof = record.pop("profiler")
                prof.__exit__(None, None, None)
                record.update(_allocator_peak(prof))

    # Forget term only for all three (NPO's retain term off, as UNDIAL's is by default): the comparison is
    # about what the reference forward adds.
    args = C.unlearning_config(ctx.scratch / f"p3_mem_{method}", unlearn_method=method, retain_weight=0.0,
                               per_device_train_batch_size=len(dataset), max_steps=warmup + 1, learning_rate=1e-4)
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.0, task_type="CAUSAL_LM")
    trainer = UnlearningTrainer(model=C.build_model(tokenizer, size, seed=0), args=args, train_dataset=dataset,
                                processing_class=tokenizer, peft_config=lora, callbacks=[Profiled()])
    trainer.train()
    record["total_peak_bytes"] = record["alive_bytes"] + record["peak_bytes"]
    return record


def _teacher_diagnostic(tokenizer, size, batch, repeats: int) -> dict:
    """The teacher's forward with logits at every position (as the registry ran it before) against the one the
    registry runs now, `ReferenceModel.answer_logits` (the LM head on the answer positions only), interleaved."""
    from hf_unlearn.models.reference import ReferenceModel

    model = C.build_model(tokenizer, size, seed=0).eval()
    reference = ReferenceModel(model)
    part = batch["forget"]
    mask = part["labels"][:, 1:] != -100
    times = {"full_logits": [], "answer_positions_only": []}
    with torch.no_grad():
        for _ in range(repeats):
            start = time.perf_counter()
            model(input_ids=part["input_ids"], attention_mask=part["attention_mask"]).logits
            times["full_logits"].append(time.perf_counter() - start)
            start = time.perf_counter()
            reference.answer_logits(part)
            times["answer_positions_only"].append(time.perf_counter() - start)
    return {name: C.median(ts) for name, ts in times.items()} | {
        "positions": int(mask.numel()), "answer_positions": int(mask.sum())}


def run(ctx: C.BenchContext) -> dict:
    from hf_unlearn import UnlearningTrainer

    folder, data_kind = C.data_dir(ctx)
    tokenizer = C.tokenizer_for(folder, 512 if ctx.smoke else 4096)
    size = C.model_size(ctx)
    batch_size = 2 if ctx.smoke else 8
    warmup, steps, blocks = (1, 1, 1) if ctx.smoke else (3, 20, 2)
    if ctx.quick:
        steps, blocks = 10, 1
    dataset = C.fixed_pairs(tokenizer, folder, batch_size, needs_retain=False)
    batch = C.collate(tokenizer, dataset)
    shape = C.batch_shape(batch)

    samples: dict[str, list[list[float]]] = {"undial": [], "ga": []}
    for block in range(blocks):
        trainers = {}
        for method in ("undial", "ga") if block % 2 == 0 else ("ga", "undial"):
            args = C.unlearning_config(ctx.scratch / f"p3_{method}", unlearn_method=method,
                                       per_device_train_batch_size=batch_size, max_steps=warmup + steps,
                                       learning_rate=1e-5)
            trainers[method] = UnlearningTrainer(model=C.build_model(tokenizer, size, seed=0), args=args,
                                                 train_dataset=dataset, processing_class=tokenizer)
        times = C.lockstep_train(trainers)
        for method in samples:
            samples[method].append(times[method][warmup:])
    step = C.paired_ratio(samples["undial"], samples["ga"])
    step["adjacent_step_ratio_median"] = C.adjacent_ratio(samples["undial"], samples["ga"])

    memory = {}
    for method in ("ga", "npo", "undial"):
        memory[method] = _memory_run(ctx, tokenizer, size, dataset, method, warmup=1 if ctx.smoke else 2)
    mem_ratio = {m: memory[m]["total_peak_bytes"] / memory["ga"]["total_peak_bytes"] for m in ("npo", "undial")}
    transient_ratio = {m: memory[m]["peak_bytes"] / memory["ga"]["peak_bytes"] for m in ("npo", "undial")}
    teacher = _teacher_diagnostic(tokenizer, size, batch, 2 if ctx.smoke else 7)

    worst_memory = max(mem_ratio.values())
    passed = None if ctx.smoke else (step["ratio"] <= LIMITS[0] and worst_memory <= LIMITS[1])
    mib = 2 ** 20
    C.log(f"[P3] compared: UNDIAL vs GA UnlearningTrainer steps (full fine-tuning, AdamW, lockstep); LoRA-UNDIAL "
          f"and LoRA-NPO vs LoRA-GA peak CPU allocation over one step; {data_kind}, model {size}, batch {shape}; "
          f"{C.machine_line()}")
    C.log(f"[P3] step median undial {C.median(sum(samples['undial'], [])) * 1e3:.1f} ms vs ga "
          f"{C.median(sum(samples['ga'], [])) * 1e3:.1f} ms -> ratio {step['ratio']:.3f} (median of adjacent-step "
          f"ratios {step['adjacent_step_ratio_median']:.3f}; per-block {step['block_ratio_min']:.3f}.."
          f"{step['block_ratio_max']:.3f})")
    for m in ("ga", "npo", "undial"):
        C.log(f"[P3] LoRA-{m}: alive {memory[m]['alive_bytes'] / mib:.1f} MiB + step transient peak "
              f"{memory[m]['peak_bytes'] / mib:.1f} MiB = {memory[m]['total_peak_bytes'] / mib:.1f} MiB"
              + (f" -> {mem_ratio[m]:.3f}x GA (transient {transient_ratio[m]:.3f}x)" if m != "ga" else ""))
    C.log(f"[P3] teacher forward: full logits {teacher['full_logits'] * 1e3:.1f} ms vs LM head on the "
          f"{teacher['answer_positions']}/{teacher['positions']} answer positions only "
          f"{teacher['answer_positions_only'] * 1e3:.1f} ms")
    return C.write_result(
        ctx, ID, measure=MEASURE, value=step["ratio"], target=TARGET, passed=passed,
        display=f"{step['ratio']:.3f}x; NPO {mem_ratio['npo']:.3f}x, UNDIAL {mem_ratio['undial']:.3f}x",
        numbers={"step_ratio": step, "undial": C.summarise_times(samples["undial"]),
                 "ga": C.summarise_times(samples["ga"]), "memory": memory, "memory_ratio_total": mem_ratio,
                 "memory_ratio_transient": transient_ratio, "teacher_forward_s": teacher},
        settings={"data": data_kind, "model": size, "vocab": len(tokenizer), "batch": shape,
                  "warmup": warmup, "steps_per_block": steps, "blocks": blocks,
                  "lora": "r=8, alpha=16, q_proj+v_proj, dropout 0", "memory_losses": "forget term only "
                  "(retain_weight=0 for all three)", "memory_method":
                  "torch.profiler profile_memory: running max of [memory] events over one step + bytes alive "
                  "(params, buffers, optimizer state) at its start"},
    )
