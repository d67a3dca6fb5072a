"""A registered benchmark evaluated on the Trainer's own evaluation schedule, and the stop rule on its metrics.

Usage (TOFU, the default ``benchmark``; any other registered name works alike, with its own options)::

    cb = ForgetQualityCallback("locuslab/TOFU", forget_split="forget10",
                               retain_reference="retain_eval/tofu_eval.json", subsample=100,
                               target_forget_quality=0.05, min_model_utility=0.5)
    args = UnlearningConfig(..., eval_strategy="steps", eval_steps=10,
                            metric_for_best_model="tofu/forget_quality", load_best_model_at_end=True)
    trainer = UnlearningTrainer(..., args=args, callbacks=[cb])
    trainer.train()

Schedule.  Trainer's own: ``args.eval_strategy`` / ``args.eval_steps`` / ``args.eval_delay`` (and the last
step, as Trainer does).  At each evaluation `UnlearningTrainer.evaluate` computes the unlearning losses
on its eval dataset (the forget pairs by default: ``eval_loss``, ``eval_forget_loss``, ...) and runs the
benchmark once (:meth:`ForgetQualityCallback.run`, sharded over the processes as the benchmark does it);
its returned metrics hold both, the benchmark's as ``eval_<benchmark>/<summary key>``
(``eval_tofu/forget_quality``; None values left out).  So ``metric_for_best_model="tofu/forget_quality"``
(Trainer adds the ``eval_``) with ``load_best_model_at_end`` picks the checkpoint by forget quality; set
``greater_is_better=False`` for a forget metric that falls as it forgets (WMDP's ``wmdp_max_acc``).
The callback's own ``eval_strategy`` / ``eval_steps`` are deprecated: with ``args.eval_strategy="no"``
they become the Trainer's schedule (with a warning).

Logging.  The evaluation is one log entry, Trainer's: the losses as ``eval_*`` and the benchmark's
metrics under their names ``<benchmark>/<summary key>`` (``tofu/forget_quality``, ``tofu/model_utility``,
...).  Every evaluation is also appended to the history JSON (the benchmark's ``history_file`` in
``output_dir``, ``tofu_history.json`` for TOFU), with the best step so far.

Stop rule (:class:`StopRuleCallback`, which the callback adds when given both ``target_forget_quality``
and ``min_model_utility``): training stops (``control.should_training_stop``) at the first evaluation
whose forget metric reaches the target (``>=``, or ``<=`` for a benchmark whose forget metric falls as
it forgets) with the utility metric ``>= floor``.  The history's best evaluation is the one with the best
forget metric among those with utility ``>= floor`` (any utility without a rule); ``best_checkpoint`` is
``checkpoint-<best_step>`` once it exists in ``output_dir``.  ``state.best_metric`` /
``state.best_model_checkpoint`` are Trainer's (``metric_for_best_model``).

Several processes: every rank runs the evaluation (the benchmark shards its scoring and gathers it,
so all ranks get the same numbers and take the same stop decision); rank 0 writes the history file.
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from transformers import TrainerCallback

from .benchmarks import DEFAULT_BENCHMARK, Benchmark, get_benchmark
from .runner import atomic_json

logger = logging.getLogger(__name__)

_STRATEGIES = ("no", "steps", "epoch")


def _strategy_value(strategy) -> str:
    return str(getattr(strategy, "value", strategy))


def metric_key(benchmark: Benchmark, key: str, prefix: str = "eval") -> str:
    """The key of benchmark summary value `key` in `UnlearningTrainer.evaluate`'s metrics (``eval_tofu/forget_quality``)."""
    return f"{prefix}_{benchmark.name}/{key}"


