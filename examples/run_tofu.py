"""Unlearn a TOFU forget split with any method x optimizer, evaluate, plot, and optionally push.

    accelerate launch examples/run_tofu.py --config recipes/tofu/npo_sophia.yaml \
        --model_name_or_path <target model> --retain_reference <retain model>/tofu_eval.json

Flags: `UnlearningConfig` (TrainingArguments + unlearning), `UnlearningScriptArguments` (data/eval)
and TRL's `ModelConfig` (model, dtype, LoRA: --use_peft --lora_r 8 ...). A YAML recipe holds the same flags.
"""

import json
import time
from pathlib import Path

import datasets
from trl import ModelConfig, TrlParser, get_peft_config

from hf_unlearn import UnlearningConfig, UnlearningTrainer
from hf_unlearn.config import UnlearningScriptArguments
from hf_unlearn.data.tofu import default_splits, load_split
from hf_unlearn.eval.callback import ForgetQualityCallback
from hf_unlearn.eval.tofu import evaluate_tofu, write_results
from hf_unlearn.hub import check_push_credentials
from hf_unlearn.methods.registry import get_method
from hf_unlearn.pipeline import check_output_dir, describe_parameters, load_model_and_tokenizer, use_gloo_on_cpu
from hf_unlearn.reporting import plot_unlearning


def main(argv=None):
    parser = TrlParser((UnlearningScriptArguments, UnlearningConfig, ModelConfig))
    script, args, model_args = parser.parse_args_and_config(args=argv)
    use_gloo_on_cpu(args)
    datasets.disable_progress_bars()

    # Everything that can fail does so before the first step, with nothing written.
    check_output_dir(args.output_dir, model_args.model_name_or_path, script.retain_reference)
    if args.push_to_hub:
        check_push_credentials(args.hub_model_id, args.hub_token)
    retain_default, holdout_default = default_splits(script.forget_split)
    retain_split = script.retain_split or retain_default
    holdout_split = script.holdout_split or holdout_default
    method = get_method(args.unlearn_method)
    needs_retain = method.needs_retain(method.settings_from(args))
    if needs_retain and retain_split is None:
        raise ValueError(f"{args.unlearn_method} needs retain data: give --retain_split.")

    model, tokenizer = load_model_and_tokenizer(
        model_args.model_name_or_path, script.dataset_name, dtype=model_args.dtype,
        trust_remote_code=script.trust_remote_code, revision=model_args.model_revision, seed=args.seed,
    )
    forget = load_split(script.dataset_name, script.forget_split)
    retain = load_split(script.dataset_name, retain_split) if needs_retain else None
    tofu_eval = script.text_column is None
    eval_kwargs = dict(dataset_name=script.dataset_name, forget_split=script.forget_split,
                       holdout_split=holdout_split, retain_reference=script.retain_reference,
                       batch_size=args.per_device_eval_batch_size, max_new_tokens=script.max_new_tokens)

    callbacks = []
    if tofu_eval and args.eval_strategy != "no":
        callbacks.append(ForgetQualityCallback(
            subsample=script.eval_subsample, target_forget_quality=script.target_forget_quality,
            min_model_utility=script.min_model_utility, **eval_kwargs))
    trainer = UnlearningTrainer(
        model=model, args=args, forget_dataset=forget, retain_dataset=retain, processing_class=tokenizer,
        peft_config=get_peft_config(model_args), callbacks=callbacks,
        dataset_columns=dict(question_column=script.question_column, answer_column=script.answer_column,
                             text_column=script.text_column),
    )
    for callback in callbacks:
        callback.attach(trainer)
    if trainer.is_world_process_zero():
        print(f"[run_tofu] {args.unlearn_method} + {args.unlearn_optimizer} on {script.forget_split}: "
              f"{describe_parameters(trainer.model)}")

    before = evaluate_tofu(trainer.model, tokenizer, template=trainer.prompt_template, **eval_kwargs)[1] if tofu_eval and script.evaluate_before else None
    start = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - start
    trainer.save_model()

    after = None
    if tofu_eval and not script.skip_final_evaluation:
        per_sample, after = evaluate_tofu(trainer.model, tokenizer, template=trainer.prompt_template, **eval_kwargs)
        if trainer.is_world_process_zero():
            write_results(args.output_dir, per_sample, after)
    if trainer.is_world_process_zero():
        output_dir = Path(args.output_dir)
        history = [{"step": h["step"], **h["metrics"]} for h in callbacks[0].history] if callbacks else []
        plot = plot_unlearning(history, output_dir / "unlearning.png", before, after,
                               title=f"{args.unlearn_method} + {args.unlearn_optimizer}") if tofu_eval else None
        (output_dir / "run_info.json").write_text(json.dumps(
            {"train_seconds": train_seconds, "before": before, "after": after}, indent=2))
        trainer.card_info = dict(
            base_model=model_args.model_name_or_path, dataset_name=script.dataset_name,
            forget_split=script.forget_split, retain_split=retain_split if needs_retain else None,
            results=after, results_before=before, plot_file=plot.name if plot else None,
            script_args={k: v for k, v in vars(script).items() if v is not None},
        )
        trainer.create_model_card()
        summary = ", ".join(f"{k}={after[k]:.4g}" for k in ("forget_quality", "model_utility") if after and
                            after.get(k) is not None)
        print(f"[run_tofu] trained in {train_seconds:.1f}s; {summary}; wrote {output_dir}")
    if args.push_to_hub:
        trainer.push_to_hub(commit_message=f"hf-unlearn: {args.unlearn_method} on {script.forget_split}")
    return after


if __name__ == "__main__":
    main()
