"""Benchmarks, registered by name: what the evaluation CLI, the during-training callback and the scripts run.

A benchmark is one :class:`Benchmark` entry in its own module here (``tofu.py``, ``muse.py``, ...)
that calls :func:`register_benchmark` at import and is imported at the bottom of this file (or, from
outside the package, in any module imported before the run). The core
(:mod:`hf_unlearn.eval.scoring` for batched scoring and generation, :mod:`hf_unlearn.eval.runner`
for sharding, gathering and the result files, :mod:`hf_unlearn.eval.callback`,
``python -m hf_unlearn.eval``, the model card (:mod:`hf_unlearn.hub`), the plots
(:mod:`hf_unlearn.reporting`) and sequential runs (:mod:`hf_unlearn.sequential`)) takes any entry by
name and knows nothing of any one benchmark: what they show comes from the entry.

``--benchmark none`` (:data:`NO_BENCHMARK`) means no benchmark evaluation (bring-your-own data);
:func:`get_benchmark` returns None for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Benchmark", "DEFAULT_BENCHMARK", "NO_BENCHMARK", "benchmark_names", "registered", "get_benchmark", "register_benchmark"]

DEFAULT_BENCHMARK = "tofu"
NO_BENCHMARK = "none"


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: how to evaluate a model on it, the files and keys it writes, the metrics that lead.

    Attributes:
        name: the ``--benchmark`` value; also the prefix of the callback's logged metrics (``tofu/...``).
        description: one line for ``--help``.
        evaluate: ``evaluate(model, tokenizer, *, batch_size, show_progress, template, **options) ->
            (per_sample, summary)``; ``template`` is the model's `PromptTemplate` (None: resolved from the
            tokenizer), ignored by a benchmark that does not prompt. ``per_sample`` is the JSON-able per-question record (the eval file), ``summary``
            a flat dict with every key of ``summary_keys`` (None where a value cannot be computed). With
            several processes it shards its work (:func:`~hf_unlearn.eval.runner.shard` /
            :func:`~hf_unlearn.eval.runner.gather`) and every rank returns the same values.
        check: ``check(**options) -> options``: validates the options without a model (files exist,
            columns, references match) and raises a ValueError/FileNotFoundError that names the problem
            and the fix; returns the options for ``evaluate`` (files it read, e.g. a reference, loaded).
        options: a dataclass of the benchmark's own options (field names = ``evaluate``'s keywords, with
            help texts): the evaluation CLI adds them to its flags.
        eval_file, summary_file, history_file: names of the per-sample file, the summary file and the
            callback's history file in an output folder.
        summary_keys: the pinned keys of ``summary`` (public API), in table order.
        forget_metric, utility_metric: the headline summary keys: the callback's stop rule
            (``forget_metric`` reaches a target while ``utility_metric`` stays above a floor) and its best
            checkpoint (best ``forget_metric`` above the floor).
        forget_metric_needs: the option without which ``forget_metric`` is None (TOFU: the retain
            reference), so a stop rule without it is refused up front.
        forget_metric_higher_is_better: whether a higher ``forget_metric`` means more forgotten.
        metric_range: the values ``forget_metric`` and ``utility_metric`` can take; a stop-rule target
            outside it is refused (it would never be reached).
        card_rows: ``(summary key, label)`` rows of the model card's results table, in order; a key absent
            from the results is left out.
        plot_metrics: the summary keys the sequential plot draws, one panel each (default: the forget and
            utility metrics). The run plot (:func:`hf_unlearn.reporting.plot_unlearning`) draws
            ``forget_metric`` against ``utility_metric``.
        log_scale: the keys drawn on a log axis in both plots (TOFU: forget quality, a p-value).
        forget_metric_line: ``(value, label)`` of a horizontal line on the run plot's forget axis (TOFU's
            p = 0.05), or None.
        sequential: the class of its sequential requests (:mod:`hf_unlearn.sequential`: what a request
            loads, how it is evaluated, what its reference must be), built as ``sequential(dataset_name,
            **options)``; None: the benchmark refuses sequential runs.
    """

    name: str
    description: str
    evaluate: Callable[..., tuple[dict, dict]]
    check: Callable[..., dict]
    options: type
    eval_file: str
    summary_file: str
    history_file: str
    summary_keys: tuple[str, ...]
    forget_metric: str
    utility_metric: str
    forget_metric_needs: str | None = None
    forget_metric_higher_is_better: bool = True
    metric_range: tuple[float, float] = (0.0, 1.0)  # of forget_metric and utility_metric: stop-rule targets inside it
    card_rows: tuple[tuple[str, str], ...] = ()
    plot_metrics: tuple[str, ...] = ()
    log_scale: tuple[str, ...] = ()
    forget_metric_line: tuple[float, str] | None = None
    sequential: type | None = None

    @property
    def title(self) -> str:
        """The name as cards and plots show it (``TOFU``)."""
        return self.name.upper()

    @property
    def drawn_metrics(self) -> tuple[str, ...]:
        """The sequential plot's panels: `plot_metrics`, or the two headline metrics."""
        return self.plot_metrics or (self.forget_metric, self.utility_metric)

    def label(self, key: str) -> str:
        """The card label of summary key `key` (the key itself without one)."""
        return dict(self.card_rows).get(key, key)


_REGISTRY: dict[str, Benchmark] = {}


def register_benchmark(benchmark: Benchmark) -> Benchmark:
    """Adds `benchmark` to the registry (its module calls this at import); returns it."""
    if benchmark.name in _REGISTRY or benchmark.name == NO_BENCHMARK:
        raise ValueError(f"A benchmark named {benchmark.name!r} is already registered.")
    missing = {benchmark.forget_metric, benchmark.utility_metric} - set(benchmark.summary_keys)
    if missing:
        raise ValueError(f"Benchmark {benchmark.name!r}: headline metric(s) {sorted(missing)} not in summary_keys.")
    shown = {*(key for key, _ in benchmark.card_rows), *benchmark.plot_metrics, *benchmark.log_scale}
    missing = shown - set(benchmark.summary_keys)
    if missing:
        raise ValueError(f"Benchmark {benchmark.name!r}: card or plot metric(s) {sorted(missing)} not in "
                         "summary_keys.")
    _REGISTRY[benchmark.name] = benchmark
    return benchmark


def registered() -> tuple[Benchmark, ...]:
    """The registered entries, in registration order."""
    return tuple(_REGISTRY.values())


def benchmark_names() -> tuple[str, ...]:
    """The registered names, in registration order (``none`` not included)."""
    return tuple(_REGISTRY)


def get_benchmark(name: str | Benchmark) -> Benchmark | None:
    """The registered benchmark `name` (a Benchmark is returned as is); None for ``"none"``."""
    if isinstance(name, Benchmark):
        return name
    if name == NO_BENCHMARK:
        return None
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"Unknown benchmark {name!r}: choose one of {', '.join(benchmark_names())}, or {NO_BENCHMARK!r} for no "
            "benchmark evaluation (bring-your-own data)."
        ) from None


# Built-in benchmarks: one import each (each module registers its entry).
from . import tofu  # noqa: E402,F401
from . import muse  # noqa: E402,F401
from . import wmdp  # noqa: E402,F401
