"""A tiny Llama-architecture model and a byte-level BPE tokenizer, built from scratch locally.

Used by the tests, the CPU examples and quick experiments: nothing is downloaded.  The
tokenizer is trained on the strings of a TOFU-format folder (real or synthetic, see
:mod:`hf_unlearn.offline.synthetic`) and the model is a randomly initialised
:class:`~transformers.LlamaForCausalLM` sized so that it can memorise the synthetic data on a
CPU in minutes.

Both objects are ordinary Hugging Face objects: ``save_pretrained`` writes a folder that
``AutoTokenizer.from_pretrained`` / ``AutoModelForCausalLM.from_pretrained`` load back.

Parameter count of :func:`build_tiny_llama` (tied embeddings, ``num_key_value_heads =
num_attention_heads``, no biases), with V = vocabulary, h = hidden size, i = intermediate
size, L = layers::

    V*h  +  L * (4*h*h + 3*h*i + 2*h)  +  h

For the defaults (V = 4096, h = 256, i = 688, L = 4) that is
1,048,576 + 4 * 791,040 + 256 = 4,212,992 parameters (about 4.2 M).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

__all__ = [
    "TINY_PRESET",
    "BOS_TOKEN",
    "EOS_TOKEN",
    "PAD_TOKEN",
    "UNK_TOKEN",
    "train_tokenizer",
    "tofu_corpus",
    "build_tiny_llama",
    "tiny_llama_num_parameters",
    "make_tiny_model_and_tokenizer",
]

#: Name accepted by the example scripts for ``--model_name_or_path`` to build this model.
TINY_PRESET = "tiny-llama"

BOS_TOKEN = "<s>"
EOS_TOKEN = "</s>"
PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
SPECIAL_TOKENS = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN)


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 4096,
    min_frequency: int = 2,
    model_max_length: int = 512,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``texts``.

    Special tokens: ``<pad>`` (id 0), ``<s>`` (BOS, id 1), ``</s>`` (EOS, id 2), ``<unk>``
    (id 3).  With ``add_special_tokens=True`` a BOS is prepended (Llama style; no EOS is
    appended -- data collators add it to answers).  All 256 byte symbols are in the base
    alphabet, so any text encodes and ``decode(..., skip_special_tokens=True)`` gives it back
    exactly.  The vocabulary may come out smaller than ``vocab_size`` on a small corpus; use
    ``len(tokenizer)``.
    """
    tok = Tokenizer(models.BPE(unk_token=UNK_TOKEN))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    bos_id = tok.token_to_id(BOS_TOKEN)
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{BOS_TOKEN} $A",
                pair=f"{BOS_TOKEN} $A {BOS_TOKEN}:1 $B:1",
                special_tokens=[(BOS_TOKEN, bos_id)],
            ),
        ]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
        padding_side="right",
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )
    return fast


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def tofu_corpus(data_dir: str | os.PathLike) -> list[str]:
    """Every string in the JSON-lines files (``*.json``) of a TOFU-format folder.

    Questions, answers, paraphrases, perturbed answers and multiple-choice options alike
    (any string or list-of-strings value), files in sorted name order, rows in file order.
    """
    files = sorted(Path(data_dir).glob("*.json"))
    if not files:
        raise FileNotFoundError(f"no *.json files in {data_dir}")
    out: list[str] = []
    for path in files:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                row = json.loads(line)
                for value in row.values():
                    out.extend(_strings(value))
    return out


def tiny_llama_num_parameters(
    vocab_size: int,
    hidden_size: int = 256,
    num_hidden_layers: int = 4,
    intermediate_size: int = 688,
) -> int:
    """Parameter count of :func:`build_tiny_llama` (tied embeddings, full-size K/V heads)."""
    h, i = hidden_size, intermediate_size
    per_layer = 4 * h * h + 3 * h * i + 2 * h
    return vocab_size * h + num_hidden_layers * per_layer + h


def build_tiny_llama(
    tokenizer,
    hidden_size: int = 256,
    num_hidden_layers: int = 4,
    num_attention_heads: int = 4,
    intermediate_size: int = 688,
    max_position_embeddings: int = 512,
    seed: int = 0,
    **overrides: Any,
) -> LlamaForCausalLM:
    """A randomly initialised float32 Llama with tied embeddings, sized for ``tokenizer``.

    ``intermediate_size`` defaults to 8/3 * 256 rounded up to a multiple of 16.  Weights are
    initialised under ``torch.manual_seed(seed)`` inside :func:`torch.random.fork_rng`, so
    the same seed gives the same weights and the caller's global RNG state is unchanged.
    Extra keyword arguments override :class:`~transformers.LlamaConfig` fields.
    With the defaults and a 4096-token vocabulary: 4,212,992 parameters.
    """
    cfg: dict[str, Any] = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_attention_heads,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        hidden_act="silu",
        rms_norm_eps=1e-6,
        attention_bias=False,
        mlp_bias=False,
        use_cache=True,
    )
    cfg.update(overrides)
    config = LlamaConfig(**cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model = model.to(torch.float32)
    gen = model.generation_config
    gen.bos_token_id = tokenizer.bos_token_id
    gen.eos_token_id = tokenizer.eos_token_id
    gen.pad_token_id = tokenizer.pad_token_id
    return model


def make_tiny_model_and_tokenizer(
    data_dir: str | os.PathLike,
    vocab_size: int = 4096,
    **model_kwargs: Any,
) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """Train a tokenizer on :func:`tofu_corpus` of ``data_dir`` and build a tiny Llama for it."""
    tokenizer = train_tokenizer(tofu_corpus(data_dir), vocab_size=vocab_size)
    model = build_tiny_llama(tokenizer, **model_kwargs)
    return model, tokenizer
