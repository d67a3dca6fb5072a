"""`disable_dropout`: every dropout of a model set to probability 0 (``--disable_dropout``, default on);
`has_dropout`: whether any is left.

TRL's `disable_dropout_in_model` zeroes `torch.nn.Dropout` modules. Many transformers models also
apply dropout functionally from a float attribute (Llama/Mistral/Qwen attention's
``attention_dropout``; OPT's ``dropout``, ``activation_dropout`` and attention ``dropout``; ...), which
that misses; this zeroes those attributes too, and the config's dropout fields, so that a model
rebuilt from the config (a sharded reference) has none either.
"""

from __future__ import annotations

import torch


def _is_dropout_name(name: str) -> bool:
    return "dropout" in name or name.endswith("pdrop") or name == "layerdrop"


def disable_dropout(model: torch.nn.Module) -> int:
    """Sets every dropout probability in `model` (modules, float attributes, config) to 0; returns how many
    non-zero ones it found."""
    changed = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            changed += module.p != 0
            module.p = 0.0
        for name, value in list(vars(module).items()):
            if _is_dropout_name(name) and isinstance(value, float) and not isinstance(value, bool):
                changed += value != 0
                setattr(module, name, 0.0)
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "to_dict"):
            for name, value in config.to_dict().items():
                if _is_dropout_name(name) and isinstance(value, float):
                    setattr(config, name, 0.0)
    return int(changed)


def has_dropout(model: torch.nn.Module) -> bool:
    """Whether any dropout probability that `disable_dropout` would zero (module, float attribute, config) is
    not 0."""
    configs = {}
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout) and module.p != 0:
            return True
        if any(_is_dropout_name(name) and isinstance(value, float) and value != 0 for name, value in vars(module).items()):
            return True
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "to_dict"):
            configs[id(config)] = config  # shared by many modules: read each once
    return any(_is_dropout_name(name) and isinstance(value, float) and value != 0
               for config in configs.values() for name, value in config.to_dict().items())
