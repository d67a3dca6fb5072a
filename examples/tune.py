"""Search an unlearning run's learning rate, length and weights on the forget-quality / model-utility front.

    python examples/tune.py --config recipes/tofu/grad_diff_adamw.yaml --model_name_or_path <target model> \
        --retain_reference <retain model>/tofu_eval.json --hp_trials 16 --output_dir tuned

    python examples/tune.py --benchmark muse --config recipes/muse/npo_adamw.yaml --eval_strategy no \
        --model_name_or_path <target model> --hp_trials 16 --output_dir tuned_muse

Every flag of `examples/run_tofu.py` (with `--benchmark muse`: of `examples/run_muse.py`) sets the fixed part of
the run (method, optimizer, data, batch size, ...); the `--hp_*` flags (`hf_unlearn.tuning.TunerArguments`) set the
search. Each trial trains a fresh copy of the model and is scored by the benchmark (`--eval_subsample N` scores
the first N items of each split): TOFU's forget quality and model utility, or MUSE's VerbMem on forget (lower is
better) and KnowMem on retain.
The folder gets `tuning.db` (the optuna study: the same command continues it), `pareto_front.json` / `.png`,
`trials/` (the front's models) and `chosen_model/` (with every trial's settings in its card).
"""

import argparse
import dataclasses
import shutil
import sys
from pathlib import Path

import datasets
import yaml
from trl import TrlParser, get_peft_config

from hf_unlearn import UnlearningConfig
from hf_unlearn.config import ModelArguments, MuseScriptArguments, UnlearningScriptArguments
from hf_unlearn.data.muse import muse_strings
from hf_unlearn.entry import card_flags
from hf_unlearn.eval.benchmarks import get_benchmark
from hf_unlearn.eval.benchmarks.muse import model_context
from hf_unlearn.methods import get_method
from hf_unlearn.models.dropout import disable_dropout
from hf_unlearn.offline.tiny import TINY_PRESET
from hf_unlearn.pipeline import load_model_and_tokenizer
from hf_unlearn.tuning import (
    STUDY_FILE, TunerArguments, TuningTrainer, import_optuna, run_search, search_config, search_space,
)
from hf_unlearn.validation import (
    RunInputError, check_attention, config_file_of, parse_arguments, removed_on_failure, validate_muse_run,
    validate_unlearning_run,
)


def benchmark_of(argv) -> str:
    """The benchmark a command asks for: --benchmark, else the recipe's `benchmark` (a MUSE recipe, with its
    `knowmem_max_new_tokens`, means muse), else tofu."""
    for i, arg in enumerate(argv):
        if arg == "--benchmark" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--benchmark="):
            return arg.split("=", 1)[1]
    config = config_file_of(argv)
    recipe = yaml.safe_load(Path(config).read_text()) if config and Path(config).is_file() else None
    if isinstance(recipe, dict):
        return recipe.get("benchmark") or ("muse" if "knowmem_max_new_tokens" in recipe else "tofu")
    return "tofu"


def make_parser(benchmark: str = "tofu") -> TrlParser:
    script = MuseScriptArguments if benchmark == "muse" else UnlearningScriptArguments
    return TrlParser((script, UnlearningConfig, ModelArguments, TunerArguments),
                     formatter_class=argparse.RawDescriptionHelpFormatter)


