"""Loading TOFU (and any other forget/retain data) from the Hub or from a local folder.

`dataset_name` is a Hub id (default `locuslab/TOFU`, whose configs are the split names) or a local
folder of JSON-lines files named like the Hub configs (`forget10.json`, `retain90.json`, ...), such as
`../shared/data/tofu` or the folder written by `hf_unlearn.offline.synthetic`. A split may also be a path
to a single data file.
"""

from __future__ import annotations

from pathlib import Path

import datasets

TOFU_HUB_ID = "locuslab/TOFU"
TOFU_SPLITS = (
    "full", "retain90", "retain95", "retain99", "forget01", "forget05", "forget10",
    "forget01_perturbed", "forget05_perturbed", "forget10_perturbed", "retain_perturbed",
    "real_authors", "real_authors_perturbed", "world_facts", "world_facts_perturbed",
    "holdout01", "holdout05", "holdout10",
)
# forgetXX pairs with retain(100-XX) and holdoutXX.
MATCHING_SPLITS = {f"forget{p}": (f"retain{100 - int(p)}", f"holdout{p}") for p in ("01", "05", "10")}

_LOADERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv", ".arrow": "arrow"}


def _load_file(path: Path) -> datasets.Dataset:
    loader = _LOADERS.get(path.suffix)
    if loader is None:
        raise ValueError(f"Cannot read {path}: supported data files are {', '.join(_LOADERS)}.")
    return datasets.load_dataset(loader, data_files=str(path), split="train")


def load_split(dataset_name: str, split: str) -> datasets.Dataset:
    """One split as a `datasets.Dataset`: from a data file, a local folder, or the Hub."""
    as_file = Path(split)
    if as_file.suffix in _LOADERS and as_file.is_file():
        return _load_file(as_file)
    folder = Path(dataset_name).expanduser()
    if folder.is_dir():
        for suffix in _LOADERS:
            candidate = folder / f"{split}{suffix}"
            if candidate.is_file():
                return _load_file(candidate)
        found = sorted(p.stem for p in folder.iterdir() if p.suffix in _LOADERS)
        raise FileNotFoundError(
            f"No split {split!r} in {folder}: expected {split}.json (JSON lines). Splits found: {', '.join(found) or 'none'}."
        )
    if Path(dataset_name).suffix in _LOADERS or "/" not in dataset_name and Path(dataset_name).exists():
        raise FileNotFoundError(f"--dataset_name {dataset_name!r} is neither a folder nor a Hub id.")
    # Hub: TOFU-style datasets name their splits as configs; others as splits.
    try:
        return datasets.load_dataset(dataset_name, split, split="train")
    except ValueError as config_error:
        if "BuilderConfig" not in str(config_error) and "Unknown" not in str(config_error):
            raise
        return datasets.load_dataset(dataset_name, split=split)


def default_splits(forget_split: str) -> tuple[str | None, str | None]:
    """(retain, holdout) split names that belong with a TOFU forget split, or (None, None)."""
    return MATCHING_SPLITS.get(forget_split, (None, None))
