"""Saves that never leave half a model, checkpoints that say which run made them, and resumes that load
what they say.

`ReliableSaveMixin` goes before `transformers.Trainer` in a trainer's bases (`UnlearningTrainer`, the
fine-tuning trainer of `pipeline.finetune`):

* `save_model` writes into `<folder>/.hf_unlearn_partial` and moves each file into `<folder>` only once the
  whole save is complete: a kill during the save leaves the hidden folder, which `validation` recognises as
  this library's unfinished output, never a half `model.safetensors` beside complete files.
* every save (checkpoints and the final model) holds `hf_unlearn_recipe.json`: the settings that give the
  saved state its meaning (method, optimizer, processes, batch, seed, schedule); `validation.check_resume_fits`
  compares it with the resumed run.
* loading a checkpoint that turns out damaged raises one `RunInputError` naming it and the last complete
  checkpoint, instead of a safetensors / pickle / EOF message.
* after a resume with a longer schedule (`--max_steps` raised), the optimizer starts at the new schedule's
  learning rate for the step, not at the checkpoint's last one (0 at the end of a linear schedule).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

PARTIAL_SAVE = ".hf_unlearn_partial"
RECIPE_FILE = "hf_unlearn_recipe.json"

# TrainingArguments that give a checkpoint's state its meaning, saved for any trainer (UnlearningConfig adds its
# method's and optimizer's flags through `recipe()`).
TRAINING_STATE_FIELDS = ("learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
                         "gradient_accumulation_steps", "weight_decay", "lr_scheduler_type", "warmup_steps",
                         "max_grad_norm", "seed", "optim")


def run_recipe(args, model=None) -> dict:
    """The settings saved with each checkpoint: `args.recipe()` when there is one, the training fields, the number
    of processes and whether the model trains LoRA adapters."""
    from .models.reference import is_peft_model

    recipe = dict(args.recipe()) if hasattr(args, "recipe") else {}
    for name in TRAINING_STATE_FIELDS:
        if hasattr(args, name):
            value = getattr(args, name)
            recipe[name] = getattr(value, "value", value)
    recipe["num_processes"] = args.world_size
    recipe["lora"] = bool(model is not None and is_peft_model(model))
    return json.loads(json.dumps(recipe, default=str))


def move_into(partial: Path, folder: Path) -> None:
    """Moves every entry of `partial` into `folder` (replacing same-named ones), then removes `partial`."""
    for entry in sorted(partial.iterdir()):
        target = folder / entry.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(entry, target)
    partial.rmdir()


class ReliableSaveMixin:
    """Atomic saves, a recipe per checkpoint, damaged checkpoints named, the learning rate right after a resume
    with a longer schedule. Mix in before `transformers.Trainer`."""

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        folder = Path(output_dir or self.args.output_dir)
        partial = folder / PARTIAL_SAVE
        if self.args.should_save:
            shutil.rmtree(partial, ignore_errors=True)  # an earlier save of this folder that was interrupted
        try:
            super().save_model(str(partial), _internal_call=True)  # pushing (below) needs the files in place
            if self.args.world_size > 1:  # DeepSpeed without gathering writes a shard per process
                self.accelerator.wait_for_everyone()
            if self.args.should_save:
                (partial / RECIPE_FILE).write_text(json.dumps(run_recipe(self.args, self.model), indent=1,
                                                              sort_keys=True) + "\n")
                move_into(partial, folder)
        except BaseException:
            if self.args.should_save:
                shutil.rmtree(partial, ignore_errors=True)
            raise
        if not _internal_call:
            # The model evaluated after this save is the saved one: its results name this folder, not the base.
            config = getattr(getattr(self.model, "get_base_model", lambda: self.model)(), "config", None)
            if config is not None:
                config._name_or_path = str(folder)
            if self.args.push_to_hub:
                self.push_to_hub(commit_message="Model save", revision=self.args.hub_revision)

    def _damaged(self, checkpoint: str, err: Exception):
        from .validation import RunInputError, damaged_checkpoint_message

        if isinstance(err, RunInputError):
            return err
        return RunInputError(damaged_checkpoint_message(Path(checkpoint), f"{type(err).__name__}: "
                                                        f"{(str(err).strip().splitlines() or [''])[0][:160]}"))

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        try:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        except Exception as err:  # noqa: BLE001  (any parser's error means the same: the file is damaged)
            raise self._damaged(resume_from_checkpoint, err) from err

    def _load_optimizer_and_scheduler(self, checkpoint):
        try:
            super()._load_optimizer_and_scheduler(checkpoint)
        except Exception as err:  # noqa: BLE001
            raise self._damaged(checkpoint, err) from err
        if checkpoint is not None:
            self._learning_rate_of_schedule()

    def _learning_rate_of_schedule(self) -> None:
        """The checkpoint's optimizer holds the learning rate its own schedule gave the next step; a resumed run
        with another length (--max_steps raised) has another schedule: the first resumed step takes the new
        schedule's rate (the same number when nothing changed)."""
        scheduler, optimizer = self.lr_scheduler, self.optimizer
        lambdas, bases = getattr(scheduler, "lr_lambdas", None), getattr(scheduler, "base_lrs", None)
        if not lambdas or not bases or optimizer is None:
            return
        groups = optimizer.param_groups
        new = [base * fn(scheduler.last_epoch) for base, fn in zip(bases, lambdas)]
        old = [group["lr"] for group in groups]
        if old != new:
            for group, lr in zip(groups, new):
                group["lr"] = lr
            if self.is_world_process_zero():
                print(f"[hf-unlearn] resumed at step {scheduler.last_epoch} with a schedule of {self.state.max_steps} "
                      f"steps: learning rate {old[0]:.3g} (the checkpoint's) -> {new[0]:.3g} (this schedule's).")
