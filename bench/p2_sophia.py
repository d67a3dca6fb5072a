"""P2: what SophiaG costs per optimizer step, next to AdamW.

Two `UnlearningTrainer`s (GradDiff, same model seed, same fixed batch), one with `unlearn_optimizer=sophia`
(GNB estimator, k = 10) and one with AdamW, train in lockstep (`common.lockstep_train`: one step of one,
then one step of the other). Step times are averaged over whole refresh periods (steps 10..10+10n-1: every
period holds exactly one refresh), and the first period is the warm-up.

Also measured, on the Sophia trainer:

* ``refresh``: wall time of `UnlearningTrainer._refresh_hessian` (label sampling, backward, fold into h, and the
  GNB forward on forget and retain when the refresh runs its own), and of the GNB estimator's `estimate_loss`
  inside it (forwards if any + sampling). ``refresh_path`` says which refresh ran: ``step_forward`` (GNB's
  logits taken from the training step's own forward, the default in one process) or ``own_forward``;
* ``optimizer.step``: SophiaG's step alone vs AdamW's (fused) step alone.

A third trainer in the same lockstep runs SophiaG with ``hessian_batch_fraction=0.5`` (the refresh
samples every other row), reported beside the default. Diagnostics on the same model and batch,
interleaved: `torch.multinomial` against the inverse-CDF label draw the trainer uses, and the GNB
loss+backward on forget+retain against the forget batch alone.
"""

from __future__ import annotations

import statistics
import time

import torch

from . import common as C

ID = "P2"
MEASURE = "SophiaG (gnb, k=10) / AdamW time per optimizer step over whole refresh periods; refresh cost"
TARGET = "<= 1.10x"
LIMIT = 1.10


def _mean(xs):
    return float(statistics.fmean(xs)) if xs else float("nan")


def _gnb_sampling_diagnostic(trainer, batch, repeats: int) -> dict:
    """The label draw of the GNB refresh on every answer position of the batch: `torch.multinomial` (what the
    trainer used before) against the inverse-CDF draw it uses now (`sample_from_logits`), on the same
    logits, interleaved."""
    from hf_unlearn.optim.hessian import sample_from_logits

    model = trainer.model
    with torch.no_grad():
        rows = []
        for part in ("forget", "retain"):
            logits = model(input_ids=batch[part]["input_ids"], attention_mask=batch[part]["attention_mask"]).logits
            rows.append(logits[:, :-1][batch[part]["labels"][:, 1:] != -100])
        rows = torch.cat(rows)
    generator = torch.Generator().manual_seed(0)

    def multinomial():
        return torch.multinomial(torch.softmax(rows, -1), 1, generator=generator)

    def inverse_cdf():
        return sample_from_logits(rows, torch.rand(rows.shape[0], generator=generator))

    times = {"multinomial": [], "inverse_cdf": []}
    for _ in range(repeats):
        for name, fn in (("multinomial", multinomial), ("inverse_cdf", inverse_cdf)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: C.median(ts) for name, ts in times.items()}


def _forget_only_diagnostic(trainer, batch, repeats: int) -> dict:
    """GNB estimate loss + backward on forget and retain (as the trainer does) vs on the forget batch only."""
    model = trainer.model
    parts = {"forget+retain": batch, "forget only": {"forget": batch["forget"]}}
    times = {name: [] for name in parts}
    for _ in range(repeats):
        for name, inputs in parts.items():
            start = time.perf_counter()
            loss, _ = trainer.estimator.estimate_loss(model, inputs, trainer._refresh_context())
            loss.backward()
            model.zero_grad(set_to_none=True)
            times[name].append(time.perf_counter() - start)
    return {name: C.median(ts) for name, ts in times.items()}


