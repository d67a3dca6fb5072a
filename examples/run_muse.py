"""Unlearn MUSE text (News or Books) with any method x optimizer, evaluate six ways, and optionally push.

    accelerate launch examples/run_muse.py --config recipes/muse/npo_sophia.yaml \
        --model_name_or_path <target model> --retain_reference <retrain model>/muse_eval.json

Flags: those of `run_tofu.py` (`UnlearningConfig`, TRL's `ModelConfig`) with MUSE's data defaults
(`MuseScriptArguments`: --forget_split raw/forget or scal/forget_k or sust/forget_k, --retain_split
raw/retain1). Documents are cut into windows of --max_length tokens, every token trained.
"""

import json
import sys
import time
from pathlib import Path

import datasets
from trl import TrlParser, get_peft_config

from hf_unlearn import UnlearningConfig, UnlearningTrainer
from hf_unlearn.config import ModelArguments, MuseScriptArguments
from hf_unlearn.data.muse import muse_strings
from hf_unlearn.eval.benchmarks.muse import MUSE
from hf_unlearn.eval.callback import ForgetQualityCallback
from hf_unlearn.eval.runner import write_results
from hf_unlearn.hub import check_push_credentials
from hf_unlearn.methods import get_method
from hf_unlearn.offline.tiny import TINY_PRESET
from hf_unlearn.pipeline import describe_parameters, load_model_and_tokenizer, use_gloo_on_cpu
from hf_unlearn.validation import (
    check_attention, check_context, config_file_of, parse_arguments, removed_on_failure, run_script, validate_muse_run,
)


def prepare(script, args, model_args, argv):
    """Every check that can fail, before the model is loaded and with nothing written: a `CheckedRun` with the
    forget/retain documents and the MUSE evaluation options."""
    use_gloo_on_cpu(args)
    method = get_method(args.unlearn_method)
    run = validate_muse_run(script, args, model_args, needs_retain=method.needs_retain(method.settings_from(args)),
                            presets=(TINY_PRESET,), config_file=config_file_of(argv))
    if args.push_to_hub:
        check_push_credentials(args.hub_model_id, args.hub_token)
    for note in run.notes if args.process_index == 0 else ():
        print(f"[run_muse] {note}")
    return run


def unlearn(script, args, model_args, run):
    """Loads the model, unlearns `run.forget` (keeping `run.retain`), evaluates before and after (writing
    muse_eval.json / muse_summary.json); returns (trainer, before, after)."""
    show_progress = not args.disable_tqdm
    with removed_on_failure(args.output_dir, args.process_index == 0):
        model, tokenizer = load_model_and_tokenizer(
            model_args.model_name_or_path, script.dataset_name, dtype=model_args.dtype,
            trust_remote_code=script.trust_remote_code, revision=model_args.model_revision, seed=args.seed,
            attn_implementation=model_args.attn_implementation, gguf_file=model_args.gguf_file,
            tiny_corpus=muse_strings(script.dataset_name) if model_args.model_name_or_path == TINY_PRESET else None,
        )
        check_attention(args, model)
        check_context(model, args.max_length)
        evaluating = run.eval_options is not None
        eval_kwargs = dict(batch_size=args.per_device_eval_batch_size, show_progress=show_progress, **(run.eval_options or {}))
        callbacks = [ForgetQualityCallback(
            benchmark=MUSE, target_forget_quality=script.target_forget_quality, min_model_utility=script.min_model_utility,
            **{**eval_kwargs, "subsample": script.eval_subsample})] if evaluating and args.eval_strategy != "no" else []
        trainer = UnlearningTrainer(
            model=model, args=args, forget_dataset=run.forget, retain_dataset=run.retain, processing_class=tokenizer,
            peft_config=get_peft_config(model_args), dataset_columns=dict(text_column="text"), callbacks=callbacks,
        )
        for callback in callbacks:
            callback.attach(trainer)
        if trainer.is_world_process_zero():
            print(f"[run_muse] {args.unlearn_method} + {args.unlearn_optimizer} on {script.forget_split}: "
                  f"{len(trainer.train_dataset)} windows of <= {args.max_length} tokens; "
                  f"{describe_parameters(trainer.model)}" + (f"; resuming from {run.resume_from}" if run.resume_from else ""))
        evaluate = lambda: MUSE.evaluate(trainer.model, tokenizer, **eval_kwargs)  # noqa: E731
        before = evaluate()[1] if evaluating and script.evaluate_before else None
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=run.resume_from)
    trainer.train_seconds = time.perf_counter() - start
    trainer.save_model()
    after = None
    if evaluating and not script.skip_final_evaluation:
        per_sample, after = evaluate()
        if trainer.is_world_process_zero():
            write_results(args.output_dir, per_sample, after, MUSE)
    return trainer, before, after


def make_parser() -> TrlParser:
    return TrlParser((MuseScriptArguments, UnlearningConfig, ModelArguments))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    script, args, model_args = parse_arguments(make_parser(), argv)
    datasets.disable_progress_bars()
    run = prepare(script, args, model_args, argv)
    trainer, before, after = unlearn(script, args, model_args, run)
    card = {}
    if trainer.is_world_process_zero():
        output_dir = Path(args.output_dir)
        (output_dir / "run_info.json").write_text(json.dumps(
            {"train_seconds": trainer.train_seconds, "before": before, "after": after}, indent=2))
        card = dict(  # for the card written here and the one push_to_hub writes again
            base_model=model_args.model_name_or_path, dataset_name=script.dataset_name,
            forget_split=script.forget_split, retain_split=run.retain_split,
            results=after, results_before=before, benchmark="MUSE", tags=["muse"],
            script_args={k: v for k, v in vars(script).items() if v is not None},
        )
        trainer.create_model_card(**card)
        keys = ("forget_verbmem_rouge", "forget_knowmem_rouge", "retain_knowmem_rouge", "privleak")
        summary = ", ".join(f"{k}={after[k]:.4g}" for k in keys if after and after.get(k) is not None)
        print(f"[run_muse] trained in {trainer.train_seconds:.1f}s; {summary}; wrote {output_dir}")
    if args.push_to_hub:
        trainer.push_to_hub(commit_message=f"hf-unlearn: {args.unlearn_method} on MUSE {script.forget_split}", **card)
    return after


if __name__ == "__main__":
    sys.exit(run_script(main))
