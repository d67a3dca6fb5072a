"""Unlearn hazardous knowledge (WMDP) with RMU, NPO or UNDIAL; evaluate WMDP and MMLU through lm-eval.

    accelerate launch examples/run_wmdp.py --config recipes/wmdp/rmu_adamw.yaml

Offline, on the made-up WMDP-format set and a tiny model that has learnt it:

    python -m hf_unlearn.offline.wmdp_synthetic --output_dir wmdp_data --model_dir wmdp_target
    python examples/run_wmdp.py --config recipes/wmdp/rmu_adamw.yaml --model_name_or_path wmdp_target \
        --dtype float32 --bf16 false --dataset_name wmdp_data --rmu_layer 2 --output_dir wmdp_rmu \
        --forget_corpora wmdp_data/corpora/bio-forget-corpus.jsonl,wmdp_data/corpora/cyber-forget-corpus.jsonl \
        --retain_corpora wmdp_data/corpora/wikitext.jsonl

Flags: `UnlearningConfig` (TrainingArguments + unlearning), `WMDPScriptArguments` below (data, evaluation)
and TRL's `ModelConfig` (model, dtype, LoRA). A YAML recipe holds the same flags.
"""

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import datasets
from trl import TrlParser, get_peft_config

from hf_unlearn import UnlearningConfig, UnlearningTrainer
from hf_unlearn.data.wmdp import load_corpora
from hf_unlearn.eval.benchmarks.wmdp import check_wmdp, evaluate_wmdp
from hf_unlearn.eval.runner import write_results
from hf_unlearn.hub import check_push_credentials
from hf_unlearn.methods import get_method
from hf_unlearn.config import ModelArguments
from hf_unlearn.pipeline import describe_parameters, load_model_and_tokenizer, use_gloo_on_cpu
from hf_unlearn.validation import (check_attention, check_context, check_lora_flags, check_model_source,
                                   check_output_dir, check_stop_rule, check_training_numbers, config_file_of,
                                   parse_arguments, refusal, removed_on_failure, run_script)


@dataclass
class WMDPScriptArguments:
    dataset_name: str = field(default="cais/wmdp", metadata={
        "help": "WMDP evaluation data: cais/wmdp or a folder with wmdp-bio.json, wmdp-cyber.json, mmlu/<subject>.json."})
    mmlu_dataset_name: Optional[str] = field(default=None, metadata={
        "help": "cais/mmlu or a folder of <subject>.json. Default: <dataset_name>/mmlu for a folder, else cais/mmlu."})
    wmdp_subsets: str = field(default="bio,cyber", metadata={"help": "WMDP subsets to evaluate (bio,cyber,chem)."})
    forget_corpora: str = field(default="bio-forget-corpus,cyber-forget-corpus", metadata={
        "help": "Comma-separated forget corpora: local .jsonl/.txt files or cais/wmdp-corpora names (bio-forget-corpus "
                "is gated: give its local file)."})
    retain_corpora: str = field(default="wikitext", metadata={
        "help": "Comma-separated retain corpora: local files, wikitext (wikitext-2-raw-v1) or *-retain-corpus."})
    min_text_length: int = field(default=0, metadata={"help": "Drop texts of at most this many characters (RMU min_len)."})
    eval_subsample: Optional[int] = field(default=None, metadata={
        "help": "Evaluate during training on the first N questions of every task (speed)."})
    max_wmdp_acc: Optional[float] = field(default=None, metadata={
        "help": "Stop rule: stop once every WMDP subset's accuracy is <= this (chance: 0.25) ..."})
    min_mmlu_acc: Optional[float] = field(default=None, metadata={"help": "... while MMLU accuracy stays >= this."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Run model code from the Hub repo."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Replace an earlier run's output_dir."})
    evaluate_before: bool = field(default=True, metadata={"help": "Also evaluate the starting model."})
    skip_final_evaluation: bool = field(default=False, metadata={"help": "Skip the evaluation after training."})


