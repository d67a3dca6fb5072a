"""The method registry: one entry per `unlearn_method`, declaring what it needs and how it runs.

Every method computes ``L = gamma * F + alpha * R``: F its forget term (a pure function in
`losses.py`), R the shared retain term (NLL or KL on retain answers). An entry says whether the method
needs a reference model, retain data or refusal answers, so the trainer builds only that.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..models.layers import decoder_layer_output
from . import losses


@dataclass(frozen=True)
class MethodSettings:
    """Resolved hyper-parameters a method reads (no Trainer, no config object)."""

    forget_weight: float = 1.0
    retain_weight: float = 1.0
    retain_loss_type: str = "nll"
    retain_kl_positions: str = "answer"
    npo_beta: float = 0.1
    simnpo_beta: float = 4.5
    simnpo_gamma: float = 0.0
    undial_beta: float = 10.0
    rmu_layer: int = 7
    rmu_steering_coeff: float = 20.0
    rmu_control: torch.Tensor | None = None  # c * u, set up by the rmu entry


Logs = dict[str, torch.Tensor]
ForgetTerm = Callable[[torch.nn.Module, dict, "Callable | None", MethodSettings, Logs], torch.Tensor]


@dataclass(frozen=True)
class UnlearningMethod:
    name: str
    forget_term: ForgetTerm
    paper: str
    forget_uses_reference: bool = False
    uses_retain: bool = True
    needs_idk: bool = False
    default_forget_weight: float = 1.0
    default_retain_weight: float = 1.0
    fixed_retain_loss: str | None = None
    retain_term: Callable | None = None  # replaces the shared retain term (RMU)
    setup: Callable | None = None  # (model, settings, seed, is_peft) -> settings, before the optimizer exists

    def needs_retain(self, settings: MethodSettings) -> bool:
        return self.uses_retain and settings.retain_weight != 0

    def needs_reference(self, settings: MethodSettings) -> bool:
        retain_kl = self.needs_retain(settings) and settings.retain_loss_type == "kl"
        return self.forget_uses_reference or retain_kl or (self.retain_term is not None and self.needs_retain(settings))

    def settings_from(self, config) -> MethodSettings:
        def pick(value, default):
            return default if value is None else value

        return MethodSettings(
            forget_weight=pick(config.forget_weight, self.default_forget_weight),
            retain_weight=pick(config.retain_weight, self.default_retain_weight) if self.uses_retain else 0.0,
            retain_loss_type=self.fixed_retain_loss or config.retain_loss_type,
            retain_kl_positions=getattr(config, "retain_kl_positions", "answer"),
            npo_beta=config.npo_beta, simnpo_beta=config.simnpo_beta, simnpo_gamma=config.simnpo_gamma,
            undial_beta=config.undial_beta, rmu_layer=config.rmu_layer,
            rmu_steering_coeff=config.rmu_steering_coeff,
        )

    def __call__(self, model, batch: dict, reference, settings: MethodSettings) -> tuple[torch.Tensor, Logs]:
        """Loss and its detached terms (`forget_loss`, `retain_loss`, ...) for one nested batch."""
        logs: Logs = {}
        forget = self.forget_term(model, batch, reference, settings, logs)
        logs["forget_loss"] = forget.detach()
        loss = settings.forget_weight * forget
        if self.needs_retain(settings):
            retain = (self.retain_term or shared_retain_term)(model, batch, reference, settings)
            logs["retain_loss"] = retain.detach()
            loss = loss + settings.retain_weight * retain
        return loss, logs


def logits_of(model, part: dict) -> torch.Tensor:
    return model(input_ids=part["input_ids"], attention_mask=part["attention_mask"]).logits


def shared_retain_term(model, batch, reference, settings) -> torch.Tensor:
    """R = NLL_r, or KL(p_ref || p_theta) on retain answer tokens (or every position: --retain_kl_positions all)."""
    part = batch["retain"]
    if settings.retain_loss_type == "kl" and settings.retain_kl_positions == "all":
        ref_logits = reference(part).logits
        return losses.kl_all_positions(logits_of(model, part), ref_logits)
    logits = logits_of(model, part)
    if settings.retain_loss_type == "kl":
        return losses.kl_on_answers(logits, reference(part).logits, part["labels"])
    return losses.nll(logits, part["labels"])


# --- forget terms ------------------------------------------------------------------------------
def _forget_nll(model, batch, reference, settings, logs):
    part = batch["forget"]
    value = losses.nll(logits_of(model, part), part["labels"])
    logs["forget_nll"] = value.detach()
    return -value


# Reference forwards run first and are reduced at once (to sequence NLLs, or to the answer rows), so the
# frozen model's vocabulary-sized logits are freed before the policy's exist: peak memory stays that of one.
def _npo(model, batch, reference, settings, logs):
    part = batch["forget"]
    ref_seq = losses.sequence_nll(reference(part).logits, part["labels"])
    seq = losses.sequence_nll(logits_of(model, part), part["labels"])
    logs["forget_nll"] = (seq.sum() / losses.answer_lengths(part["labels"]).sum()).detach()
    return losses.npo_loss(seq, ref_seq, settings.npo_beta)


def _simnpo(model, batch, reference, settings, logs):
    part = batch["forget"]
    seq = losses.sequence_nll(logits_of(model, part), part["labels"])
    lengths = losses.answer_lengths(part["labels"])
    logs["forget_nll"] = (seq.sum() / lengths.sum()).detach()
    return losses.simnpo_loss(seq, lengths, settings.simnpo_beta, settings.simnpo_gamma)


def _idk_nll(model, batch, reference, settings, logs):
    part = batch["idk"]
    return losses.nll(logits_of(model, part), part["labels"])


def _idk_dpo(model, batch, reference, settings, logs):
    chosen, rejected = batch["idk"], batch["forget"]
    ref = {name: losses.sequence_nll(reference(p).logits, p["labels"]) for name, p in (("c", chosen), ("r", rejected))}
    seq = {name: losses.sequence_nll(logits_of(model, p), p["labels"]) for name, p in (("c", chosen), ("r", rejected))}
    logs["forget_nll"] = (seq["r"].sum() / losses.answer_lengths(rejected["labels"]).sum()).detach()
    return losses.dpo_loss(seq["c"], seq["r"], ref["c"], ref["r"], settings.npo_beta)


def _undial(model, batch, reference, settings, logs):
    # = losses.undial_loss, with the adjusted teacher q built before the student's forward: only q, not the
    # teacher's rows as well, is alive at the memory peak.
    part = batch["forget"]
    labels = part["labels"]
    teacher = losses.upcast(losses.answer_rows(reference(part).logits, labels))
    target = losses.undial_target(teacher, losses.answer_labels(labels), settings.undial_beta)
    del teacher
    logits = logits_of(model, part)
    logs["forget_nll"] = losses.nll(logits.detach(), labels)
    return losses.soft_cross_entropy(logits, target, labels)


def _hidden(model, part, layer):
    """Decoder layer `layer`'s output (by a forward hook: for the last layer hidden_states[L] is the normed state)."""
    return decoder_layer_output(model, layer, lambda: model(input_ids=part["input_ids"],
                                                            attention_mask=part["attention_mask"]))


