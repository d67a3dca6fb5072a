"""Loading MUSE (Shi et al. 2024, "MUSE: Machine Unlearning Six-Way Evaluation") from the Hub or a folder.

`dataset_name` is a Hub id (`muse-bench/MUSE-News`, `muse-bench/MUSE-Books`, whose configs and
splits are below) or a local folder in the layout of MUSE's GitHub release, ``<dir>/<config>/<split>.json``
(a JSON array of strings for raw/privleak/scal/sust, of objects for verbmem/knowmem) or
``<dir>/<config>/<split>.txt`` (plain text: the whole file is one document). The release's own
names are accepted too: ``knowmem/retain2_qa.json`` for ``retain_qa`` (and ``retain2_qa_icl``),
``privleak/retain2.json`` for ``privleak/retain``.

========  ===============================================  ====================
config    splits                                           columns
========  ===============================================  ====================
raw       forget, retain1, retain2, holdout                text
verbmem   forget                                           prompt, gt
knowmem   forget_qa, retain_qa, forget_qa_icl,             question, answer
          retain_qa_icl
privleak  forget, retain, holdout                          text
scal      forget_1 ... forget_4 (nested)                   text
sust      forget_1 ... forget_4 (pairwise disjoint)        text
========  ===============================================  ====================

A split is named ``config/split`` (``raw/forget``, ``sust/forget_2``); a bare name means ``raw/<name>``.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets

from ..validation import read_text

MUSE_HUB_IDS = ("muse-bench/MUSE-News", "muse-bench/MUSE-Books")
MUSE_SPLITS: dict[str, tuple[str, ...]] = {
    "raw": ("forget", "retain1", "retain2", "holdout"),
    "verbmem": ("forget",),
    "knowmem": ("forget_qa", "retain_qa", "forget_qa_icl", "retain_qa_icl"),
    "privleak": ("forget", "retain", "holdout"),
    "scal": ("forget_1", "forget_2", "forget_3", "forget_4"),
    "sust": ("forget_1", "forget_2", "forget_3", "forget_4"),
}
MUSE_COLUMNS: dict[str, tuple[str, ...]] = {
    "raw": ("text",), "verbmem": ("prompt", "gt"), "knowmem": ("question", "answer"),
    "privleak": ("text",), "scal": ("text",), "sust": ("text",),
}
# Names the GitHub release uses for some splits (ours first, then the release's).
RELEASE_NAMES: dict[tuple[str, str], tuple[str, ...]] = {
    ("knowmem", "retain_qa"): ("retain2_qa",),
    ("knowmem", "retain_qa_icl"): ("retain2_qa_icl",),
    ("privleak", "retain"): ("retain2",),
}
_SUFFIXES = (".json", ".txt")


def parse_split(name: str, default_config: str = "raw") -> tuple[str, str]:
    """``"sust/forget_2"`` -> ``("sust", "forget_2")``; ``"forget"`` -> ``("raw", "forget")``; checked."""
    config, _, split = name.rpartition("/")
    config = config or default_config
    check_split(config, split)
    return config, split


def check_split(config: str, split: str) -> None:
    if config not in MUSE_SPLITS:
        raise ValueError(f"Unknown MUSE config {config!r}; MUSE configs: {', '.join(MUSE_SPLITS)}.")
    if split not in MUSE_SPLITS[config]:
        raise ValueError(
            f"Unknown split {split!r} of MUSE config {config!r}; its splits: {', '.join(MUSE_SPLITS[config])} "
            f"(write them as {config}/<split>)."
        )


def _read_local(path: Path, config: str) -> list[dict]:
    columns = MUSE_COLUMNS[config]
    if path.suffix == ".txt":
        if columns != ("text",):
            raise ValueError(f"{path}: a .txt file holds plain text, but {config} rows need {', '.join(columns)}.")
        return [{"text": read_text(path, "MUSE data file")}]
    try:
        data = json.loads(read_text(path, "MUSE data file"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not a JSON array (MUSE's release layout): {error}.") from None
    if not isinstance(data, list):
        raise ValueError(f"{path} holds a JSON {type(data).__name__}; MUSE's release layout is a JSON array.")
    rows = []
    for i, item in enumerate(data):
        if isinstance(item, str) and columns == ("text",):
            rows.append({"text": item})
        elif isinstance(item, dict):
            rows.append(item)
        else:
            kind = "strings" if columns == ("text",) else f"objects with {', '.join(columns)}"
            raise ValueError(f"{path}, item {i}: expected {kind}, got {type(item).__name__}.")
    return rows


def _local_file(folder: Path, config: str, split: str) -> Path:
    sub = folder / config
    for name in (split, *RELEASE_NAMES.get((config, split), ())):
        for suffix in _SUFFIXES:
            if (sub / f"{name}{suffix}").is_file():
                return sub / f"{name}{suffix}"
    if not sub.is_dir():
        found = sorted(p.name for p in folder.iterdir() if p.is_dir())
        raise FileNotFoundError(
            f"No MUSE config folder {config!r} in {folder}: expected {folder}/{config}/{split}.json "
            f"(MUSE's GitHub release layout). Config folders found: {', '.join(found) or 'none'}."
        )
    found = sorted(p.stem for p in sub.iterdir() if p.suffix in _SUFFIXES)
    raise FileNotFoundError(
        f"No split {split!r} in {sub}: expected {split}.json or {split}.txt. Splits found there: "
        f"{', '.join(found) or 'none'}."
    )


def _check_rows(ds: datasets.Dataset, config: str, split: str, where: str) -> datasets.Dataset:
    if len(ds) == 0:
        raise ValueError(f"MUSE {config}/{split} at {where} is empty.")
    missing = [c for c in MUSE_COLUMNS[config] if c not in ds.column_names]
    if missing:
        raise ValueError(
            f"MUSE {config}/{split} at {where} has no column {', '.join(map(repr, missing))} (columns found: "
            f"{', '.join(ds.column_names) or 'none'}); {config} rows need {', '.join(MUSE_COLUMNS[config])}."
        )
    for column in MUSE_COLUMNS[config]:
        bad = [i for i, value in enumerate(ds[column]) if not isinstance(value, str)]
        if bad:
            raise ValueError(f"MUSE {config}/{split} at {where}: rows {bad[:10]} have no string {column!r}.")
    return ds.select_columns(list(MUSE_COLUMNS[config]))


def load_muse_split(dataset_name: str, name: str, default_config: str = "raw") -> datasets.Dataset:
    """One MUSE split (``config/split``) as a `datasets.Dataset` with exactly the config's columns."""
    config, split = parse_split(name, default_config)
    folder = Path(dataset_name).expanduser()
    if folder.is_dir():
        path = _local_file(folder, config, split)
        return _check_rows(datasets.Dataset.from_list(_read_local(path, config)), config, split, str(path))
    if folder.exists() or "/" not in dataset_name:
        raise FileNotFoundError(f"--dataset_name {dataset_name!r} is neither a MUSE folder nor a Hub id "
                                f"({' or '.join(MUSE_HUB_IDS)}).")
    try:
        ds = datasets.load_dataset(dataset_name, config, split=split)
    except ValueError as error:  # a Hub dataset without this config/split names what it has
        raise ValueError(f"{dataset_name} has no MUSE split {config}/{split}: {error}") from None
    return _check_rows(ds, config, split, dataset_name)


def load_texts(dataset_name: str, name: str) -> list[str]:
    """The documents of a text split (raw, privleak, scal, sust)."""
    config, split = parse_split(name)
    if MUSE_COLUMNS[config] != ("text",):
        raise ValueError(f"{config}/{split} holds {', '.join(MUSE_COLUMNS[config])} rows, not text: forget and "
                         "retain corpora are raw, scal or sust splits.")
    return list(load_muse_split(dataset_name, name)["text"])


def muse_strings(dataset_name: str) -> list[str]:
    """Every string of the MUSE splits found at `dataset_name` (the tiny tokenizer's corpus)."""
    strings = []
    for config, splits in MUSE_SPLITS.items():
        for split in splits:
            try:
                rows = load_muse_split(dataset_name, f"{config}/{split}")
            except (FileNotFoundError, ValueError):
                continue
            for column in rows.column_names:
                strings.extend(rows[column])
    if not strings:
        raise FileNotFoundError(f"No MUSE splits found at {dataset_name} to train the tiny tokenizer on.")
    return strings
