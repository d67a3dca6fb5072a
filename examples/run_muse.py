"""Unlearn MUSE text (News or Books) with any method x optimizer, evaluate six ways, and optionally push.

    accelerate launch examples/run_muse.py --config recipes/muse/npo_sophia.yaml \
        --model_name_or_path <target model> --retain_reference <retrain model>/muse_eval.json

Flags: those of `run_tofu.py` (`UnlearningConfig`, TRL's `ModelConfig`) with MUSE's data defaults
(`MuseScriptArguments`: --forget_split raw/forget or scal/forget_k or sust/forget_k, --retain_split
raw/retain1). Documents are cut into windows of --max_length tokens, every token trained.
"""

import json
import time
from pathlib import Path

import datasets
from trl import ModelConfig, TrlParser, get_peft_config

from hf_unlearn import UnlearningConfig, UnlearningTrainer
from hf_unlearn.config import MuseScriptArguments
from hf_unlearn.data.muse import load_texts, muse_strings
from hf_unlearn.eval.benchmarks.muse import check_muse, evaluate_muse, model_context, write_results
from hf_unlearn.hub import check_push_credentials
from hf_unlearn.methods.registry import get_method
from hf_unlearn.pipeline import check_output_dir, describe_parameters, load_model_and_tokenizer


def prepare(script, args, model_args):
    """Every check that can fail, before a model step or a file: returns forget/retain texts and eval options."""
    check_output_dir(args.output_dir, model_args.model_name_or_path, script.retain_reference)
    if args.push_to_hub:
        check_push_credentials(args.hub_model_id, args.hub_token)
    method = get_method(args.unlearn_method)
    forget = load_texts(script.dataset_name, script.forget_split)
    retain = None
    if method.needs_retain(method.settings_from(args)):
        if script.retain_split is None:
            raise ValueError(f"{args.unlearn_method} needs retain data: give --retain_split (MUSE: raw/retain1).")
        retain = load_texts(script.dataset_name, script.retain_split)
    eval_options = check_muse(script.dataset_name, retain_reference=script.retain_reference,
                              verbmem_max_new_tokens=script.max_new_tokens,
                              knowmem_max_new_tokens=script.knowmem_max_new_tokens)
    return forget, retain, eval_options


def unlearn(script, args, model_args, forget, retain, eval_options):
    """Loads the model, unlearns `forget` (keeping `retain`), evaluates before/after; returns (trainer, before, after)."""
    model, tokenizer = load_model_and_tokenizer(
        model_args.model_name_or_path, script.dataset_name, dtype=model_args.dtype,
        trust_remote_code=script.trust_remote_code, revision=model_args.model_revision, seed=args.seed,
        tiny_corpus=muse_strings(script.dataset_name) if model_args.model_name_or_path == "tiny-llama" else None,
    )
    context = model_context(model)
    if context is not None and args.max_length > context:
        raise ValueError(f"--max_length {args.max_length} is longer than the model's context ({context} tokens): "
                         f"lower --max_length to at most {context}.")
    as_rows = lambda texts: datasets.Dataset.from_dict({"text": texts}) if texts is not None else None  # noqa: E731
    trainer = UnlearningTrainer(
        model=model, args=args, forget_dataset=as_rows(forget), retain_dataset=as_rows(retain),
        processing_class=tokenizer, peft_config=get_peft_config(model_args), dataset_columns=dict(text_column="text"),
    )
    if trainer.is_world_process_zero():
        print(f"[run_muse] {args.unlearn_method} + {args.unlearn_optimizer} on {script.forget_split}: "
              f"{len(trainer.train_dataset)} windows of <= {args.max_length} tokens; {describe_parameters(trainer.model)}")
    evaluate = lambda: evaluate_muse(trainer.model, tokenizer, batch_size=args.per_device_eval_batch_size,  # noqa: E731
                                     show_progress=not args.disable_tqdm, **eval_options)
    before = evaluate()[1] if script.evaluate_before else None
    start = time.perf_counter()
    trainer.train()
    trainer.train_seconds = time.perf_counter() - start
    trainer.save_model()
    after = None
    if not script.skip_final_evaluation:
        per_sample, after = evaluate()
        if trainer.is_world_process_zero():
            write_results(args.output_dir, per_sample, after)
    return trainer, before, after


def main(argv=None):
    parser = TrlParser((MuseScriptArguments, UnlearningConfig, ModelConfig))
    script, args, model_args = parser.parse_args_and_config(args=argv)
    datasets.disable_progress_bars()
    forget, retain, eval_options = prepare(script, args, model_args)
    trainer, before, after = unlearn(script, args, model_args, forget, retain, eval_options)
    if trainer.is_world_process_zero():
        output_dir = Path(args.output_dir)
        (output_dir / "run_info.json").write_text(json.dumps(
            {"train_seconds": trainer.train_seconds, "before": before, "after": after}, indent=2))
        trainer.card_info = dict(
            base_model=model_args.model_name_or_path, dataset_name=script.dataset_name,
            forget_split=script.forget_split, retain_split=script.retain_split if retain is not None else None,
            results=after, results_before=before,
            script_args={k: v for k, v in vars(script).items() if v is not None},
        )
        trainer.create_model_card()
        keys = ("forget_verbmem_rouge", "forget_knowmem_rouge", "retain_knowmem_rouge", "privleak")
        summary = ", ".join(f"{k}={after[k]:.4g}" for k in keys if after and after.get(k) is not None)
        print(f"[run_muse] trained in {trainer.train_seconds:.1f}s; {summary}; wrote {output_dir}")
    if args.push_to_hub:
        trainer.push_to_hub(commit_message=f"hf-unlearn: {args.unlearn_method} on MUSE {script.forget_split}")
    return after


if __name__ == "__main__":
    main()
