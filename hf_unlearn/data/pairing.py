"""The unlearning dataset: forget items paired with retain items (and refusals), and its collator.

One epoch is one pass over the forget set. Forget item i is paired with retain item
``j = rng(seed, epoch, i)``: a function of the index alone, so the pairing is the same for any number of
processes, any batch size, and after a resume.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .formatting import IGNORE_INDEX, EncodedExample, PromptTemplate, encode_qa
from .refusals import refusal_for
from .text import encode_documents, refusal_examples

logger = logging.getLogger(__name__)


class UnlearningPairs(Dataset):
    """Nested examples ``{"forget": ..., "retain": ..., "idk": ...}`` of token ids and labels."""

    def __init__(
        self,
        forget: Sequence[EncodedExample],
        retain: Sequence[EncodedExample] | None = None,
        idk: Sequence[EncodedExample] | None = None,
        seed: int = 42,
    ):
        if len(forget) == 0:
            raise ValueError("The forget set is empty: nothing to unlearn. Check --forget_split.")
        if retain is not None and len(retain) == 0:
            raise ValueError("The retain set is empty. Check --retain_split, or use a method without retain data (ga).")
        if idk is not None and len(idk) != len(forget):
            raise ValueError("idk examples must be one per forget example.")
        self.forget, self.retain, self.idk, self.seed = list(forget), retain, idk, seed
        self.epoch = 0

    @property
    def has_retain(self) -> bool:
        return self.retain is not None

    @property
    def has_idk(self) -> bool:
        return self.idk is not None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def retain_index(self, index: int) -> int:
        return int(np.random.default_rng([self.seed, self.epoch, index]).integers(len(self.retain)))

    def __len__(self) -> int:
        return len(self.forget)

    def __getitem__(self, index: int) -> dict:
        item = {"forget": _as_features(self.forget[index])}
        if self.retain is not None:
            item["retain"] = _as_features(self.retain[self.retain_index(index)])
        if self.idk is not None:
            item["idk"] = _as_features(self.idk[index])
        return item


def _as_features(example: EncodedExample) -> dict:
    return {"input_ids": example.input_ids, "labels": example.labels}


class UnlearningCollator:
    """Pads each part of a nested batch on the right; attention masks come from the true lengths.

    The mask is never derived from ``input_ids != pad_token_id``: with pad = eos that would hide real
    end-of-answer tokens.
    """

    def __init__(self, tokenizer=None, pad_token_id: int | None = None):
        if pad_token_id is None:
            pad_token_id = resolve_pad_token_id(tokenizer)
        self.pad_token_id = pad_token_id

    def pad(self, features: list[dict]) -> dict[str, torch.Tensor]:
        length = max(len(f["input_ids"]) for f in features)
        input_ids = torch.full((len(features), length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), length), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(features), length), dtype=torch.long)
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            input_ids[row, :n] = torch.tensor(f["input_ids"])
            labels[row, :n] = torch.tensor(f["labels"])
            attention_mask[row, :n] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

    def __call__(self, examples: list[dict]) -> dict[str, dict[str, torch.Tensor]]:
        return {part: self.pad([e[part] for e in examples]) for part in examples[0]}


def resolve_pad_token_id(tokenizer) -> int:
    if tokenizer is None:
        raise ValueError("A tokenizer (processing_class) is needed to pad batches.")
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    if tokenizer.eos_token_id is not None:
        # Safe because masks come from lengths, not from comparing ids with the pad id.
        logger.warning("The tokenizer has no pad token; padding with its eos token.")
        return tokenizer.eos_token_id
    raise ValueError(
        "The tokenizer has neither a pad token nor an eos token to pad with: set one, e.g. "
        "tokenizer.pad_token = tokenizer.eos_token, or tokenizer.add_special_tokens({'pad_token': '<pad>'})."
    )


def _check_columns(dataset, name: str, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise ValueError(
            f"The {name} set has no column {', '.join(map(repr, missing))}; columns found: "
            f"{', '.join(dataset.column_names)}. Set --question_column/--answer_column (or --text_column)."
        )


def encode_rows(
    tokenizer, dataset, name: str, question_column: str = "question", answer_column: str = "answer",
    text_column: str | None = None, max_length: int = 512, max_prompt_length: int | None = None,
    template: PromptTemplate | None = None,
) -> list[EncodedExample]:
    """Tokenises a forget/retain set; fails with the rows whose answers do not fit.

    With `text_column`, each row is a document cut into windows of `max_length` tokens, every token
    trained (`hf_unlearn.data.text`): the result has one example per window, not per row.
    """
    if len(dataset) == 0:
        raise ValueError(f"The {name} set is empty.")
    if text_column:
        _check_columns(dataset, name, [text_column])
        encoded = encode_documents(tokenizer, dataset[text_column], max_length)
        if not encoded:
            raise ValueError(f"The {name} set's {text_column!r} column holds only empty documents.")
    else:
        _check_columns(dataset, name, [question_column, answer_column])
        encoded = [
            encode_qa(tokenizer, q, a, max_length, max_prompt_length, template)
            for q, a in zip(dataset[question_column], dataset[answer_column])
        ]
    empty = [i for i, e in enumerate(encoded) if e.num_answer_tokens == 0]
    if empty:
        needed = max(len(encoded[i].input_ids) for i in empty) + 1
        raise ValueError(
            f"{len(empty)} {name} rows have no answer tokens left after truncation to max_length={max_length} "
            f"(rows {empty[:10]}{' ...' if len(empty) > 10 else ''}): their prompts use the whole budget. "
            f"Raise --max_length (at least {needed}) or lower --max_prompt_length."
        )
    return encoded


def warn_on_overlap(forget, retain, columns: Sequence[str]) -> int:
    """Counts forget rows that also appear in the retain set and warns; returns the count."""
    key = lambda ds: zip(*(ds[c] for c in columns))  # noqa: E731
    shared = len(set(key(forget)) & set(key(retain)))
    if shared:
        logger.warning(
            "%d forget rows also appear in the retain set: the retain term will pull them back. "
            "Check that --forget_split and --retain_split are disjoint (forget10 pairs with retain90).", shared,
        )
    return shared


def build_unlearning_dataset(
    tokenizer, forget, retain=None, *, needs_idk: bool = False, question_column: str = "question",
    answer_column: str = "answer", text_column: str | None = None, max_length: int = 512,
    max_prompt_length: int | None = None, seed: int = 42, template: PromptTemplate | None = None,
) -> UnlearningPairs:
    """`UnlearningPairs` from `datasets.Dataset`s of question/answer (or text) rows."""
    resolve_pad_token_id(tokenizer)
    kwargs = dict(question_column=question_column, answer_column=answer_column, text_column=text_column,
                  max_length=max_length, max_prompt_length=max_prompt_length, template=template)
    forget_encoded = encode_rows(tokenizer, forget, "forget", **kwargs)
    retain_encoded = None
    if retain is not None:
        retain_encoded = encode_rows(tokenizer, retain, "retain", **kwargs)
        warn_on_overlap(forget, retain, [text_column] if text_column else [question_column, answer_column])
    idk = None
    if needs_idk and text_column:  # each window's first half is the prompt its refusal answers
        idk = refusal_examples(tokenizer, forget_encoded, [refusal_for(i, seed) for i in range(len(forget_encoded))],
                               max_length)
    elif needs_idk:
        idk = [
            encode_qa(tokenizer, q, refusal_for(i, seed), max_length, max_prompt_length, template)
            for i, q in enumerate(forget[question_column])
        ]
    return UnlearningPairs(forget_encoded, retain_encoded, idk, seed=seed)
