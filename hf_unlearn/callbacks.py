"""Trainer callback that decides *when* to refresh SophiaG's Hessian (the evaluation callback is
`hf_unlearn.eval.callback.ForgetQualityCallback`)."""

from __future__ import annotations

from transformers import TrainerCallback


class HessianRefreshCallback(TrainerCallback):
    """Asks for a Hessian refresh before the first optimizer step, then every `interval` optimizer steps.

    It only decides when; `UnlearningTrainer.training_step` does the refresh on the first micro-batch of
    the due step, so gradient accumulation, mixed precision and DeepSpeed share one code path. The
    schedule is a function of `global_step`, so a resumed run refreshes at the same steps.
    """

    def __init__(self, interval: int = 10):
        if interval < 1:
            raise ValueError(f"hessian_update_interval must be >= 1, got {interval}.")
        self.interval = interval
        self.refresh_due = False
        self.refresh_steps: list[int] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self.refresh_due = state.global_step % self.interval == 0
        if self.refresh_due:
            self.refresh_steps.append(state.global_step)