def _rmu_forget(model, batch, reference, settings, logs):
    part = batch["forget"]
    hidden = _hidden(model, part, settings.rmu_layer)
    return losses.rmu_loss(hidden, part["labels"] != losses.IGNORE_INDEX, settings.rmu_control)[0]


def _rmu_retain(model, batch, reference, settings):
    part = batch["retain"]
    hidden = _hidden(model, part, settings.rmu_layer)
    frozen = decoder_layer_output(reference.module, settings.rmu_layer, lambda: reference(part))
    mask = part["labels"] != losses.IGNORE_INDEX
    return ((losses.upcast(hidden[mask]) - losses.upcast(frozen[mask]).to(hidden.device)) ** 2).mean()


def _rmu_setup(model, settings: MethodSettings, seed: int, is_peft: bool) -> MethodSettings:
    """Fixes the control vector c*u (u uniform in [0,1)^d, normalised) and, without PEFT, trains only
    `mlp.down_proj` of layers L-2..L, as the WMDP code does."""
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
    return dataclasses.replace(settings, rmu_control=control)


METHODS: dict[str, UnlearningMethod] = {
    m.name: m
    for m in (
        UnlearningMethod("ga", _forget_nll, "TOFU (Maini et al. 2024, arXiv 2401.06121)", uses_retain=False),
        UnlearningMethod("grad_diff", _forget_nll, "TOFU (arXiv 2401.06121)"),
        UnlearningMethod("kl", _forget_nll, "TOFU (arXiv 2401.06121)", fixed_retain_loss="kl"),
        UnlearningMethod("npo", _npo, "NPO (arXiv 2404.05868)", forget_uses_reference=True),
        UnlearningMethod("simnpo", _simnpo, "SimNPO (arXiv 2410.07163)", default_forget_weight=0.125),
        UnlearningMethod("idk_nll", _idk_nll, "TOFU 'PO' (arXiv 2401.06121)", needs_idk=True),
        UnlearningMethod("idk_dpo", _idk_dpo, "TOFU IdkDPO (arXiv 2401.06121)", forget_uses_reference=True,
                         needs_idk=True),
        UnlearningMethod("undial", _undial, "UNDIAL (arXiv 2402.10052)", forget_uses_reference=True,
                         default_retain_weight=0.0),
        UnlearningMethod("rmu", _rmu_forget, "RMU (WMDP, arXiv 2403.03218)", retain_term=_rmu_retain,
                         setup=_rmu_setup),
    )
}


def get_method(name: str) -> UnlearningMethod:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"Unknown unlearn_method {name!r}; known methods: {', '.join(METHODS)}.") from None
