"""The steps the example scripts and the demo share: load or build a model, fine-tune it on TOFU
(answer-only loss). The checks of inputs and of the output folder live in `validation.py`.

Fine-tuning uses the same `encode_qa` as unlearning and evaluation, so the target model is trained on
exactly the tokens that are later forgotten and scored.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import datasets
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

from .data.formatting import encode_qa
from .data.pairing import UnlearningCollator, resolve_pad_token_id
from .data.tofu import TOFU_SPLITS, load_split
from .models.gguf import gguf_source, load_gguf
from .offline.tiny import TINY_PRESET, build_tiny_llama, train_tokenizer
from .saving import ReliableSaveMixin
from .validation import RunInputError

logger = logging.getLogger(__name__)

# Sizes of the built-in `tiny-llama` preset: "default" is the benchmark's model (hidden 256, 4 layers),
# "demo" a 4x cheaper one that memorises the synthetic set on 2 CPU cores in about a minute.
TINY_SIZES = {
    "default": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=688),
    "demo": dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=344),
}


def use_gloo_on_cpu(args: TrainingArguments) -> bool:
    """Several processes on a CPU-only machine need a CPU process group, which accelerate's config files cannot
    ask for. DeepSpeed needs `--ddp_backend gloo` (without it DeepSpeed fails later with a bare batch-size
    mismatch); plain data parallel needs `--use_cpu true` (without it every process trains alone, as rank 0,
    into the same folder). When the user chose neither, choose for them (one line says so) and set the devices
    up again. True if it did."""
    deepspeed = bool(args.deepspeed) or os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    if int(os.environ.get("WORLD_SIZE", "1")) < 2 or torch.cuda.is_available():
        return False
    if deepspeed and args.ddp_backend is None:
        args.ddp_backend = "gloo"
        message = "DeepSpeed on CPU: using --ddp_backend gloo (set --ddp_backend to choose another)."
    elif not deepspeed and not args.use_cpu:
        args.use_cpu = True
        message = "several processes on a CPU-only machine: using --use_cpu true (one process group over gloo)."
    else:
        return False
    args.__dict__.pop("_setup_devices", None)  # cached by TrainingArguments with the old settings
    _ = args.device
    if args.process_index == 0:
        print(f"[hf-unlearn] {message}")
    return True


def tofu_strings(dataset_name: str) -> list[str]:
    """Every question/answer string of the TOFU splits found at `dataset_name` (tokenizer corpus)."""
    strings = []
    for split in TOFU_SPLITS:
        try:
            rows = load_split(dataset_name, split)
        except (FileNotFoundError, ValueError):
            continue
        for column in rows.column_names:
            for value in rows[column]:
                strings.extend(value if isinstance(value, list) else [value])
    if not strings:
        raise FileNotFoundError(f"No TOFU splits found at {dataset_name} to train the tiny tokenizer on.")
    return [s for s in strings if isinstance(s, str)]


def load_model_and_tokenizer(model_name_or_path: str, dataset_name: str | None = None, *, dtype: str | None = None,
                             trust_remote_code: bool = False, revision: str = "main", seed: int = 0,
                             tiny_vocab_size: int = 4096, tiny_size: str = "default",
                             attn_implementation: str | None = None, tiny_corpus: list[str] | None = None,
                             gguf_file: str | None = None):
    """A model and its tokenizer from a Hub id or local folder, a GGUF file (``model.gguf``, or a folder plus
    `gguf_file`; dequantized, see `hf_unlearn.models.gguf`), or the built-in `tiny-llama` preset (a byte-level
    BPE tokenizer trained on `tiny_corpus`, by default `dataset_name`'s TOFU strings, and a small random Llama)."""
    if model_name_or_path == TINY_PRESET:
        if dataset_name is None and tiny_corpus is None:
            raise ValueError("The tiny-llama preset trains its tokenizer on the data: give --dataset_name.")
        corpus = tiny_corpus if tiny_corpus is not None else tofu_strings(dataset_name)
        tokenizer = train_tokenizer(corpus, vocab_size=tiny_vocab_size)
        if tiny_size not in TINY_SIZES:
            raise ValueError(f"Unknown tiny size {tiny_size!r}; known: {', '.join(TINY_SIZES)}.")
        attention = {"attn_implementation": attn_implementation} if attn_implementation else {}
        return build_tiny_llama(tokenizer, seed=seed, **TINY_SIZES[tiny_size], **attention), tokenizer
    torch_dtype = getattr(torch, dtype) if dtype not in (None, "auto") else dtype
    gguf = gguf_source(model_name_or_path, gguf_file)
    if gguf is not None:
        model, tokenizer = load_gguf(*gguf, dtype=torch_dtype if torch_dtype != "auto" else None,
                                     attn_implementation=attn_implementation)
        check_vocabulary(model, tokenizer)
        return model, tokenizer
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_name_or_path, revision=revision,
                                                  trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(model_name_or_path, revision=revision, dtype=torch_dtype,
                                                     trust_remote_code=trust_remote_code,
                                                     attn_implementation=attn_implementation)
    except (OSError, ValueError) as err:  # a folder or id that does not hold a loadable model, a bad loading flag
        local = Path(model_name_or_path).expanduser().exists()
        cause = ("the folder is incomplete or damaged." if local else
                 "it is not a local folder, and the Hugging Face Hub could not provide it (offline, a typo in the id, "
                 "or a gated repo: `hf auth login`). Give a local folder or check the id.")
        if isinstance(err, ValueError):
            cause = "a loading flag is not accepted."
        raise RunInputError(f"Could not load the model {model_name_or_path!r}: {cause} ({type(err).__name__}: "
                            f"{str(err).splitlines()[0][:300]})") from err
    check_vocabulary(model, tokenizer)
    if Path(model_name_or_path).expanduser().is_dir():
        # Saved adapters (adapter_config.json) name their base by this: absolute, it works from any folder, not
        # only from the one the run was launched in.
        model.name_or_path = model.config._name_or_path = str(Path(model_name_or_path).expanduser().resolve())
    return model, tokenizer


def with_general_knowledge(rows: datasets.Dataset, dataset_name: str) -> datasets.Dataset:
    """`rows` plus the real-author and world-fact QA pairs.

    A model trained from scratch knows nothing of real authors or world facts, so three of model
    utility's nine statistics (and with them the harmonic mean) would be zero; a real TOFU model has
    them from pretraining. Target and retain models both get them, so forget quality is unaffected.
    """
    extra = [load_split(dataset_name, split).select_columns(["question", "answer"])
             for split in ("real_authors", "world_facts")]
    return datasets.concatenate_datasets([rows.select_columns(["question", "answer"]), *extra])


def check_vocabulary(model, tokenizer) -> None:
    weight = model.get_input_embeddings().weight
    embeddings = getattr(weight, "ds_shape", weight.shape)[0]  # ZeRO-3 partitions weights to 0 rows
    if len(tokenizer) > embeddings:
        raise ValueError(
            f"The tokenizer has {len(tokenizer)} tokens but the model's embedding matrix has {embeddings} rows: they do "
            "not belong together. Load the tokenizer saved with this model (same --model_name_or_path)."
        )


class EncodedDataset(torch.utils.data.Dataset):
    """Already tokenised examples (`EncodedExample`: input ids and labels), e.g. text windows."""

    def __init__(self, examples):
        self.examples = list(examples)

    def __len__(self):
        return len(self.examples)

    def __getitem__(self, index):
        example = self.examples[index]
        return {"input_ids": example.input_ids, "labels": example.labels}


class AnswerOnlyDataset(EncodedDataset):
    """Question/answer rows tokenised by `encode_qa`; the loss sees answer tokens only."""

    def __init__(self, tokenizer, rows: datasets.Dataset, max_length: int = 512,
                 question_column: str = "question", answer_column: str = "answer", template=None):
        resolve_pad_token_id(tokenizer)
        super().__init__(encode_qa(tokenizer, q, a, max_length, template=template)
                         for q, a in zip(rows[question_column], rows[answer_column]))


class FlatCollator(UnlearningCollator):
    def __call__(self, examples):
        return self.pad(examples)


class FinetuneTrainer(ReliableSaveMixin, Trainer):
    """`Trainer` with the library's atomic saves, checkpoint recipes and resume checks (`saving.py`)."""


def finetune(model, tokenizer, rows: datasets.Dataset | EncodedDataset, args: TrainingArguments, max_length: int = 512,
             template=None, resume_from_checkpoint: str | None = None) -> Trainer:
    """Trains `model` on `rows` with the loss on answer tokens only (TOFU's fine-tuning), in the prompt
    format `template` (default auto), or on an `EncodedDataset`'s labels (MUSE: text windows, every token);
    `resume_from_checkpoint` continues a checkpoint of the same run."""
    dataset = rows if isinstance(rows, EncodedDataset) else AnswerOnlyDataset(tokenizer, rows, max_length,
                                                                               template=template)
    trainer = FinetuneTrainer(model=model, args=args, train_dataset=dataset,
                      data_collator=FlatCollator(tokenizer), processing_class=tokenizer)
    trainer.train_output = trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    return trainer


def describe_parameters(model) -> str:
    # ZeRO-3 leaves each rank an empty placeholder: `ds_numel` is the parameter's true size.
    sizes = [(getattr(p, "ds_numel", p.numel()), p.requires_grad) for p in model.parameters()]
    total = sum(n for n, _ in sizes)
    trainable = sum(n for n, grad in sizes if grad)
    return f"{total / 1e6:.2f}M parameters ({trainable / 1e6:.2f}M trainable)"
