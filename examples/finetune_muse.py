"""Make a MUSE "target" (trained on forget + retain text) or "retrain" model (retain text only) and its evaluation.

    python -m hf_unlearn.offline.muse_synthetic data/muse
    python examples/finetune_muse.py --model_name_or_path tiny-llama --dataset_name data/muse \
        --train_splits forget,retain1,retain2 --output_dir outputs/muse_target --max_length 256 \
        --num_train_epochs 80 --learning_rate 2e-3
    python examples/finetune_muse.py --model_name_or_path tiny-llama --dataset_name data/muse \
        --train_splits retain1,retain2 --output_dir outputs/muse_retrain --max_length 256 \
        --num_train_epochs 80 --learning_rate 2e-3

Documents are cut into windows of `--max_length` tokens and every token is trained (`hf_unlearn.data.text`).
`--model_name_or_path tiny-llama` builds a tokenizer trained on the corpus and a small Llama from scratch
(the same corpus and seed give the same tokenizer, so target and retrain models share it). The run writes
the model, its tokenizer and `muse_eval.json` / `muse_summary.json`: the retrain model's `muse_eval.json`
is the `--retain_reference` of `run_muse.py` (it gives PrivLeak).
"""

import sys
import time
from dataclasses import dataclass, field

import datasets
from transformers import TrainingArguments
from trl import TrlParser

from hf_unlearn.data.muse import load_texts, muse_strings, parse_split
from hf_unlearn.data.text import encode_documents
from hf_unlearn.eval.benchmarks.muse import check_muse, evaluate_muse
from hf_unlearn.eval.runner import write_results
from hf_unlearn.offline.tiny import TINY_PRESET
from hf_unlearn.config import ModelArguments
from hf_unlearn.pipeline import (
    EncodedDataset, describe_parameters, finetune, load_model_and_tokenizer, use_gloo_on_cpu,
)
from hf_unlearn.validation import (
    check_context, config_file_of, parse_arguments, removed_on_failure, run_script, validate_finetune_run,
)


@dataclass
class FinetuneMuseArguments:
    dataset_name: str = field(default="muse-bench/MUSE-News", metadata={"help": "MUSE Hub id or local folder."})
    train_splits: str = field(
        default="forget,retain1,retain2",
        metadata={"help": "Comma-separated text splits to train on: forget,retain1,retain2 (target) or retain1,retain2 "
                          "(retrain). Bare names are raw/<name>."},
    )
    max_length: int = field(default=2048, metadata={"help": "Window length in tokens (MUSE: 2048)."})
    max_new_tokens: int = field(default=128, metadata={"help": "VerbMem continuation length (MUSE: 128)."})
    knowmem_max_new_tokens: int = field(default=32, metadata={"help": "KnowMem answer length (MUSE: 32)."})
    skip_evaluation: bool = field(default=False, metadata={"help": "Do not write muse_eval.json."})
    tiny_size: str = field(default="default", metadata={"help": "tiny-llama preset size: default or demo."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Run model code from the Hub repo (off: safe)."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Replace a non-empty --output_dir."})


def make_parser() -> TrlParser:
    return TrlParser((FinetuneMuseArguments, TrainingArguments, ModelArguments))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    script, args, model_args = parse_arguments(make_parser(), argv)
    use_gloo_on_cpu(args)
    datasets.disable_progress_bars()
    # Every input checked before anything runs, with nothing written.
    resume_from = validate_finetune_run(args, model_args, script.dataset_name, overwrite=script.overwrite_output_dir,
                                        presets=(TINY_PRESET,), config_file=config_file_of(argv))
    splits = [parse_split(name.strip()) for name in script.train_splits.split(",") if name.strip()]
    texts = [text for config, split in splits for text in load_texts(script.dataset_name, f"{config}/{split}")]
    eval_options = None if script.skip_evaluation else check_muse(
        script.dataset_name, verbmem_max_new_tokens=script.max_new_tokens,
        knowmem_max_new_tokens=script.knowmem_max_new_tokens)
    with removed_on_failure(args.output_dir, args.process_index == 0):
        model, tokenizer = load_model_and_tokenizer(
            model_args.model_name_or_path, script.dataset_name, dtype=model_args.dtype,
            trust_remote_code=script.trust_remote_code, revision=model_args.model_revision, seed=args.seed,
            tiny_size=script.tiny_size, attn_implementation=model_args.attn_implementation, gguf_file=model_args.gguf_file,
            tiny_corpus=muse_strings(script.dataset_name) if model_args.model_name_or_path == TINY_PRESET else None,
        )
        check_context(model, script.max_length)
    windows = encode_documents(tokenizer, texts, script.max_length)
    if args.process_index == 0:
        print(f"[finetune_muse] {script.train_splits}: {len(texts)} documents, {len(windows)} windows of <= "
              f"{script.max_length} tokens; {describe_parameters(model)}")
    start = time.perf_counter()
    trainer = finetune(model, tokenizer, EncodedDataset(windows), args, resume_from_checkpoint=resume_from)
    seconds = time.perf_counter() - start
    trainer.save_model()
    tokenizer.save_pretrained(args.output_dir)
    print(f"[finetune_muse] trained in {seconds:.1f}s; mean train loss {trainer.train_output.training_loss:.4f}")
    if eval_options is not None:
        per_sample, summary = evaluate_muse(trainer.model, tokenizer, batch_size=args.per_device_eval_batch_size,
                                            show_progress=not args.disable_tqdm, **eval_options)
        if trainer.is_world_process_zero():
            write_results(args.output_dir, per_sample, summary, "muse")
            print(f"[finetune_muse] VerbMem {summary['forget_verbmem_rouge']:.3f}, KnowMem forget "
                  f"{summary['forget_knowmem_rouge']:.3f} / retain {summary['retain_knowmem_rouge']:.3f}, Min-K% AUC "
                  f"{summary['mia_min_k_auc']:.3f}; wrote {args.output_dir}/muse_eval.json")
    return trainer


if __name__ == "__main__":
    sys.exit(run_script(main))
