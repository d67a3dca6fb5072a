"""Shared fixtures: synthetic TOFU data, a tokenizer trained on it, and tiny random Llamas."""

import os
from pathlib import Path

import datasets
import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
datasets.disable_progress_bars()

REPO = Path(__file__).resolve().parents[1]
TOFU_DIR = REPO.parent / "shared" / "data" / "tofu"


@pytest.fixture(scope="session")
def synthetic_splits():
    from hf_unlearn.offline.synthetic import generate_tofu

    return generate_tofu(num_authors=20, questions_per_author=5, seed=0)


@pytest.fixture(scope="session")
def tokenizer(synthetic_splits):
    from hf_unlearn.offline.tiny import train_tokenizer

    texts = [row[k] for rows in synthetic_splits.values() for row in rows for k in ("question", "answer")]
    return train_tokenizer(texts, vocab_size=512)


@pytest.fixture
def make_model(tokenizer):
    from hf_unlearn.offline.tiny import build_tiny_llama

    def make(seed=0, **kw):
        config = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)
        config.update(kw)
        return build_tiny_llama(tokenizer, seed=seed, **config)

    return make


@pytest.fixture
def forget_retain(synthetic_splits):
    return datasets.Dataset.from_list(synthetic_splits["forget10"]), datasets.Dataset.from_list(synthetic_splits["retain90"])


@pytest.fixture
def tofu_dir():
    if not TOFU_DIR.is_dir():
        pytest.skip(f"real TOFU data not found at {TOFU_DIR} (CI has ../shared beside the repo)")
    return TOFU_DIR