def check_tuner_run(args, script) -> None:
    """Flags that a search cannot honour, refused before anything runs."""
    problems = []
    if args.world_size > 1:
        problems.append("the tuner runs its trials in one process: launch it without several processes "
                        "(python examples/tune.py ..., or accelerate launch --num_processes 1).")
    if args.eval_strategy != "no":
        problems.append("each trial is scored once, after training: drop --eval_strategy (or set it to no).")
    if args.save_strategy != "no":
        problems.append("the tuner resumes trial by trial from its study, not from checkpoints: drop --save_strategy.")
    if args.resume_from_checkpoint:
        problems.append("--resume_from_checkpoint: the same command with the same --output_dir continues a search.")
    if args.push_to_hub:
        problems.append("--push_to_hub: push the chosen model afterwards (huggingface-cli upload <repo> "
                        "<output_dir>/chosen_model).")
    if script.target_forget_quality is not None:
        problems.append("--target_forget_quality/--min_model_utility stop one run; the tuner's floor is "
                        "--hp_min_model_utility.")
    if problems:
        raise RunInputError("Bad inputs:\n- " + "\n- ".join(problems) if len(problems) > 1 else problems[0])


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    muse = benchmark_of(argv) == "muse"
    script, args, model_args, tuner = parse_arguments(make_parser("muse" if muse else "tofu"), argv)
    datasets.disable_progress_bars()
    import_optuna()

    # Everything that can fail does so here, before any evaluation or training, with nothing written.
    check_tuner_run(args, script)
    output_dir = Path(args.output_dir)
    resuming = (output_dir / STUDY_FILE).is_file() and not script.overwrite_output_dir
    method = get_method(args.unlearn_method)
    dims = search_space(args, method, tuner)
    validate = validate_muse_run if muse else validate_unlearning_run
    run = validate(dataclasses.replace(script, overwrite_output_dir=script.overwrite_output_dir or resuming),
                   args, model_args, needs_retain=method.needs_retain(method.settings_from(args)),
                   presets=(TINY_PRESET,), config_file=config_file_of(argv))
    evaluated = run.eval_options is not None if muse else run.tofu_eval
    benchmark = get_benchmark(script.benchmark) if evaluated else None
    if benchmark is None:
        raise RunInputError("The tuner scores every trial with the benchmark: it needs the benchmark's evaluation "
                            "files in --dataset_name (not --benchmark none / --text_column).")
    if benchmark.forget_metric_needs and getattr(script, benchmark.forget_metric_needs) is None:
        raise RunInputError(f"The tuner's first objective is {benchmark.forget_metric}, which needs "
                            f"--{benchmark.forget_metric_needs}.")
    if muse:  # checked by validate_muse_run
        options = {**run.eval_options, "subsample": script.eval_subsample}
    else:
        given = {**vars(script), "holdout_split": run.holdout_split, "subsample": script.eval_subsample}
        options = benchmark.check(**{f.name: given[f.name] for f in dataclasses.fields(benchmark.options)
                                     if f.name in given})
    eval_kwargs = dict(batch_size=args.per_device_eval_batch_size, show_progress=not args.disable_tqdm, **options)
    for note in run.notes:
        print(f"[tune] {note}")
    if script.overwrite_output_dir and output_dir.is_dir():  # a new search: the old study and models go
        for name in (STUDY_FILE, "trials", "chosen_model"):
            path = output_dir / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)

    def load():
        return load_model_and_tokenizer(
            model_args.model_name_or_path, script.dataset_name, dtype=model_args.dtype,
            trust_remote_code=script.trust_remote_code, revision=model_args.model_revision, seed=args.seed,
            attn_implementation=model_args.attn_implementation, gguf_file=model_args.gguf_file,
            tiny_corpus=muse_strings(script.dataset_name) if muse and model_args.model_name_or_path == TINY_PRESET
            else None)

    peft_config = get_peft_config(model_args)

    def model_init():
        """A fresh copy of the starting model for each trial, prepared as UnlearningTrainer prepares its model."""
        model = load()[0]
        if args.disable_dropout:
            disable_dropout(model)
        if peft_config is not None:
            from peft import get_peft_model

            model = get_peft_model(model, peft_config)
        return model

    with removed_on_failure(args.output_dir):
        model, tokenizer = load()
        check_attention(args, model)
        context = model_context(model) if muse else None
        if context is not None and args.max_length > context:
            raise RunInputError(f"--max_length {args.max_length} is longer than the model's context ({context} tokens):"
                                f" lower --max_length to at most {context}.")
        trainer = TuningTrainer(
            model=model, args=args, forget_dataset=run.forget, retain_dataset=run.retain, processing_class=tokenizer,
            peft_config=peft_config, model_init=model_init, benchmark=benchmark, eval_kwargs=eval_kwargs,
            keep_all_models=tuner.hp_keep_all_models, card_flags=card_flags(script),
            dataset_columns=dict(text_column="text") if muse else dict(
                question_column=script.question_column, answer_column=script.answer_column,
                text_column=script.text_column),
        )
        config = search_config(args, model_args, script, dims, benchmark)
        if resuming:
            print(f"[tune] continuing the search in {output_dir}")
    result = run_search(trainer, dims, tuner, config, card=dict(
        base_model=model_args.model_name_or_path, dataset_name=script.dataset_name,
        forget_split=script.forget_split, retain_split=run.retain_split))
    front = [r for r in result["trials"] if r["trial"] in result["front"]]
    print(f"[tune] front ({result['forget_metric']}, {result['utility_metric']}): "
          + "; ".join(f"trial {r['trial']} ({r['forget']:.4g}, {r['utility']:.4g})" for r in front))
    print(f"[tune] chosen: trial {result['chosen_trial']} ({result['chosen_because']}); wrote {output_dir}")
    return result


if __name__ == "__main__":
    main()
