"""`ForgetQualityCallback`: a registered benchmark's evaluation on the Trainer's evaluation schedule.

Usage (TOFU, the default ``benchmark``; any other registered name works alike, with its own options)::

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

Logging.  Metrics go out as ``<benchmark>/<summary key>`` (``tofu/forget_quality``,
``tofu/model_utility``, ...; None values are left out).  With a trainer attached (``attach`` or
the ``trainer`` argument) they are logged through ``transformers.Trainer.log`` -- the base
implementation, so subclass overrides that post-process *training* logs (UnlearningTrainer merges
and clears its running loss terms there) are not triggered -- which appends to
``state.log_history`` and reaches every reporting integration.  Without a trainer they are
appended to ``state.log_history`` only.  Every evaluation is also appended to the history JSON
(the benchmark's ``history_file`` in ``output_dir``, ``tofu_history.json`` for TOFU), with the
best step so far.

Stop rule and best checkpoint, on the benchmark's headline metrics (TOFU: ``forget_quality`` and
``model_utility``).  With both ``target_forget_quality`` and ``min_model_utility`` given, training
stops (``control.should_training_stop``) at the first evaluation whose forget metric reaches the
target (``>=``, or ``<=`` for a benchmark whose forget metric falls as it forgets) with the utility
metric ``>= floor``.  The best evaluation is the one with the best forget metric among those with
utility ``>= floor`` (any utility without a rule); TOFU's needs a retain reference.  ``best_step``
and its metrics are recorded in the history JSON, and ``state.best_metric`` /
``state.best_model_checkpoint`` are set when
``checkpoint-<best_step>`` exists in ``output_dir`` (checked after every save) and
``args.metric_for_best_model`` is not set (then Trainer owns those fields).

Several processes: every rank runs the evaluation (the benchmark shards its scoring and gathers it,
so all ranks get the same numbers and take the same stop decision); rank 0 writes the history file.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from transformers import TrainerCallback

from .benchmarks import DEFAULT_BENCHMARK, Benchmark, get_benchmark
from .runner import atomic_json

logger = logging.getLogger(__name__)

_STRATEGIES = ("no", "steps", "epoch")


def _strategy_value(strategy) -> str:
    return str(getattr(strategy, "value", strategy))


class ForgetQualityCallback(TrainerCallback):
    """Runs a registered benchmark's ``evaluate`` during training; see the module docstring.

    Args:
        dataset_name: the benchmark's data (TOFU: Hub id or local TOFU-format folder); joins ``options``.
        benchmark: a registered benchmark name (default ``tofu``) or a :class:`Benchmark`.
        batch_size: passed to the benchmark's ``evaluate``.
        target_forget_quality, min_model_utility: the stop rule on the benchmark's forget and utility
            headline metrics; give both or neither.
        history_path: the history JSON; default ``<output_dir>/<benchmark history_file>``.
        eval_strategy, eval_steps: the callback's own schedule ("steps"/"epoch"/"no"); default:
            follow ``args.eval_strategy`` / ``args.eval_steps``.
        trainer: the Trainer, to log through it (or call :meth:`attach`).
        show_progress: progress bars during each evaluation.
        **options: the benchmark's own options, checked now by its ``check`` (TOFU: forget_split,
            holdout_split, retain_reference, subsample = first N questions of each split, max_new_tokens).
    """

    def __init__(
        self,
        dataset_name: Optional[str] = None,
        benchmark: Union[str, Benchmark] = DEFAULT_BENCHMARK,
        batch_size: int = 32,
        target_forget_quality: Optional[float] = None,
        min_model_utility: Optional[float] = None,
        history_path: Union[None, str, os.PathLike] = None,
        eval_strategy: Optional[str] = None,
        eval_steps: Optional[float] = None,
        trainer=None,
        show_progress: bool = False,
        **options,
    ):
        self.benchmark = get_benchmark(benchmark)
        if self.benchmark is None:
            raise ValueError("ForgetQualityCallback needs a benchmark to evaluate, not 'none'.")
        if dataset_name is not None:
            options["dataset_name"] = dataset_name
        if (target_forget_quality is None) != (min_model_utility is None):
            given = "target_forget_quality" if target_forget_quality is not None else "min_model_utility"
            raise ValueError(
                f"The stop rule needs both target_forget_quality and min_model_utility; only {given} was given."
            )
        if target_forget_quality is not None:
            for name, value in (("target_forget_quality", target_forget_quality),
                                ("min_model_utility", min_model_utility)):
                low, high = self.benchmark.metric_range
                if not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
                    from ..validation import RunInputError

                    metric = self.benchmark.forget_metric if name == "target_forget_quality" else \
                        self.benchmark.utility_metric
                    raise RunInputError(f"{name} must be a number in [{low:g}, {high:g}] (the range of "
                                        f"{self.benchmark.name}'s {metric}), got {value!r}: a target outside it is "
                                        "never reached.")
            needs = self.benchmark.forget_metric_needs
            if needs is not None and options.get(needs) is None:
                raise ValueError(
                    f"target_forget_quality needs {needs}: without it the {self.benchmark.name} metric "
                    f"{self.benchmark.forget_metric} is not computed."
                )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
        if eval_strategy is not None and _strategy_value(eval_strategy) not in _STRATEGIES:
            raise ValueError(f"eval_strategy must be one of {', '.join(_STRATEGIES)}, got {eval_strategy!r}.")
        if eval_steps is not None and not (eval_steps > 0):
            raise ValueError(f"eval_steps must be > 0, got {eval_steps!r}.")
        if eval_steps is not None and eval_strategy is None:
            eval_strategy = "steps"

        self.options = self.benchmark.check(**options)  # fail now, with the fix; files read once
        self.batch_size = batch_size
        self.target_forget_quality = target_forget_quality
        self.min_model_utility = min_model_utility
        self.history_path = Path(history_path) if history_path is not None else None
        self.eval_strategy = _strategy_value(eval_strategy) if eval_strategy is not None else None
        self.eval_steps = eval_steps
        self.trainer = trainer
        self.show_progress = show_progress
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
        if self.history_path is not None:
            return self.history_path
        return Path(args.output_dir) / self.benchmark.history_file

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
                logger.warning("Could not read %s; starting a new evaluation history.", path)
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
        model = kwargs.get("model")
        tokenizer = kwargs.get("processing_class") or kwargs.get("tokenizer")
        if model is None or tokenizer is None:
            raise ValueError(
                "ForgetQualityCallback needs the model and the tokenizer: pass processing_class=tokenizer to the "
                "Trainer."
            )
        _, summary = self.benchmark.evaluate(
            model, tokenizer, batch_size=self.batch_size,
            show_progress=self.show_progress and state.is_world_process_zero,
            template=getattr(self.trainer, "prompt_template", None),  # the format the pairs were built with
            **self.options,
        )
        metrics = {  # loggers want numbers: None (no reference / no holdout) is left out
            f"{self.benchmark.name}/{k}": float(v)
            for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        self.latest_metrics = dict(metrics)
        entry = {"step": state.global_step, "epoch": state.epoch, "metrics": dict(summary)}
        self.history.append(entry)
        self._update_best(entry)
        self._log(args, state, control, metrics)

        if self.stop_rule and self._meets_rule(summary):
            bench = self.benchmark
            logger.info(
                "%s stop rule met at step %d: %s %.4g (target %g) and %s %.4g >= %g.", bench.name,
                state.global_step, bench.forget_metric, summary[bench.forget_metric], self.target_forget_quality,
                bench.utility_metric, summary[bench.utility_metric], self.min_model_utility,
            )
            control.should_training_stop = True
        if self.trainer is not None and getattr(self.trainer, "eval_dataset", None) is None:
            control.should_evaluate = False  # nothing for Trainer.evaluate to do
        self._mark_best_checkpoint(args, state)
        self._write_history(args, state)

    def _headline(self, summary: Mapping[str, Any]) -> tuple[Optional[float], Optional[float]]:
        return summary.get(self.benchmark.forget_metric), summary.get(self.benchmark.utility_metric)

    def _meets_rule(self, summary: Mapping[str, Any]) -> bool:
        forget, utility = self._headline(summary)
        sign = 1.0 if self.benchmark.forget_metric_higher_is_better else -1.0
        return (forget is not None and utility is not None and utility >= self.min_model_utility
                and sign * forget >= sign * self.target_forget_quality)

    def _update_best(self, entry: dict) -> None:
        forget, utility = self._headline(entry["metrics"])
        if forget is None or utility is None:
            return
        if self.stop_rule and utility < self.min_model_utility:
            return
        sign = 1.0 if self.benchmark.forget_metric_higher_is_better else -1.0
        if self.best is None or sign * forget > sign * self._headline(self.best["metrics"])[0]:
            self.best = {"step": entry["step"], "epoch": entry.get("epoch"), "metrics": dict(entry["metrics"]),
                         "checkpoint": None}

    def _mark_best_checkpoint(self, args, state) -> bool:
        if self.best is None or self.best.get("checkpoint") is not None:
            return False
        path = Path(args.output_dir) / f"checkpoint-{self.best['step']}"
        if not path.is_dir():
            return False
        self.best["checkpoint"] = str(path)
        if getattr(args, "metric_for_best_model", None) is None:
            state.best_metric = self.best["metrics"][self.benchmark.forget_metric]
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
        path = self._history_file(args)
        path.parent.mkdir(parents=True, exist_ok=True)
        best = self.best or {}
        atomic_json(path, {
            **{k: str(v) if isinstance(v, os.PathLike) else v for k, v in self.options.items()
               if v is None or isinstance(v, (str, int, float, os.PathLike))},  # the options, less loaded files
            "rule": (
                {"target_forget_quality": self.target_forget_quality, "min_model_utility": self.min_model_utility}
                if self.stop_rule else None
            ),
            "best_step": best.get("step"),
            "best_metrics": best.get("metrics"),
            "best_checkpoint": best.get("checkpoint"),
            "history": self.history,
        })
