"""What each benchmark adds to the one unlearning script (`examples/unlearn.py`): a `ScriptSpec`, registered by
its ``--benchmark`` name, so that the script's skeleton (parse, check, load, callback, trainer, evaluate before,
train, save, evaluate after, results, card, push) is written once and names no benchmark.

``examples/run_tofu.py``, ``run_muse.py`` and ``run_wmdp.py`` are that script with another default benchmark.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .config import MuseScriptArguments, UnlearningScriptArguments, WMDPScriptArguments
from .offline.tiny import TINY_PRESET
from .validation import RUN_TOFU_EPILOG, validate_muse_run, validate_unlearning_run, validate_wmdp_run

__all__ = ["ScriptSpec", "benchmark_of", "card_flags", "get_script_spec", "register_script_spec", "script_spec_names"]


@dataclass(frozen=True)
class ScriptSpec:
    """One benchmark's part of the unlearning script.

    Attributes:
        name: the ``--benchmark`` value that selects it.
        arguments: its script-arguments dataclass (data and evaluation flags; a ``benchmark`` field, whose
            ``none`` keeps the data and skips the evaluation).
        validate: ``validate(script, args, model_args, *, needs_retain, presets, config_file) -> CheckedRun``:
            every check before the model is loaded, nothing written; the forget/retain datasets, the checkpoint to
            resume from, the evaluation options (None: no evaluation).
        columns: the trainer's ``dataset_columns`` from the script flags.
        stop_rule: the script flags holding the callback's target and floor.
        describe: the start line's words on the data (between "method + optimizer" and the parameter count).
        card: the model-card keywords beyond those every run has (base model, data, results, plot).
        summary_keys: the metrics of the last line.
        summary_change: the last line shows them before -> after (else after only).
        pushed: the "on ..." of the push's commit message.
        tiny_corpus: the strings the tiny-llama preset's tokenizer learns (None: --dataset_name's TOFU strings).
        presets: the model presets it accepts.
        timed: keep each evaluation's seconds in its summary (``eval_seconds``).
        parser_options: more `TrlParser` keywords (an epilog).
    """

    name: str
    arguments: type
    validate: Callable
    columns: Callable[[object], dict]
    stop_rule: tuple[str, str]
    describe: Callable
    card: Callable
    summary_keys: tuple[str, ...]
    pushed: Callable[[object], str]
    summary_change: bool = False
    tiny_corpus: Callable[[object], list[str] | None] = lambda script: None
    presets: tuple[str, ...] = (TINY_PRESET,)
    timed: bool = False
    parser_options: dict = field(default_factory=dict)


_SPECS: dict[str, ScriptSpec] = {}


def register_script_spec(spec: ScriptSpec) -> ScriptSpec:
    _SPECS[spec.name] = spec
    return spec


def script_spec_names() -> tuple[str, ...]:
    return tuple(_SPECS)


def get_script_spec(benchmark: str, default: str = "tofu") -> ScriptSpec:
    """The spec of `benchmark`; `default`'s for ``none`` and for a registered benchmark without a spec of its own
    (it is evaluated on the default's data, from the script flags of its options' names)."""
    return _SPECS.get(benchmark, _SPECS[default])


def has_script_spec(benchmark: str) -> bool:
    """Whether `benchmark` brings its own script arguments, checks and training data (else the default's serve)."""
    return benchmark in _SPECS


def benchmark_of(argv, default: str = "tofu") -> str:
    """--benchmark (on the command line or in the --config recipe), read before parsing: it decides the flags."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--benchmark")
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    if known.benchmark is None and known.config and Path(known.config).is_file():
        try:
            recipe = yaml.safe_load(Path(known.config).read_text()) or {}
        except (yaml.YAMLError, UnicodeDecodeError):  # the parser itself reports a bad recipe
            recipe = {}
        return recipe.get("benchmark", default) if isinstance(recipe, dict) else default
    return known.benchmark or default


def card_flags(script) -> dict:
    """The script's flags for the model card: set ones only, local paths by their last part."""
    flags = {}
    for key, value in vars(script).items():
        if value is None or key in ("overwrite_output_dir",):
            continue
        flags[key] = Path(value).name if isinstance(value, str) and Path(value).expanduser().exists() else value
    return flags


def _set_flags(script) -> dict:
    return {k: v for k, v in vars(script).items() if v is not None}


def _tofu_card(script, args, run, trainer) -> dict:
    dtype = str(next(trainer.model.parameters()).dtype).removeprefix("torch.")
    return dict(model_name=args.hub_model_id.split("/")[-1] if args.hub_model_id
                else f"{args.unlearn_method}-{args.unlearn_optimizer}-{Path(script.forget_split).stem}",
                forget_split=script.forget_split, retain_split=run.retain_split,
                script_args={**card_flags(script), "dtype": dtype})


def _muse_tiny_corpus(script):
    from .data.muse import muse_strings

    return muse_strings(script.dataset_name)


register_script_spec(ScriptSpec(
    name="tofu",
    arguments=UnlearningScriptArguments,
    validate=validate_unlearning_run,
    columns=lambda s: dict(question_column=s.question_column, answer_column=s.answer_column, text_column=s.text_column),
    stop_rule=("target_forget_quality", "min_model_utility"),
    describe=lambda script, args, run, trainer: f" on {script.forget_split}: ",
    card=_tofu_card,
    summary_keys=("forget_quality", "model_utility"),
    pushed=lambda script: script.forget_split,
    parser_options=dict(epilog=RUN_TOFU_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter),
))

register_script_spec(ScriptSpec(
    name="muse",
    arguments=MuseScriptArguments,
    validate=validate_muse_run,
    columns=lambda script: dict(text_column="text"),  # the loaded documents' column, whatever --text_column says
    stop_rule=("target_forget_quality", "min_model_utility"),
    describe=lambda script, args, run, trainer: (f" on {script.forget_split}: {len(trainer.train_dataset)} windows of "
                                                 f"<= {args.max_length} tokens; "),
    card=lambda script, args, run, trainer: dict(forget_split=script.forget_split, retain_split=run.retain_split,
                                                 benchmark="MUSE", tags=["muse"], script_args=_set_flags(script)),
    summary_keys=("forget_verbmem_rouge", "forget_knowmem_rouge", "retain_knowmem_rouge", "privleak"),
    pushed=lambda script: f"MUSE {script.forget_split}",
    tiny_corpus=lambda script: _muse_tiny_corpus(script),
))

register_script_spec(ScriptSpec(
    name="wmdp",
    arguments=WMDPScriptArguments,
    validate=validate_wmdp_run,
    columns=lambda script: dict(text_column="text"),
    stop_rule=("max_wmdp_acc", "min_mmlu_acc"),  # every WMDP accuracy <= target while MMLU >= floor
    describe=lambda script, args, run, trainer: (f": {len(run.forget)} forget texts, "
                                                 f"{len(run.retain) if run.retain is not None else 0} retain texts; "),
    card=lambda script, args, run, trainer: dict(forget_split=script.forget_corpora, retain_split=run.retain_split,
                                                 benchmark="WMDP", script_args=_set_flags(script)),
    summary_keys=("wmdp_bio_acc", "wmdp_cyber_acc", "mmlu_acc"),
    summary_change=True,
    pushed=lambda script: "WMDP corpora",
    presets=(),  # the tiny preset learns its tokenizer from TOFU-format data, which a WMDP run has not
    timed=True,
))
