"""RMU (Li et al. 2024, WMDP, arXiv 2403.03218): steer the hidden states of one layer on forget data
towards a fixed random direction, keep them on retain data.

forget = mean over answer positions and hidden units of (h_theta - c*u)^2,
retain = mean over answer positions and hidden units of (h_theta - h_frozen)^2,
L = gamma * forget + alpha * retain; h = output of decoder layer `rmu_layer` (its own output, also for
the last layer), u uniform in [0,1)^d
normalised, c = `rmu_steering_coeff`. Without PEFT only `mlp.down_proj` of layers rmu_layer-2..rmu_layer
is trained, as the WMDP code does.
"""

from __future__ import annotations

import torch

from ..models import heads
from ..models.layers import decoder_layer_output
from . import losses
from .base import Hyperparameter, Method, MethodSettings, register_method

RMU_LAYER = Hyperparameter(
    "rmu_layer", 7, "RMU: decoder layer whose output is steered; layers rmu_layer-2..rmu_layer have their "
    "mlp.down_proj trained. Default 7 (WMDP RMU code, arXiv 2403.03218, for 7B models).", type=int)
RMU_STEERING_COEFF = Hyperparameter(
    "rmu_steering_coeff", 20.0, "RMU: norm c of the random control vector. Default 20, the default argument of "
    "open-unlearning's RMU trainer (its TOFU RMU config runs 300 with alpha 1000; the WMDP code used 6.5 for "
    "Zephyr-7B): tune it to the model's activation norms.")


def rmu_forget_loss(hidden: torch.Tensor, mask: torch.Tensor, control: torch.Tensor) -> torch.Tensor:
    """Mean over the positions in `mask` and the hidden units of (h - c*u)^2 (`control` = c*u)."""
    selected = losses.upcast(hidden[mask])
    return ((selected - control.to(device=selected.device, dtype=selected.dtype)) ** 2).mean()


def rmu_retain_loss(hidden: torch.Tensor, frozen: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the positions in `mask` and the hidden units of (h - h_frozen)^2."""
    return ((losses.upcast(hidden[mask]) - losses.upcast(frozen[mask]).to(hidden.device)) ** 2).mean()


def _one_logit_row(model) -> dict:
    """RMU reads a decoder layer's output, never the logits: the LM head runs on the last position only where the
    model takes ``logits_to_keep`` (a 7B model's [B, T, 32k] logits would be built and dropped on every forward)."""
    return {"logits_to_keep": 1} if heads.accepts_logits_to_keep(model) else {}


def _hidden(model, part, layer):
    """Decoder layer `layer`'s output (by a forward hook: for the last layer hidden_states[L] is the normed state)."""
    return decoder_layer_output(model, layer, lambda: model(input_ids=part["input_ids"],
                                                            attention_mask=part["attention_mask"],
                                                            **_one_logit_row(model)))


def rmu_term(model, batch, reference, settings, logs):
    part = batch["forget"]
    hidden = _hidden(model, part, settings.rmu_layer)
    return rmu_forget_loss(hidden, part["labels"] != losses.IGNORE_INDEX, settings.rmu_control)


def rmu_retain_term(model, batch, reference, settings):
    part = batch["retain"]
    hidden = _hidden(model, part, settings.rmu_layer)
    frozen = decoder_layer_output(reference.module, settings.rmu_layer,
                                  lambda: reference(part, **_one_logit_row(reference.module)))
    return rmu_retain_loss(hidden, frozen, part["labels"] != losses.IGNORE_INDEX)


def rmu_setup(model, settings: MethodSettings, seed: int, is_peft: bool) -> MethodSettings:
    """Fixes the control vector c*u and, without PEFT, trains only `mlp.down_proj` of layers L-2..L."""
    config = model.config
    num_layers = config.num_hidden_layers
    if not 0 <= settings.rmu_layer < num_layers:
        raise ValueError(
            f"rmu_layer={settings.rmu_layer} but the model has {num_layers} layers: pass --rmu_layer between 0 and "
            f"{num_layers - 1} (the default 7 is for 7B models)."
        )
    generator = torch.Generator().manual_seed(seed)
    direction = torch.rand(config.hidden_size, generator=generator, dtype=torch.float32)
    control = settings.rmu_steering_coeff * direction / direction.norm()
    if not is_peft:
        layers = {str(i) for i in range(max(0, settings.rmu_layer - 2), settings.rmu_layer + 1)}
        for name, param in model.named_parameters():
            parts = name.split(".")
            trainable = "down_proj" in parts and any(
                parts[i] == "layers" and i + 1 < len(parts) and parts[i + 1] in layers for i in range(len(parts))
            )
            param.requires_grad_(trainable)
    return MethodSettings(**{**vars(settings), "rmu_control": control})


register_method(Method("rmu", "RMU (WMDP, arXiv 2403.03218)", rmu_term, retain_term=rmu_retain_term,
                       setup=rmu_setup, hyperparameters=(RMU_LAYER, RMU_STEERING_COEFF)))