def run(ctx: C.BenchContext) -> dict:
    from hf_unlearn import UnlearningTrainer

    folder, data_kind = C.data_dir(ctx)
    tokenizer = C.tokenizer_for(folder, 512 if ctx.smoke else 4096)
    size = C.model_size(ctx)
    batch_size = 2 if ctx.smoke else 8
    k = 2 if ctx.smoke else 10
    periods, blocks = (1, 1) if ctx.smoke else (3, 2)
    if ctx.quick:
        periods, blocks = 2, 1
    total = k + periods * k  # first period = warm-up
    dataset = C.fixed_pairs(tokenizer, folder, batch_size)
    batch = C.collate(tokenizer, dataset)
    shape = C.batch_shape(batch)
    lr = 1e-5

    step_times: dict[str, list[list[float]]] = {"sophia": [], "sophia_half": [], "adamw": []}
    refresh, gnb_forward, sophia_step, adamw_step = [], [], [], []
    refresh_steps = []
    refresh_paths = {}
    last_sophia = None
    for block in range(blocks):
        trainers = {}
        order = ("sophia", "sophia_half", "adamw")
        for name in order if block % 2 == 0 else order[::-1]:
            args = C.unlearning_config(ctx.scratch / f"p2_{name}", unlearn_method="grad_diff",
                                       unlearn_optimizer="adamw" if name == "adamw" else "sophia",
                                       hessian_estimator="gnb", hessian_update_interval=k,
                                       hessian_batch_fraction=0.5 if name == "sophia_half" else 1.0,
                                       per_device_train_batch_size=batch_size, max_steps=total, learning_rate=lr)
            trainers[name] = UnlearningTrainer(model=C.build_model(tokenizer, size, seed=0), args=args,
                                               train_dataset=dataset, processing_class=tokenizer)
        sophia = trainers["sophia"]
        refresh_watch = C.Stopwatch(sophia, "_refresh_hessian")
        gnb_watch = C.Stopwatch(sophia.estimator, "estimate_loss")
        opt_watches, hessian_modes = {}, {}

        def watch_optimizers(name, trainer):
            original = trainer.create_optimizer

            def create_optimizer(*a, **kw):
                optimizer = original(*a, **kw)
                inner = getattr(optimizer, "optimizer", optimizer)
                opt_watches[name] = C.Stopwatch(inner, "step")
                if hasattr(inner, "in_hessian_mode"):  # SophiaG: tell its Hessian-mode calls from real steps
                    timed, modes = inner.step, hessian_modes.setdefault(name, [])

                    def step(*a, **kw):
                        modes.append(inner.in_hessian_mode)
                        return timed(*a, **kw)

                    inner.step = step
                return optimizer

            trainer.create_optimizer = create_optimizer

        for name, trainer in trainers.items():
            watch_optimizers(name, trainer)
        times = C.lockstep_train(trainers)
        for name in step_times:
            step_times[name].append(times[name][k:])  # whole periods after the first
        # refreshes run at steps 0, k, 2k...: drop the warm-up period's
        refresh.extend(refresh_watch.times[1:])
        gnb_forward.extend(gnb_watch.times[1:])
        # the separate refresh folds h through a Hessian-mode step() call: keep the real steps only
        real = [t for t, hessian in zip(opt_watches["sophia"].times, hessian_modes["sophia"]) if not hessian]
        sophia_step.extend(real[k:])
        adamw_step.extend(opt_watches["adamw"].times[k:])
        refresh_steps = sophia.hessian_callback.refresh_steps
        refresh_paths = {name: trainers[name].refresh_path for name in ("sophia", "sophia_half")}
        last_sophia = sophia

    per_step = {name: [_mean(b) for b in blocks_] for name, blocks_ in step_times.items()}
    value = _mean(sum(step_times["sophia"], [])) / _mean(sum(step_times["adamw"], []))
    value_half = _mean(sum(step_times["sophia_half"], [])) / _mean(sum(step_times["adamw"], []))
    adamw_mean = _mean(sum(step_times["adamw"], []))
    refresh_mean = _mean(refresh)
    medians = C.paired_ratio(step_times["sophia"], step_times["adamw"])
    block_means = [_mean(s) / _mean(a) for s, a in zip(step_times["sophia"], step_times["adamw"])]
    # Non-refresh steps only: what SophiaG's own update costs beside AdamW's
    non_refresh = {name: [t for b in step_times[name] for i, t in enumerate(b) if i % k != 0] for name in step_times}

    repeats = 2 if ctx.smoke else 7
    sampling = _gnb_sampling_diagnostic(last_sophia, batch, repeats)
    forget_only = _forget_only_diagnostic(last_sophia, batch, repeats)

    C.log(f"[P2] compared: UnlearningTrainer grad_diff with SophiaG (gnb, k={k}) vs AdamW (fused), lockstep, "
          f"{data_kind}, model {size}, batch {shape}; {C.machine_line()}")
    C.log(f"[P2] mean step over {periods} whole refresh periods x {blocks} blocks: sophia "
          f"{_mean(sum(step_times['sophia'], [])) * 1e3:.1f} ms, adamw {adamw_mean * 1e3:.1f} ms -> ratio {value:.3f} "
          f"(per block {', '.join(f'{x:.3f}' for x in block_means)}); with hessian_batch_fraction 0.5: "
          f"{value_half:.3f}")
    forwards = "no forward" if refresh_paths["sophia"] == "step_forward" else "2 forwards"
    C.log(f"[P2] refresh path: {refresh_paths['sophia']} (half-batch: {refresh_paths['sophia_half']}); refresh "
          f"{refresh_mean * 1e3:.1f} ms = {refresh_mean / adamw_mean:.2f} AdamW steps "
          f"(GNB loss incl. {forwards} + sampling {_mean(gnb_forward) * 1e3:.1f} ms); non-refresh steps sophia/adamw "
          f"{C.median(non_refresh['sophia']) / C.median(non_refresh['adamw']):.3f}; optimizer.step alone sophia "
          f"{C.median(sophia_step) * 1e3:.2f} ms vs adamw {C.median(adamw_step) * 1e3:.2f} ms")
    C.log(f"[P2] GNB label draw: multinomial {sampling['multinomial'] * 1e3:.1f} ms vs inverse CDF "
          f"{sampling['inverse_cdf'] * 1e3:.1f} ms; GNB loss+backward forget+retain "
          f"{forget_only['forget+retain'] * 1e3:.1f} ms vs forget only {forget_only['forget only'] * 1e3:.1f} ms")
    # Scale the measured refresh by the forget-only share of the GNB loss+backward (same model and batch).
    share = forget_only["forget only"] / forget_only["forget+retain"]
    projected = {"refresh_on_forget_only": value - refresh_mean * (1 - share) / (k * adamw_mean)}
    return C.write_result(
        ctx, ID, measure=MEASURE, value=value, target=TARGET, passed=None if ctx.smoke else value <= LIMIT,
        display=f"{value:.3f}x (refresh {refresh_mean / adamw_mean:.2f} steps, {refresh_paths['sophia']}; "
                f"half-batch refresh {value_half:.3f}x)",
        numbers={
            "ratio_mean_over_periods": value, "block_ratios_mean_over_periods": block_means,
            "ratio_mean_over_periods_half_batch_refresh": value_half,
            "median_ratio": medians,
            "per_block_mean_step_s": per_step,
            "sophia": C.summarise_times(step_times["sophia"]), "adamw": C.summarise_times(step_times["adamw"]),
            "refresh_path": refresh_paths["sophia"], "refresh_path_half_batch": refresh_paths["sophia_half"],
            "refresh_mean_s": refresh_mean, "refresh_over_adamw_step": refresh_mean / adamw_mean,
            "refresh_times_s": refresh, "gnb_loss_mean_s": _mean(gnb_forward),
            "non_refresh_step_ratio_median": C.median(non_refresh["sophia"]) / C.median(non_refresh["adamw"]),
            "optimizer_step_median_s": {"sophia": C.median(sophia_step), "adamw": C.median(adamw_step)},
            "gnb_sampling_s": sampling, "gnb_loss_backward_s": forget_only,
            "projected_ratio_if": projected,
        },
        settings={"data": data_kind, "model": size, "vocab": len(tokenizer), "batch": shape,
                  "hessian_update_interval": k, "refresh_steps": refresh_steps, "periods_timed_per_block": periods,
                  "blocks": blocks, "warmup": "first refresh period (steps 0..k-1)", "learning_rate": lr,
                  "method": "grad_diff", "adamw": "Trainer default adamw_torch_fused"},
        notes=["refresh_path step_forward: the refresh takes GNB's logits from the training step's own forward, so "
               "refresh_mean_s holds no forward (the forward is in the step's loss); own_forward: the refresh "
               "forwards forget and retain itself (as before; still the path with hessian_batch_fraction < 1).",
               "projected_ratio_if.refresh_on_forget_only: the measured ratio with the refresh cost scaled by the "
               "forget-only share of the GNB loss+backward (an estimate, not a run)."],
    )