class StopRuleCallback(TrainerCallback):
    """Stops training at the first evaluation whose forget metric reaches `target_forget_quality` while its
    utility metric stays ``>= min_model_utility``; reads `UnlearningTrainer.evaluate`'s metrics."""

    def __init__(self, benchmark: Union[str, Benchmark], target_forget_quality: float, min_model_utility: float):
        self.benchmark = get_benchmark(benchmark)
        low, high = self.benchmark.metric_range
        for name, value in (("target_forget_quality", target_forget_quality), ("min_model_utility", min_model_utility)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not low <= value <= high:
                from ..validation import RunInputError

                metric = self.benchmark.forget_metric if name == "target_forget_quality" else \
                    self.benchmark.utility_metric
                raise RunInputError(f"{name} must be a number in [{low:g}, {high:g}] (the range of "
                                    f"{self.benchmark.name}'s {metric}), got {value!r}: a target outside it is "
                                    "never reached.")
        self.target_forget_quality = target_forget_quality
        self.min_model_utility = min_model_utility

    def is_met(self, summary: Mapping[str, Any]) -> bool:
        """Whether a benchmark summary (unprefixed keys) meets the rule."""
        bench = self.benchmark
        forget, utility = summary.get(bench.forget_metric), summary.get(bench.utility_metric)
        sign = 1.0 if bench.forget_metric_higher_is_better else -1.0
        return (forget is not None and utility is not None and utility >= self.min_model_utility
                and sign * forget >= sign * self.target_forget_quality)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        bench = self.benchmark
        summary = {key: (metrics or {}).get(metric_key(bench, key)) for key in (bench.forget_metric, bench.utility_metric)}
        if self.is_met(summary):
            logger.info("%s stop rule met at step %d: %s %.4g (target %g) and %s %.4g >= %g.", bench.name,
                        state.global_step, bench.forget_metric, summary[bench.forget_metric], self.target_forget_quality,
                        bench.utility_metric, summary[bench.utility_metric], self.min_model_utility)
            control.should_training_stop = True
        return control


class ForgetQualityCallback(TrainerCallback):
    """A benchmark evaluation for `UnlearningTrainer.evaluate`; see the module docstring.

    Args:
        dataset_name: the benchmark's data (TOFU: Hub id or local TOFU-format folder); joins ``options``.
        benchmark: a registered benchmark name (default ``tofu``) or a :class:`Benchmark`.
        batch_size: passed to the benchmark's ``evaluate``.
        target_forget_quality, min_model_utility: the stop rule on the benchmark's forget and utility
            headline metrics; give both or neither.
        history_path: the history JSON; default ``<output_dir>/<benchmark history_file>``.
        eval_strategy, eval_steps: deprecated; used as the Trainer's schedule when ``args.eval_strategy="no"``.
        trainer: an `UnlearningTrainer` to attach to (or pass the callback in its ``callbacks``).
        show_progress: progress bars during each evaluation.
        **options: the benchmark's own options, checked now by its ``check`` (TOFU: forget_split,
            holdout_split, retain_reference, subsample = first N questions of each split, max_new_tokens).
    """

    runs_in_evaluate = True  # UnlearningTrainer adopts it as the benchmark its evaluate() runs

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
        self.rule = None
        if target_forget_quality is not None:
            self.rule = StopRuleCallback(self.benchmark, target_forget_quality, min_model_utility)
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
        self.history_path = Path(history_path) if history_path is not None else None
        self.eval_strategy = _strategy_value(eval_strategy) if eval_strategy is not None else None
        self.eval_steps = eval_steps
        self.trainer = None
        self.show_progress = show_progress
        self.history: list[dict] = []
        self.best: Optional[dict] = None
        self.latest_metrics: dict[str, float] = {}
        if trainer is not None:
            self.attach(trainer)

    # --- wiring ---------------------------------------------------------------------------------
    def attach(self, trainer) -> "ForgetQualityCallback":
        """Makes this the benchmark evaluation of `trainer` (an `UnlearningTrainer`); adds it (and its stop rule)
        to its callbacks if they are not there yet. Passing the callback in ``callbacks=`` does the same."""
        if not callable(getattr(trainer, "set_benchmark_evaluation", None)):
            raise TypeError(
                f"ForgetQualityCallback runs inside UnlearningTrainer.evaluate(), on the Trainer's evaluation "
                f"schedule; {type(trainer).__name__} has no benchmark evaluation: use hf_unlearn.UnlearningTrainer, "
                "or call the benchmark's evaluate yourself."
            )
        if trainer.benchmark_evaluation is not self:
            trainer.set_benchmark_evaluation(self)
        return self

    def _adopted_by(self, trainer) -> None:
        """Called by `UnlearningTrainer.set_benchmark_evaluation`."""
        self.trainer = trainer
        if self.eval_strategy is not None:
            _apply_own_schedule(self.eval_strategy, self.eval_steps, trainer.args)
        if self.rule is not None and self.rule not in trainer.callback_handler.callbacks:
            trainer.callback_handler.add_callback(self.rule)

    @property
    def stop_rule(self) -> bool:
        return self.rule is not None

    @property
    def target_forget_quality(self) -> Optional[float]:
        return None if self.rule is None else self.rule.target_forget_quality

    @property
    def min_model_utility(self) -> Optional[float]:
        return None if self.rule is None else self.rule.min_model_utility

    def _history_file(self, args) -> Path:
        if self.history_path is not None:
            return self.history_path
        return Path(args.output_dir) / self.benchmark.history_file

    def on_train_begin(self, args, state, control, **kwargs):
        if self.trainer is None:
            raise RuntimeError(
                "ForgetQualityCallback was added to a Trainer without being its benchmark evaluation: pass it in "
                "UnlearningTrainer(callbacks=[...]) or call callback.attach(trainer); UnlearningTrainer.evaluate() "
                "runs it on the Trainer's eval_strategy / eval_steps."
            )
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

    def on_save(self, args, state, control, **kwargs):
        # Checkpoints are written after the evaluation of their step: mark the best one once it exists.
        if self.best is not None and self._mark_best_checkpoint(args):
            self._write_history(args, state)
        return control

    # --- evaluation -----------------------------------------------------------------------------
    def run(self, model, tokenizer, args, state, *, template=None, metric_key_prefix: str = "eval") -> dict:
        """One benchmark evaluation of `model` (every process takes part): recorded in the history (and its
        file), returned as metrics ``<prefix>_<benchmark>/<key>`` (numbers only: None values are left out)."""
        _, summary = self.benchmark.evaluate(
            model, tokenizer, batch_size=self.batch_size,
            show_progress=self.show_progress and state.is_world_process_zero,
            template=template,  # the format the pairs were built with
            **self.options,
        )
        numbers = {k: float(v) for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self.latest_metrics = {f"{self.benchmark.name}/{k}": v for k, v in numbers.items()}
        entry = {"step": state.global_step, "epoch": state.epoch, "metrics": dict(summary)}
        self.history.append(entry)
        self._update_best(entry)
        self._mark_best_checkpoint(args)
        self._write_history(args, state)
        return {metric_key(self.benchmark, k, metric_key_prefix): v for k, v in numbers.items()}

    def _headline(self, summary: Mapping[str, Any]) -> tuple[Optional[float], Optional[float]]:
        return summary.get(self.benchmark.forget_metric), summary.get(self.benchmark.utility_metric)

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

    def _mark_best_checkpoint(self, args) -> bool:
        if self.best is None or self.best.get("checkpoint") is not None:
            return False
        path = Path(args.output_dir) / f"checkpoint-{self.best['step']}"
        if not path.is_dir():
            return False
        self.best["checkpoint"] = str(path)
        return True

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


def _apply_own_schedule(strategy: str, steps: Optional[float], args) -> None:
    """The deprecated ``ForgetQualityCallback(eval_strategy=..., eval_steps=...)``: one schedule, the Trainer's."""
    from transformers.trainer_utils import IntervalStrategy

    current = _strategy_value(args.eval_strategy)
    if current == "no":
        warnings.warn(
            f"ForgetQualityCallback(eval_strategy={strategy!r}, eval_steps={steps!r}) is deprecated: the benchmark "
            "is evaluated on the Trainer's schedule. Set eval_strategy / eval_steps in the UnlearningConfig; this "
            "run uses the callback's.", FutureWarning, stacklevel=4)
        args.eval_strategy = IntervalStrategy(strategy)
        args.eval_steps = steps
        args.do_eval = strategy != "no"
    elif current != strategy or (strategy == "steps" and steps is not None and steps != args.eval_steps):
        raise ValueError(
            f"ForgetQualityCallback(eval_strategy={strategy!r}, eval_steps={steps!r}) and the Trainer's "
            f"eval_strategy={current!r}, eval_steps={args.eval_steps!r} disagree: there is one evaluation schedule, "
            "the Trainer's. Drop the callback's eval_strategy / eval_steps."
        )
