"""WMDP unlearning corpora: forget and retain texts from the Hub or from local files.

A corpus name is one of:

* a local file: ``.jsonl`` / ``.json`` (rows with a ``text`` field, as cais/wmdp-corpora) or ``.txt`` (one
  document per non-empty line, as the RMU code reads its corpora);
* ``bio-forget-corpus``: the gated Hub dataset ``cais/wmdp-bio-forget-corpus`` (request access, or give
  its local file, e.g. ``bio_remove_dataset.jsonl``);
* ``cyber-forget-corpus``, ``bio-retain-corpus``, ``cyber-retain-corpus``: configs of ``cais/wmdp-corpora``;
* ``wikitext``: ``wikitext-2-raw-v1``, split test, as the RMU code's retain corpus.

Texts shorter than ``min_length`` characters (RMU's ``min_len``) are dropped (wikitext has many empty lines).
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets

from ..validation import read_text

__all__ = ["HUB_CORPORA", "load_corpus", "load_corpora"]

HUB_CORPORA = {
    "bio-forget-corpus": ("cais/wmdp-bio-forget-corpus", None, "train"),  # gated
    "cyber-forget-corpus": ("cais/wmdp-corpora", "cyber-forget-corpus", "train"),
    "bio-retain-corpus": ("cais/wmdp-corpora", "bio-retain-corpus", "train"),
    "cyber-retain-corpus": ("cais/wmdp-corpora", "cyber-retain-corpus", "train"),
    "wikitext": ("wikitext", "wikitext-2-raw-v1", "test"),  # the RMU code's retain corpus and split
}
LOCAL_SUFFIXES = (".jsonl", ".json", ".txt")


def _local_texts(path: Path) -> list[str]:
    if path.suffix == ".txt":
        return [line for line in read_text(path, "corpus file").splitlines() if line.strip()]
    text = read_text(path, "corpus file")
    try:
        rows = json.loads(text)
        rows = rows if isinstance(rows, list) else [rows]
    except ValueError:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    bad = [i for i, r in enumerate(rows) if not isinstance(r, dict) or not isinstance(r.get("text"), str)]
    if bad:
        found = sorted(rows[bad[0]]) if isinstance(rows[bad[0]], dict) else type(rows[bad[0]]).__name__
        raise ValueError(f"{path}: row {bad[0]} has no string 'text' field (found: {found}); corpus rows are "
                         "{\"text\": ...} as in cais/wmdp-corpora.")
    return [r["text"] for r in rows]


def load_corpus(name: str, min_length: int = 0) -> list[str]:
    """The texts of one corpus (see the module docstring), those shorter than `min_length` characters dropped."""
    path = Path(name).expanduser()
    if path.suffix in LOCAL_SUFFIXES or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"Corpus file {name} does not exist.")
        texts = _local_texts(path)
    elif name in HUB_CORPORA:
        repo, config, split = HUB_CORPORA[name]
        try:
            texts = datasets.load_dataset(repo, config, split=split)["text"]
        except Exception as exc:  # offline, gated or absent: say which file to provide instead
            gated = " It is gated: request access on the Hub, or" if name == "bio-forget-corpus" else " Or"
            raise FileNotFoundError(
                f"Could not load corpus {name!r} from the Hub ({repo}{', ' + config if config else ''}, split {split}: "
                f"{type(exc).__name__}).{gated} give a local file instead: a .jsonl with one {{\"text\": ...}} per "
                f"line or a .txt with one document per line."
            ) from exc
    else:
        raise ValueError(
            f"Unknown corpus {name!r}: give a local .jsonl/.json/.txt file or one of {', '.join(HUB_CORPORA)}."
        )
    texts = [t for t in texts if len(t) > min_length and t.strip()]
    if not texts:
        raise ValueError(f"Corpus {name!r} has no text longer than {min_length} characters.")
    return texts


def load_corpora(names: str, min_length: int = 0) -> list[str]:
    """The texts of a comma-separated list of corpora, in order."""
    return [t for name in names.split(",") if name.strip() for t in load_corpus(name.strip(), min_length)]
