"""The decoder layers of a causal LM, and one layer's output captured by a forward hook (RMU's activation)."""

from __future__ import annotations

from typing import Callable

import torch


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The model's stack of decoder layers: the first `ModuleList` with `config.num_hidden_layers` entries
    (`model.layers` of Llama/Mistral/Qwen/Gemma/Phi, `transformer.h` of GPT-2, `gpt_neox.layers`,
    `decoder.layers` of OPT), through PEFT / DDP / DeepSpeed wrappers."""
    inner = model
    while not hasattr(inner, "config") and hasattr(inner, "module"):  # DDP / DeepSpeed engine
        inner = inner.module
    count = inner.config.num_hidden_layers
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return module
    raise ValueError(f"Found no list of {count} decoder layers in {type(inner).__name__}.")


def decoder_layer_output(model: torch.nn.Module, layer: int, forward: Callable[[], object]) -> torch.Tensor:
    """The hidden states that decoder layer `layer` returns while `forward()` runs (its first output), in the
    model's dtype. Unlike ``hidden_states[layer + 1]``, this is the layer's own output for the last layer too,
    where transformers reports the final-normed state instead."""
    captured = []

    def hook(module, args, output):
        captured.append(output[0] if isinstance(output, (tuple, list)) else output)

    handle = decoder_layers(model)[layer].register_forward_hook(hook)
    try:
        forward()
    finally:
        handle.remove()
    if not captured:
        raise RuntimeError(f"Decoder layer {layer} did not run in the forward pass.")
    return captured[-1]
