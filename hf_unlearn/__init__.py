"""hf-unlearn: LLM unlearning on Hugging Face Trainer."""

import importlib

# The public names load on first use (PEP 562): `python -m hf_unlearn.eval` then imports only what an
# evaluation needs, not the trainer's stack (Trainer, peft, datasets, the optimizers): ~2 s of start-up.
_EXPORTS = {
    "HessianRefreshCallback": ".callbacks",
    "UnlearningConfig": ".config",
    "UnlearningCollator": ".data.pairing",
    "UnlearningPairs": ".data.pairing",
    "build_unlearning_dataset": ".data.pairing",
    "METHODS": ".methods",
    "InfluenceStep": ".optim",
    "SophiaG": ".optim",
    "UnlearningTrainer": ".trainer",
}

__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
