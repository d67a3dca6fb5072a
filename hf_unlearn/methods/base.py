"""What an unlearning method is: one `Method` definition, registered by name.

A definition holds everything about a method: its forget term (and, rarely, its own retain term),
what it needs (a reference model, retain data, refusal answers), its default weights with their
source, and its own hyper-parameters (`Hyperparameter`: config field, default, source, valid
values). The accepted method names, the `UnlearningConfig` fields and checks, and the model card's
recipe are derived from the registered definitions; the trainer only calls ``method(model, batch,
reference, settings)``.

Every method computes ``L = gamma * F + alpha * R``: F its forget term, R the shared retain term
(NLL or KL on retain answers, :func:`shared_retain_term`) unless the method brings its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

import torch

from . import losses

Logs = dict[str, torch.Tensor]


class MethodSettings(SimpleNamespace):
    """Resolved values a method reads, and nothing else (no Trainer, no config object): ``forget_weight``,
    ``retain_weight``, ``retain_loss_type``, ``retain_kl_positions``, the method's hyper-parameters by their config names, and whatever
    its ``setup`` adds (RMU's control vector)."""


@dataclass(frozen=True)
class Hyperparameter:
    """A config field (``--name``) that belongs to a method.

    `help` says what it is and where its default comes from (a paper or a reference implementation).
    `divides_loss`: the value must be > 0; `nonnegative`: >= 0.
    """

    name: str
    default: float | int
    help: str
    type: type = float
    divides_loss: bool = False
    nonnegative: bool = False

    def problem(self, value) -> str | None:
        """What is wrong with `value` for this field, or None."""
        if self.type is float and not math.isfinite(value):
            return f"{self.name} must be a finite number, got {value}"
        if self.divides_loss and value <= 0:
            return f"{self.name} must be > 0 (it divides the loss), got {value}"
        if self.nonnegative and value < 0:
            return f"{self.name} must be >= 0, got {value}"
        return None


# (model, batch, reference, settings, logs) -> F; it may add detached terms to `logs`.
ForgetTerm = Callable[[torch.nn.Module, dict, "Callable | None", MethodSettings, Logs], torch.Tensor]
# (model, batch, reference, settings) -> R
RetainTerm = Callable[[torch.nn.Module, dict, "Callable | None", MethodSettings], torch.Tensor]
# (model, settings, seed, is_peft) -> settings; runs once, before the optimizer exists.
Setup = Callable[[torch.nn.Module, MethodSettings, int, bool], MethodSettings]


@dataclass(frozen=True)
class RetainDual:
    """The retain weight as a dual variable (PDU): training minimises gamma * F + lambda * (R - epsilon), and
    after every optimizer step ``lambda <- max(0, lambda + eta * (mean R - epsilon))``, R's mean taken over the
    step's micro-batches and processes (the trainer's `RetainDualCallback`); lambda starts at the resolved
    retain weight. The fields name the method's hyper-parameters holding epsilon, eta and the number of
    epochs before the first update."""

    bound: str
    step_size: str
    warmup_epochs: str

    def updated(self, settings: MethodSettings, mean_retain: float) -> float:
        """lambda after one step whose retain terms averaged `mean_retain`."""
        step = getattr(settings, self.step_size) * (mean_retain - getattr(settings, self.bound))
        return max(0.0, settings.retain_weight + step)


@dataclass(frozen=True)
class Method:
    """One unlearning method (see the module docstring).

    Attributes:
        name: the ``--unlearn_method`` value.
        paper: where the method comes from.
        forget_term: F.
        forget_uses_reference: F reads the frozen reference model.
        uses_retain: the method has a retain term at all (GA has none).
        needs_idk: the batches carry refusal answers (``batch["idk"]``).
        default_forget_weight, default_retain_weight: gamma and alpha when the flags are left unset;
            `weights_source` says where values other than 1 come from.
        fixed_retain_loss: R is always this retain loss type (KL's), whatever ``--retain_loss_type`` says.
        retain_term: replaces the shared retain term (RMU).
        setup: prepares the model and settings once (RMU: control vector, trainable layers).
        hyperparameters: the method's own config fields.
        dual: the retain weight is a dual variable, updated after every optimizer step (PDU).
    """

    name: str
    paper: str
    forget_term: ForgetTerm
    forget_uses_reference: bool = False
    uses_retain: bool = True
    needs_idk: bool = False
    default_forget_weight: float = 1.0
    default_retain_weight: float = 1.0
    weights_source: str | None = None
    fixed_retain_loss: str | None = None
    retain_term: RetainTerm | None = None
    setup: Setup | None = None
    hyperparameters: tuple[Hyperparameter, ...] = ()
    dual: RetainDual | None = None

    def needs_retain(self, settings: MethodSettings) -> bool:
        # a dual retain weight may reach 0 and rise again: its R is always computed
        return self.uses_retain and (settings.retain_weight != 0 or self.dual is not None)

    def needs_reference(self, settings: MethodSettings) -> bool:
        retain_kl = self.needs_retain(settings) and settings.retain_loss_type == "kl"
        return self.forget_uses_reference or retain_kl or (self.retain_term is not None and self.needs_retain(settings))

    def settings_from(self, config) -> MethodSettings:
        """The settings for `config` (an `UnlearningConfig`): weights resolved, the method's fields read."""
        def pick(value, default):
            return default if value is None else value

        return MethodSettings(
            forget_weight=pick(config.forget_weight, self.default_forget_weight),
            retain_weight=pick(config.retain_weight, self.default_retain_weight) if self.uses_retain else 0.0,
            retain_loss_type=self.fixed_retain_loss or config.retain_loss_type,
            retain_kl_positions=getattr(config, "retain_kl_positions", "answer"),
            **{h.name: getattr(config, h.name) for h in self.hyperparameters},
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
            if self.dual is not None:  # the Lagrangian's lambda * (R - epsilon)
                retain = retain - getattr(settings, self.dual.bound)
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
    if settings.retain_loss_type == "kl":  # the reference's LM head runs on the answer positions only
        return losses.kl_on_answers(logits, reference.answer_logits(part), part["labels"])
    return losses.nll(logits, part["labels"])


# --- the registry --------------------------------------------------------------------------------
METHODS: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    """Adds `method` (its module calls this at import); a hyper-parameter shared by several methods must be
    defined once (the same `Hyperparameter`)."""
    if method.name in METHODS:
        raise ValueError(f"A method named {method.name!r} is already registered.")
    known = hyperparameters()
    for h in method.hyperparameters:
        if h.name in known and known[h.name] != h:
            raise ValueError(f"Method {method.name!r} redefines hyper-parameter {h.name!r}: share the same definition.")
    METHODS[method.name] = method
    return method


def method_names() -> tuple[str, ...]:
    return tuple(METHODS)


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"Unknown unlearn_method {name!r}; known methods: {', '.join(METHODS)}.") from None


def hyperparameters() -> dict[str, Hyperparameter]:
    """Every registered method's hyper-parameters by name, each once, in registration order."""
    return {h.name: h for method in METHODS.values() for h in method.hyperparameters}
