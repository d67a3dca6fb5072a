"""`ForgetQualityCallback`: TOFU evaluation on the Trainer's evaluation schedule.

Usage::

    cb = ForgetQualityCallback("locuslab/TOFU", forget_split="forget10",
                               retain_reference="retain_eval/tofu_eval.json", subsample=100,
                               target_forget_quality=0.05, min_model_utility=0.5)
    trainer = UnlearningTrainer(..., callbacks=[cb])
    cb.attach(trainer)          # optional: log through trainer.log (loggers, progress bar)
    trainer.train()

Schedule.  By default the callback follows ``args.eval_strategy`` / ``args.eval_steps`` (a float
``eval_steps < 1`` is a fraction of ``max_steps``, as in Trainer) and ``args.eval_delay``, and also
evaluates at the last step when that step is not on the schedule (as Trainer does).
transformers' Trainer refuses ``eval_strategy != "no"`` without an ``eval_dataset`` at
construction, so for a run with no eval dataset give the callback its own schedule
(``eval_strategy="steps", eval_steps=N`` or ``eval_strategy="epoch"`` here) and leave
``args.eval_strategy="no"``.  When the Trainer is attached and has no eval dataset, the callback
also clears ``control.should_evaluate`` after its own evaluation so Trainer never calls its own.

Logging.  Metrics go out as ``tofu/<summary key>`` (``tofu/forget_quality``,
``tofu/model_utility``, ...; None values are left out).  With a trainer attached (``attach`` or
the ``trainer`` argument) they are logged through ``transformers.Trainer.log`` -- the base
implementation, so subclass overrides that post-process *training* logs (UnlearningTrainer merges
and clears its running loss terms there) are not triggered -- which appends to
``state.log_history`` and reaches every reporting integration.  Without a trainer they are
appended to ``state.log_history`` only.  Every evaluation is also appended to the history JSON
(``<output_dir>/tofu_history.json`` by default), with the best step so far.

Stop rule and best checkpoint.  With both ``target_forget_quality`` and ``min_model_utility``
given, training stops (``control.should_training_stop``) at the first evaluation with
``forget_quality >= target`` and ``model_utility >= floor``.  The best evaluation is the one with
the highest forget quality among those with ``model_utility >= floor`` (any utility without a
rule); it needs a retain reference.  ``best_step`` and its metrics are recorded in the history
JSON, and ``state.best_metric`` / ``state.best_model_checkpoint`` are set when
``checkpoint-<best_step>`` exists in ``output_dir`` (checked after every save) and
``args.metric_for_best_model`` is not set (then Trainer owns those fields).

Several processes: every rank runs the evaluation (scoring is sharded inside
:func:`~hf_unlearn.eval.tofu.evaluate_tofu` and gathered, so all ranks get the same numbers and
take the same stop decision); rank 0 writes the history file.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from transformers import TrainerCallback

logger = logging.getLogger(__name__)

HISTORY_FILE = "tofu_history.json"
_STRATEGIES = ("no", "steps", "epoch")


def _strategy_value(strategy) -> str:
    return str(getattr(strategy, "value", strategy))


class ForgetQualityCallback(TrainerCallback):
    """Runs :func:`~hf_unlearn.eval.tofu.evaluate_tofu` during training; see the module docstring.

    Args:
        dataset_name: Hub id or local TOFU-format folder.
        forget_split, holdout_split, subsample, batch_size, max_new_tokens: passed to
            ``evaluate_tofu`` (``subsample`` = first N questions of each split, for speed).
        retain_reference: the retain model's ``tofu_eval.json`` (path or loaded dict); needed for
            forget quality, the stop rule and the best checkpoint.
        target_forget_quality, min_model_utility: the stop rule; give both or neither.
        history_path: the history JSON; default ``<output_dir>/tofu_history.json``.
        eval_strategy, eval_steps: the callback's own schedule ("steps"/"epoch"/"no"); default:
            follow ``args.eval_strategy`` / ``args.eval_steps``.
        trainer: the Trainer, to log through it (or call :meth:`attach`).
        show_progress: progress bars during each evaluation.
    """

    def __init__(
        self,
        dataset_name: str,
        forget_split: str = "forget10",
        retain_reference: Union[None, str, os.PathLike, Mapping] = None,
        holdout_split: Optional[str] = None,
        subsample: Optional[int] = None,
        batch_size: int = 32,
        max_new_tokens: int = 200,
        target_forget_quality: Optional[float] = None,
        min_model_utility: Optional[float] = None,
        history_path: Union[None, str, os.PathLike] = None,
        eval_strategy: Optional[str] = None,
        eval_steps: Optional[float] = None,
        trainer=None,
        show_progress: bool = False,
    ):
        if (target_forget_quality is None) != (min_model_utility is None):
            given = "target_forget_quality" if target_forget_quality is not None else "min_model_utility"
            raise ValueError(
                f"The stop rule needs both target_forget_quality and min_model_utility; only {given} was given."
            )
        if target_forget_quality is not None:
            for name, value in (("target_forget_quality", target_forget_quality),
                                ("min_model_utility", min_model_utility)):
                if not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise ValueError(f"{name} must be a finite number, got {value!r}.")
            if retain_reference is None:
                raise ValueError(
                    "target_forget_quality needs retain_reference (the retain model's tofu_eval.json): forget "
                    "quality is a test against the retain model's truth ratios."
                )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}.")
        if subsample is not None and (isinstance(subsample, bool) or not isinstance(subsample, int) or subsample <= 0):
            raise ValueError(f"subsample must be a positive integer or None, got {subsample!r}.")
        if eval_strategy is not None and _strategy_value(eval_strategy) not in _STRATEGIES:
            raise ValueError(f"eval_strategy must be one of {', '.join(_STRATEGIES)}, got {eval_strategy!r}.")
        if eval_steps is not None and not (eval_steps > 0):
            raise ValueError(f"eval_steps must be > 0, got {eval_steps!r}.")
        if eval_steps is not None and eval_strategy is None:
            eval_strategy = "steps"

        self.dataset_name = dataset_name
        self.forget_split = forget_split
        self.holdout_split = holdout_split
        self.subsample = subsample
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.target_forget_quality = target_forget_quality
        self.min_model_utility = min_model_utility
        self.history_path = Path(history_path) if history_path is not None else None
        self.eval_strategy = _strategy_value(eval_strategy) if eval_strategy is not None else None
        self.eval_steps = eval_steps
        self.trainer = trainer
        self.show_progress = show_progress
        self.reference = None
        if retain_reference is not None:
            from .tofu import load_reference

            self.reference = load_reference(retain_reference)  # read once, fail early
        self.history: list[dict] = []
        self.best: Optional[dict] = None
        self.latest_metrics: dict[str, float] = {}
        self._last_eval_step: Optional[int] = None

    # --- wiring ---------------------------------------------------------------------------------
    def attach(self, trainer) -> "ForgetQualityCallback":
        """Logs through ``trainer``; adds this callback to it if it is not there yet."""
        self.trainer = trainer
        if self not in trainer.callback_handler.callbacks:
            trainer.add_callback(self)
        return self

    @property
    def stop_rule(self) -> bool:
        return self.target_forget_quality is not None

    def _history_file(self, args) -> Path:
        return self.history_path if self.history_path is not None else Path(args.output_dir) / HISTORY_FILE

    # --- schedule -------------------------------------------------------------------------------
    def _schedule(self, args) -> tuple[str, Optional[float], bool]:
        if self.eval_strategy is not None:
            return self.eval_strategy, self.eval_steps, False
        return _strategy_value(args.eval_strategy), args.eval_steps, True

    @staticmethod
    def _absolute_steps(steps, max_steps: int) -> int:
        if steps is None:
            raise ValueError("eval_strategy='steps' needs eval_steps.")
        if steps < 1:  # a fraction of the run, as TrainerState.compute_steps does
            return max(1, math.ceil(max_steps * steps))
        return int(steps)

    def on_train_begin(self, args, state, control, **kwargs):
        strategy, steps, _ = self._schedule(args)
        if strategy == "steps":
            self._absolute_steps(steps, state.max_steps)  # fail now, not at the first step
        self._last_eval_step = None
        path = self._history_file(args)
        self.history, self.best = [], None
        if state.global_step > 0 and path.is_file():  # resuming: keep the evaluations up to here
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                self.history = [h for h in data.get("history", []) if h.get("step", 0) <= state.global_step]
                for entry in self.history:
                    self._update_best(entry)
            except (OSError, ValueError):
                logger.warning("Could not read %s; starting a new TOFU history.", path)
        return control

    def on_step_end(self, args, state, control, **kwargs):
        strategy, steps, from_args = self._schedule(args)
        if strategy != "steps":
            return control
        every = self._absolute_steps(steps, state.max_steps)
        step = state.global_step
        delay_ok = (not from_args) or (args.eval_delay or 0) <= step
        due = step % every == 0
        last = step >= state.max_steps and not due  # Trainer also evaluates at an off-schedule last step
        if delay_ok and (due or last):
            self._evaluate(args, state, control, **kwargs)
        return control

    def on_epoch_end(self, args, state, control, **kwargs):
        strategy, _, from_args = self._schedule(args)
        if strategy != "epoch":
            return control
        if from_args and (args.eval_delay or 0) > (state.epoch or 0):
            return control
        self._evaluate(args, state, control, **kwargs)
        return control

    def on_save(self, args, state, control, **kwargs):
        # Checkpoints are written after on_step_end / on_epoch_end: mark the best one once it exists.
        if self.best is not None and self._mark_best_checkpoint(args, state):
            self._write_history(args, state)
        return control

    # --- evaluation -----------------------------------------------------------------------------
    def _evaluate(self, args, state, control, **kwargs):
        if self._last_eval_step == state.global_step:
            return
        self._last_eval_step = state.global_step
        from .tofu import evaluate_tofu

        model = kwargs.get("model")
        tokenizer = kwargs.get("processing_class") or kwargs.get("tokenizer")
        if model is None or tokenizer is None:
            raise ValueError(
                "ForgetQualityCallback needs the model and the tokenizer: pass processing_class=tokenizer to the "
                "Trainer."
            )
        _, summary = evaluate_tofu(
            model, tokenizer, self.dataset_name, forget_split=self.forget_split, holdout_split=self.holdout_split,
            retain_reference=self.reference, batch_size=self.batch_size, max_new_tokens=self.max_new_tokens,
            subsample=self.subsample, show_progress=self.show_progress and state.is_world_process_zero,
            template=getattr(self.trainer, "prompt_template", None),  # the format the pairs were built with
        )
        metrics = {  # loggers want numbers: None (no reference / no holdout) is left out
            f"tofu/{k}": float(v) for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        self.latest_metrics = dict(metrics)
        entry = {"step": state.global_step, "epoch": state.epoch, "metrics": dict(summary)}
        self.history.append(entry)
        self._update_best(entry)
        self._log(args, state, control, metrics)

        if self.stop_rule and self._meets_rule(summary):
            logger.info(
                "TOFU stop rule met at step %d: forget_quality %.4g >= %g and model_utility %.4g >= %g.",
                state.global_step, summary["forget_quality"], self.target_forget_quality,
                summary["model_utility"], self.min_model_utility,
            )
            control.should_training_stop = True
        if self.trainer is not None and getattr(self.trainer, "eval_dataset", None) is None:
            control.should_evaluate = False  # nothing for Trainer.evaluate to do
        self._mark_best_checkpoint(args, state)
        self._write_history(args, state)

    def _meets_rule(self, summary: Mapping[str, Any]) -> bool:
        fq, mu = summary.get("forget_quality"), summary.get("model_utility")
        return fq is not None and mu is not None and fq >= self.target_forget_quality and mu >= self.min_model_utility

    def _update_best(self, entry: dict) -> None:
        m = entry["metrics"]
        fq, mu = m.get("forget_quality"), m.get("model_utility")
        if fq is None or mu is None:
            return
        if self.stop_rule and mu < self.min_model_utility:
            return
        if self.best is None or fq > self.best["metrics"]["forget_quality"]:
            self.best = {"step": entry["step"], "epoch": entry.get("epoch"), "metrics": dict(m), "checkpoint": None}

    def _mark_best_checkpoint(self, args, state) -> bool:
        if self.best is None or self.best.get("checkpoint") is not None:
            return False
        path = Path(args.output_dir) / f"checkpoint-{self.best['step']}"
        if not path.is_dir():
            return False
        self.best["checkpoint"] = str(path)
        if getattr(args, "metric_for_best_model", None) is None:
            state.best_metric = self.best["metrics"]["forget_quality"]
            state.best_model_checkpoint = str(path)
        return True

    def _log(self, args, state, control, metrics: dict[str, float]) -> None:
        if self.trainer is not None:
            from transformers import Trainer

            # Logging clears control.should_log, which Trainer set for this step's training-loss line: keep it.
            should_log = control.should_log
            if isinstance(self.trainer, Trainer):
                Trainer.log(self.trainer, dict(metrics))
            else:
                self.trainer.log(dict(metrics))
            control.should_log = should_log
        else:
            state.log_history.append({**metrics, "epoch": state.epoch, "step": state.global_step})

    def _write_history(self, args, state) -> None:
        if not state.is_world_process_zero:
            return
        from .tofu import _atomic_json

        path = self._history_file(args)
        path.parent.mkdir(parents=True, exist_ok=True)
        best = self.best or {}
        _atomic_json(path, {
            "dataset_name": str(self.dataset_name),
            "forget_split": self.forget_split,
            "subsample": self.subsample,
            "rule": (
                {"target_forget_quality": self.target_forget_quality, "min_model_utility": self.min_model_utility}
                if self.stop_rule else None
            ),
            "best_step": best.get("step"),
            "best_metrics": best.get("metrics"),
            "best_checkpoint": best.get("checkpoint"),
            "history": self.history,
        })
