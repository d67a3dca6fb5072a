"""Unlearn a TOFU forget split with any method x optimizer, evaluate, plot, and optionally push.

    accelerate launch examples/run_tofu.py --config recipes/tofu/npo_sophia.yaml \
        --model_name_or_path <target model> --retain_reference <retain model>/tofu_eval.json

Flags: `UnlearningConfig` (TrainingArguments + unlearning), `UnlearningScriptArguments` (data/eval)
and TRL's `ModelConfig` (model, dtype, LoRA: --use_peft --lora_r 8 ...). A YAML recipe holds the same flags.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import datasets
from trl import TrlParser, get_peft_config

from hf_unlearn import UnlearningConfig, UnlearningTrainer
from hf_unlearn.config import ModelArguments, UnlearningScriptArguments
from hf_unlearn.eval.benchmarks import get_benchmark
from hf_unlearn.eval.callback import ForgetQualityCallback
from hf_unlearn.eval.runner import write_results
from hf_unlearn.hub import check_push_credentials
from hf_unlearn.methods import get_method
from hf_unlearn.offline.tiny import TINY_PRESET
from hf_unlearn.pipeline import describe_parameters, load_model_and_tokenizer, use_gloo_on_cpu
from hf_unlearn.reporting import plot_unlearning
from hf_unlearn.validation import (
    RUN_TOFU_EPILOG, check_attention, check_context, config_file_of, parse_arguments, removed_on_failure, run_script,
    validate_unlearning_run,
)


def card_flags(script) -> dict:
    """The script's flags for the model card: set ones only, local paths by their last part."""
    flags = {}
    for key, value in vars(script).items():
        if value is None or key in ("overwrite_output_dir",):
            continue
        flags[key] = Path(value).name if isinstance(value, str) and Path(value).expanduser().exists() else value
    return flags


def make_parser() -> TrlParser:
    return TrlParser((UnlearningScriptArguments, UnlearningConfig, ModelArguments), epilog=RUN_TOFU_EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    script, args, model_args = parse_arguments(make_parser(), argv)
    use_gloo_on_cpu(args)
    datasets.disable_progress_bars()

    # Everything that can fail does so here, before any evaluation or training, with nothing written.
    method = get_method(args.unlearn_method)
    run = validate_unlearning_run(script, args, model_args, needs_retain=method.needs_retain(method.settings_from(args)),
                                  presets=(TINY_PRESET,), config_file=config_file_of(argv))
    if args.push_to_hub:
        check_push_credentials(args.hub_model_id, args.hub_token)
    main_process = args.process_index == 0
    for note in run.notes if main_process else ():
        print(f"[run_tofu] {note}")
    benchmark = get_benchmark(script.benchmark) if run.tofu_eval else None
    tofu_eval = benchmark is not None
    show_progress = not args.disable_tqdm
    if tofu_eval:  # the benchmark's own options, checked up front
        eval_kwargs = dict(batch_size=args.per_device_eval_batch_size, show_progress=show_progress, **run.eval_options)

    with removed_on_failure(args.output_dir, main_process):
        model, tokenizer = load_model_and_tokenizer(
            model_args.model_name_or_path, script.dataset_name, dtype=model_args.dtype,
            trust_remote_code=script.trust_remote_code, revision=model_args.model_revision, seed=args.seed,
            attn_implementation=model_args.attn_implementation, gguf_file=model_args.gguf_file,
        )
        check_attention(args, model)
        check_context(model, args.max_length)
        callbacks = []
        if tofu_eval and args.eval_strategy != "no":
            callbacks.append(ForgetQualityCallback(
                benchmark=benchmark, target_forget_quality=script.target_forget_quality,
                min_model_utility=script.min_model_utility, **{**eval_kwargs, "subsample": script.eval_subsample}))
        trainer = UnlearningTrainer(
            model=model, args=args, forget_dataset=run.forget, retain_dataset=run.retain, processing_class=tokenizer,
            peft_config=get_peft_config(model_args), callbacks=callbacks,
            dataset_columns=dict(question_column=script.question_column, answer_column=script.answer_column,
                                 text_column=script.text_column),
        )
        for callback in callbacks:
            callback.attach(trainer)
        if trainer.is_world_process_zero():
            print(f"[run_tofu] {args.unlearn_method} + {args.unlearn_optimizer} on {script.forget_split}: "
                  f"{describe_parameters(trainer.model)}"
                  + (f"; resuming from {run.resume_from}" if run.resume_from else ""))
        before = None
        if tofu_eval and script.evaluate_before:
            before = benchmark.evaluate(trainer.model, tokenizer, template=trainer.prompt_template,
                                        **{**eval_kwargs, "subsample": script.final_eval_subsample})[1]

    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=run.resume_from)
    train_seconds = time.perf_counter() - start
    trainer.save_model()

    after = None
    if tofu_eval and not script.skip_final_evaluation:
        per_sample, after = benchmark.evaluate(trainer.model, tokenizer, template=trainer.prompt_template,
                                               **{**eval_kwargs, "subsample": script.final_eval_subsample})
        if trainer.is_world_process_zero():
            write_results(args.output_dir, per_sample, after, benchmark)
    card = {}
    if trainer.is_world_process_zero():
        output_dir = Path(args.output_dir)
        history = [{"step": h["step"], **h["metrics"]} for h in callbacks[0].history] if callbacks else []
        drawn = any(h.get("forget_quality") is not None for h in [*history, before or {}, after or {}])
        plot = plot_unlearning(history, output_dir / "unlearning.png", before, after,
                               title=f"{args.unlearn_method} + {args.unlearn_optimizer}",
                               subsample=script.eval_subsample, final_subsample=script.final_eval_subsample) \
            if drawn else None
        (output_dir / "run_info.json").write_text(json.dumps(
            {"train_seconds": train_seconds, "before": before, "after": after}, indent=2))
        card = dict(  # for the card written here and the one push_to_hub writes again
            model_name=args.hub_model_id.split("/")[-1] if args.hub_model_id
            else f"{args.unlearn_method}-{args.unlearn_optimizer}-{Path(script.forget_split).stem}",
            base_model=model_args.model_name_or_path, dataset_name=script.dataset_name,
            forget_split=script.forget_split, retain_split=run.retain_split,
            results=after, results_before=before, plot_file=plot.name if plot else None,
            script_args={**card_flags(script), "dtype": str(next(trainer.model.parameters()).dtype).removeprefix("torch.")},
        )
        trainer.create_model_card(**card)
        summary = ", ".join(f"{k}={after[k]:.4g}" for k in ("forget_quality", "model_utility") if after and
                            after.get(k) is not None)
        print(f"[run_tofu] trained in {train_seconds:.1f}s; {summary}; wrote {output_dir}")
    if args.push_to_hub:
        trainer.push_to_hub(commit_message=f"hf-unlearn: {args.unlearn_method} on {script.forget_split}", **card)
    return after


if __name__ == "__main__":
    sys.exit(run_script(main))
