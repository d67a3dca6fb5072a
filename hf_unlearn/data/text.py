"""Text corpora (MUSE raw text, WMDP corpora) cut into training windows.

A document is tokenised without special tokens, closed by EOS, and cut into consecutive chunks.
Each window is ``[c] + chunk`` with ``c`` a context token the window does not train on: BOS when the
tokenizer has one, else the last token of the previous chunk (the first window of a document has
no such token, so it holds ``max_length`` tokens, and the document's very first token, which nothing
precedes, is the only one not trained). The labels are the window's tokens with -100 on ``c`` alone:
no prompt mask, every token is trained, and across the windows of a document each token is a label
exactly once. So a loss on the windows sees every token of the corpus once, whatever ``max_length``.

Unlearning methods see these windows as forget/retain examples whose "answer" is the whole window:
GA/NPO/SimNPO/UNDIAL/KL score every token, RMU steers every token's activations. IdkNLL and IdkDPO need
something to refuse: :func:`refusal_examples` uses each window's first half as the prompt of a refusal.
"""

from __future__ import annotations

from collections.abc import Sequence

from .formatting import IGNORE_INDEX, EncodedExample


def window_ids(ids: Sequence[int], max_length: int, context_id: int | None = None) -> list[EncodedExample]:
    """Windows of at most `max_length` tokens over one tokenised document (see the module docstring)."""
    if max_length < 2:
        raise ValueError(f"max_length must be >= 2 to cut text into windows, got {max_length}.")
    ids = list(ids)
    windows, start = [], 0
    if context_id is None and ids:  # the first window starts the document: nothing to condition on
        first = ids[:max_length]
        windows.append(EncodedExample(first, [IGNORE_INDEX] + first[1:]))
        start = len(first)
    while start < len(ids):
        chunk = ids[start: start + max_length - 1]
        context = context_id if context_id is not None else ids[start - 1]
        windows.append(EncodedExample([context] + chunk, [IGNORE_INDEX] + chunk))
        start += len(chunk)
    return windows


def tokenize_document(tokenizer, text: str) -> list[int]:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids + [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else ids


def encode_documents(tokenizer, texts: Sequence[str], max_length: int) -> list[EncodedExample]:
    """Every document of `texts` tokenised (EOS-closed) and cut into windows of `max_length` tokens."""
    if isinstance(texts, str):
        raise TypeError("encode_documents takes a sequence of documents, not one string.")
    context = tokenizer.bos_token_id
    return [window for text in texts for window in window_ids(tokenize_document(tokenizer, text), max_length, context)]


def refusal_examples(tokenizer, windows: Sequence[EncodedExample], refusals: Sequence[str],
                     max_length: int) -> list[EncodedExample]:
    """IdkNLL/IdkDPO on text: window i's first half (at least its first token) as the prompt, refusal i as the
    answer (EOS-closed, labels on the refusal only), cut to `max_length`."""
    out = []
    for window, refusal in zip(windows, refusals, strict=True):
        prompt = window.input_ids[: max(1, len(window.input_ids) // 2)]
        answer = tokenize_document(tokenizer, " " + refusal)
        answer = answer[: max(1, max_length - len(prompt))]
        prompt = prompt[: max_length - len(answer)]
        out.append(EncodedExample(prompt + answer, [IGNORE_INDEX] * len(prompt) + answer))
    return out
