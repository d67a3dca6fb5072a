"""Make a TOFU "target" (trained on `full`) or "retain" model (trained on `retainXX`) and its evaluation.

    python examples/finetune_tofu.py --model_name_or_path tiny-llama --dataset_name ../shared/data/tofu \
        --split retain90 --output_dir outputs/retain90 --num_train_epochs 20 --learning_rate 3e-3

`--model_name_or_path tiny-llama` builds a tokenizer trained on the data and a small Llama from scratch.
The run writes the model, its tokenizer, and `tofu_eval.json` / `tofu_summary.json`: for a retain model,
`tofu_eval.json` is the `--retain_reference` of `run_tofu.py`.
"""

import argparse
import sys
import time
from dataclasses import dataclass, field

import datasets
from transformers import TrainingArguments
from trl import TrlParser

from hf_unlearn.data.formatting import PromptTemplateArguments, resolve_prompt_template
from hf_unlearn.data.tofu import default_splits
from hf_unlearn.eval.benchmarks.tofu import evaluate_tofu
from hf_unlearn.eval.runner import write_results
from hf_unlearn.offline.tiny import TINY_PRESET
from hf_unlearn.config import ModelArguments
from hf_unlearn.pipeline import (
    describe_parameters, finetune, load_model_and_tokenizer, use_gloo_on_cpu, with_general_knowledge,
)
from hf_unlearn.validation import (
    FINETUNE_EPILOG, check_context, config_file_of, load_checked_split, parse_arguments, removed_on_failure, run_script,
    tofu_evaluation_files, validate_finetune_run,
)


@dataclass
class FinetuneTrainingArguments(TrainingArguments, PromptTemplateArguments):
    per_device_eval_batch_size: int = field(default=32, metadata={"help": "Questions per evaluation batch. Default 32."})


@dataclass
class FinetuneArguments:
    dataset_name: str = field(default="locuslab/TOFU", metadata={"help": "Hub id or local folder of TOFU splits."})
    split: str = field(default="full", metadata={"help": "Training split: full (target) or retain90/95/99 (retain)."})
    eval_forget_split: str = field(default="forget10", metadata={"help": "Forget split of the evaluation."})
    max_length: int = field(default=512, metadata={"help": "Max tokens of prompt + answer."})
    max_new_tokens: int = field(default=200, metadata={"help": "Generation length of the evaluation (TOFU: 200)."})
    skip_evaluation: bool = field(default=False, metadata={"help": "Do not write tofu_eval.json."})
    tiny_size: str = field(default="default", metadata={"help": "tiny-llama preset size: default (hidden 256) or demo (128)."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Run model code from the Hub repo (off: safe)."})
    general_knowledge: bool | None = field(
        default=None,
        metadata={"help": "Also train on real_authors + world_facts QA, standing in for the pretraining a real model "
                          "has (model utility scores them). Default: on for tiny-llama (trained from scratch), off "
                          "otherwise."},
    )
    max_train_rows: int | None = field(default=None, metadata={"help": "Train on the first N rows only (quick runs)."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace the contents of a non-empty --output_dir (an earlier run's output)."}
    )


def make_parser() -> TrlParser:
    return TrlParser((FinetuneArguments, FinetuneTrainingArguments, ModelArguments), epilog=FINETUNE_EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    script, args, model_args = parse_arguments(make_parser(), argv)
    use_gloo_on_cpu(args)
    datasets.disable_progress_bars()

    # Every input checked before anything runs, with nothing written.
    resume_from = validate_finetune_run(args, model_args, script.dataset_name, overwrite=script.overwrite_output_dir,
                                        presets=(TINY_PRESET,), config_file=config_file_of(argv))
    rows = load_checked_split(script.dataset_name, script.split, ("question", "answer"), "training", "--split")
    if script.max_train_rows:
        rows = rows.select(range(min(script.max_train_rows, len(rows))))
    evaluate = not script.skip_evaluation and tofu_evaluation_files(
        script.dataset_name, script.eval_forget_split, default_splits(script.eval_forget_split)[1]) is not None
    if not script.skip_evaluation and not evaluate:
        print(f"[finetune_tofu] no TOFU evaluation files in {script.dataset_name}: skipping the evaluation.")

    with removed_on_failure(args.output_dir, args.process_index == 0):
        model, tokenizer = load_model_and_tokenizer(
            model_args.model_name_or_path, script.dataset_name, dtype=model_args.dtype,
            trust_remote_code=script.trust_remote_code, revision=model_args.model_revision, seed=args.seed,
            tiny_size=script.tiny_size, attn_implementation=model_args.attn_implementation, gguf_file=model_args.gguf_file,
        )
        check_context(model, script.max_length)
        template = resolve_prompt_template(tokenizer, model_dir=model_args.model_name_or_path,
                                           **args.prompt_template_fields())
        if script.general_knowledge if script.general_knowledge is not None else model_args.model_name_or_path == TINY_PRESET:
            rows = with_general_knowledge(rows, script.dataset_name)
    if args.process_index == 0:
        print(f"[finetune_tofu] {script.split}: {len(rows)} rows; {describe_parameters(model)}"
              + (f"; resuming from {resume_from}" if resume_from else ""))
    start = time.perf_counter()
    trainer = finetune(model, tokenizer, rows, args, max_length=script.max_length, template=template,
                       resume_from_checkpoint=resume_from)
    seconds = time.perf_counter() - start
    trainer.save_model()
    tokenizer.save_pretrained(args.output_dir)
    if trainer.is_world_process_zero():
        template.save(args.output_dir)  # unlearning and evaluation of this model read it (--prompt_template auto)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    print(f"[finetune_tofu] trained in {seconds:.1f}s; mean train loss {trainer.train_output.training_loss:.4f}"
          + (f", last logged {losses[-1]:.4f}" if losses else ""))

    if evaluate:
        per_sample, summary = evaluate_tofu(
            trainer.model, tokenizer, dataset_name=script.dataset_name, forget_split=script.eval_forget_split,
            holdout_split=default_splits(script.eval_forget_split)[1],
            batch_size=args.per_device_eval_batch_size, max_new_tokens=script.max_new_tokens, template=template,
            show_progress=not args.disable_tqdm,
        )
        if trainer.is_world_process_zero():
            write_results(args.output_dir, per_sample, summary)
            # retain_perturbed rows are the first rows of full, so they are training questions of every split.
            print(f"[finetune_tofu] ROUGE-L recall on training questions (retain_perturbed): "
                  f"{summary['retain_rouge']:.3f}; model utility {summary['model_utility']:.3f}; "
                  f"forget ROUGE {summary['forget_rouge']:.3f}; wrote {args.output_dir}/tofu_eval.json")
    return trainer


if __name__ == "__main__":
    sys.exit(run_script(main))
