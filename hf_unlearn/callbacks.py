"""Trainer callbacks: when to refresh SophiaG's Hessian, when the one-shot influence step applies, and PDU's dual
update of the retain weight (the evaluation callback is `hf_unlearn.eval.callback.ForgetQualityCallback`)."""

from __future__ import annotations

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState


class HessianRefreshCallback(TrainerCallback):
    """Asks for a Hessian refresh before the first optimizer step, then every `interval` optimizer steps, and
    stops training if a due refresh did not run.

    `UnlearningTrainer.training_step` does the refresh on the first micro-batch of the due step and reports it
    (`refreshed`), so gradient accumulation, mixed precision and DeepSpeed share one code path. The schedule is
    a function of `global_step`, so a resumed run refreshes at the same steps.
    """

    def __init__(self, interval: int = 10):
        if interval < 1:
            raise ValueError(f"hessian_update_interval must be >= 1, got {interval}.")
        self.interval = interval
        self.refresh_due = False
        self.refresh_steps: list[int] = []  # the steps whose refresh ran

    def on_step_begin(self, args, state, control, **kwargs):
        self.refresh_due = state.global_step % self.interval == 0

    def refreshed(self, step: int) -> None:
        self.refresh_due = False
        self.refresh_steps.append(step)

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        # Without it SophiaG would step on a stale h (before the first refresh: h = 0, pure sign steps).
        if self.refresh_due:
            raise RuntimeError(
                f"SophiaG's Hessian refresh was due at step {state.global_step} but did not run. "
                "UnlearningTrainer.training_step runs it: a subclass that overrides training_step must call "
                "super().training_step(model, inputs, num_items_in_batch); to change the loss, override "
                "compute_loss instead."
            )


class InfluenceApplyCallback(TrainerCallback):
    """Tells the influence step (`hf_unlearn.optim.InfluenceStep`) to apply its update during the run's last
    optimizer step, and only then; every earlier step only accumulates. A function of `global_step` and
    `max_steps`, so a resumed run applies at the same step. `optimizer`: () -> the InfluenceStep."""

    def __init__(self, optimizer):
        self.optimizer = optimizer

    def on_step_begin(self, args, state, control, **kwargs):
        self.optimizer().apply_on_step = state.global_step + 1 >= state.max_steps

    def on_step_end(self, args, state, control, **kwargs):
        self.optimizer().apply_on_step = False



class RetainDualCallback(TrainerCallback, ExportableState):
    """Dual ascent on a `RetainDual` method's retain weight lambda (PDU), once per optimizer step.

    The trainer hands it each training micro-batch's retain loss (`record`); at the step's end lambda <-
    max(0, lambda + eta * (mean - epsilon)), the mean over the step's micro-batches and, through `reduce_mean`,
    over the processes: every rank applies the same update, and 2 processes x 1 micro-batch give what
    1 process x 2 accumulated micro-batches gives. lambda is an `ExportableState`: Trainer writes it into
    each checkpoint's trainer_state.json, and `on_train_begin` reads it back when a run resumes.
    """

    def __init__(self, dual, settings, reduce_mean):
        self.dual, self.settings, self.reduce_mean = dual, settings, reduce_mean
        self.pending: list[torch.Tensor] = []
        self.history: list[float] = []  # lambda after each update, for logs and tests

    def record(self, retain_loss: torch.Tensor) -> None:
        self.pending.append(retain_loss.detach().double())

    def state(self) -> dict:
        return {"args": {}, "attributes": {"retain_weight": float(self.settings.retain_weight)}}

    def on_train_begin(self, args, state, control, **kwargs):
        saved = state.stateful_callbacks.get(type(self).__name__) if state.stateful_callbacks else None
        if isinstance(saved, list):
            saved = saved[-1] if saved else None
        if state.global_step > 0 and saved:  # resumed: continue from the checkpoint's lambda
            self.settings.retain_weight = float(saved["attributes"]["retain_weight"])
        self.pending.clear()

    def on_step_end(self, args, state, control, **kwargs):
        if not self.pending:
            return
        mean = float(self.reduce_mean(torch.stack(self.pending).mean()))
        self.pending.clear()
        warmup = getattr(self.settings, self.dual.warmup_epochs)
        if (state.epoch or 0.0) > warmup + 1e-9:  # once `warmup` whole epochs are done
            self.settings.retain_weight = self.dual.updated(self.settings, mean)
        self.history.append(float(self.settings.retain_weight))