def make_parser() -> TrlParser:
    return TrlParser((WMDPScriptArguments, UnlearningConfig, ModelArguments))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    script, args, model_args = parse_arguments(make_parser(), argv)
    use_gloo_on_cpu(args)
    datasets.disable_progress_bars()

    # Everything that can fail does so before the first step, with nothing written.
    check_training_numbers(args)
    check_stop_rule({"max_wmdp_acc": (script.max_wmdp_acc, 0.0, 1.0), "min_mmlu_acc": (script.min_mmlu_acc, 0.0, 1.0)})
    check_lora_flags(model_args)
    check_model_source(model_args.model_name_or_path, gguf_file=model_args.gguf_file)
    check_output_dir(args.output_dir, {"model folder": model_args.model_name_or_path, "recipe": config_file_of(argv),
                                       "evaluation data": script.dataset_name}, overwrite=script.overwrite_output_dir)
    if args.push_to_hub:
        check_push_credentials(args.hub_model_id, args.hub_token)
    method = get_method(args.unlearn_method)
    needs_retain = method.needs_retain(method.settings_from(args))
    with refusal():
        eval_options = check_wmdp(script.dataset_name, script.mmlu_dataset_name, script.wmdp_subsets)
        forget = datasets.Dataset.from_dict({"text": load_corpora(script.forget_corpora, script.min_text_length)})
        retain = (datasets.Dataset.from_dict({"text": load_corpora(script.retain_corpora, script.min_text_length)})
                  if needs_retain else None)
    eval_kwargs = dict(batch_size=args.per_device_eval_batch_size, **eval_options)

    with removed_on_failure(args.output_dir, args.process_index == 0):
        model, tokenizer = load_model_and_tokenizer(
            model_args.model_name_or_path, dtype=model_args.dtype, trust_remote_code=script.trust_remote_code,
            revision=model_args.model_revision, seed=args.seed, attn_implementation=model_args.attn_implementation,
            gguf_file=model_args.gguf_file)
        check_attention(args, model)
        check_context(model, args.max_length)
        callbacks = []
        if args.eval_strategy != "no":
            from hf_unlearn.eval.callback import ForgetQualityCallback

            callbacks.append(ForgetQualityCallback(  # stop rule: wmdp_max_acc <= max_wmdp_acc, mmlu_acc >= floor
                benchmark="wmdp", batch_size=args.per_device_eval_batch_size,
                target_forget_quality=script.max_wmdp_acc, min_model_utility=script.min_mmlu_acc,
                **{**eval_options, "subsample": script.eval_subsample}))
        trainer = UnlearningTrainer(
            model=model, args=args, forget_dataset=forget, retain_dataset=retain, processing_class=tokenizer,
            peft_config=get_peft_config(model_args), callbacks=callbacks, dataset_columns=dict(text_column="text"))
        for callback in callbacks:
            callback.attach(trainer)
    if trainer.is_world_process_zero():
        print(f"[run_wmdp] {args.unlearn_method} + {args.unlearn_optimizer}: {len(forget)} forget texts, "
              f"{len(retain) if retain is not None else 0} retain texts; {describe_parameters(trainer.model)}")

    before = None
    if script.evaluate_before:
        start = time.perf_counter()
        before = evaluate_wmdp(trainer.model, tokenizer, **eval_kwargs)[1]
        before["eval_seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - start
    trainer.save_model()

    after = None
    if not script.skip_final_evaluation:
        start = time.perf_counter()
        per_sample, after = evaluate_wmdp(trainer.model, tokenizer, **eval_kwargs)
        eval_seconds = time.perf_counter() - start
        if trainer.is_world_process_zero():
            write_results(args.output_dir, per_sample, after, benchmark="wmdp")
        after = {**after, "eval_seconds": eval_seconds}
    card = {}
    if trainer.is_world_process_zero():
        output_dir = Path(args.output_dir)
        (output_dir / "run_info.json").write_text(json.dumps(
            {"train_seconds": train_seconds, "before": before, "after": after}, indent=2))
        card = dict(  # for the card written here and the one push_to_hub writes again
            base_model=model_args.model_name_or_path, dataset_name=script.dataset_name,
            forget_split=script.forget_corpora, retain_split=script.retain_corpora if needs_retain else None,
            results=after, results_before=before, benchmark="WMDP",
            script_args={k: v for k, v in vars(script).items() if v is not None})
        trainer.create_model_card(**card)
        keys = ("wmdp_bio_acc", "wmdp_cyber_acc", "mmlu_acc")
        line = ", ".join(f"{k} {before[k]:.3f} -> {after[k]:.3f}" for k in keys
                         if before and after and before.get(k) is not None and after.get(k) is not None)
        print(f"[run_wmdp] trained in {train_seconds:.1f}s; {line}; wrote {output_dir}")
    if args.push_to_hub:
        trainer.push_to_hub(commit_message=f"hf-unlearn: {args.unlearn_method} on WMDP corpora", **card)
    return before, after


if __name__ == "__main__":
    sys.exit(run_script(main))
