"""Hessian-diagonal estimators behind one small interface, selected by name (``--hessian_estimator``).

An estimator turns a batch into a *estimate loss*: a scalar whose gradient, averaged over the
processes, is what SophiaG folds into h (``squared=True``: h absorbs ``scale * g*g``; ``squared=False``:
``scale * g``). The engine-specific part (plain / DDP / DeepSpeed backward and the Hessian-mode step)
is :mod:`hf_unlearn.optim.refresh`; the formulas are in :mod:`hf_unlearn.optim.hessian`.

Adding an estimator = a subclass with its `estimate_loss` (and its flags) decorated with
`@register_estimator`, and tests against its closed form on a small model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..answer_tokens import answer_lengths, predicts_answer
from .hessian import EMPIRICAL_SCALE, gnb_rows_loss, hutchinson_diagonal

__all__ = ["ESTIMATORS", "HessianEstimator", "RefreshContext", "estimator_names", "get_estimator",
           "register_estimator"]


@dataclass(frozen=True)
class RefreshContext:
    """What an estimator may read besides the model and the batch (no Trainer).

    Attributes:
        seed, step: the run's seed and the optimizer step: every draw is a function of them (and of a
            row's index in the global batch), so a resumed run, or another process count, draws the same.
        rank, world: this process and the number of processes.
        device: where the model runs.
        batch_fraction: `--hessian_batch_fraction` (GNB's share of the rows).
        unlearning_loss: ``(model, batch) -> loss``: the method's training loss (Hutchinson differentiates it).
        sum_over_processes: ``int -> int``, the sum over every process (identity in one process).
        step_logits: ``{part: estimator.kept_logits(part, logits)}`` from the training step's own forward of
            those batch parts, when the refresh reuses it (`hf_unlearn.optim.refresh.recording_logits`); None:
            the estimator forwards itself.
    """

    seed: int
    step: int
    rank: int
    world: int
    device: torch.device
    batch_fraction: float
    unlearning_loss: Callable
    sum_over_processes: Callable[[int], int]
    step_logits: dict[str, torch.Tensor] | None = None


class HessianEstimator:
    """Base class. `estimate_loss(model, batch, ctx) -> (loss, scale)`; flags say how the rest is done."""

    name: str = ""
    squared: bool = True  # h absorbs scale * g*g (True) or scale * g (False)
    refreshes: bool = True  # False: no refresh step; `configure` sets up the optimizer instead
    double_backward: bool = False  # differentiates through whole parameters twice (not under ZeRO-3)
    reuses_step_forward: bool = False  # can take its logits from the training step's forward (ctx.step_logits)

    def estimate_loss(self, model, batch: dict, ctx: RefreshContext) -> tuple[torch.Tensor, float]:
        raise NotImplementedError

    def kept_logits(self, part: dict, logits: torch.Tensor) -> torch.Tensor:
        """What the estimate reads of a batch part's logits: all that a refresh reusing the step's forward keeps
        of them (`reuses_step_forward`)."""
        return logits

    def configure(self, optimizer) -> None:
        """Sets up SophiaG for this estimator (once, when the optimizer is created)."""


def _row_seed(seed: int, step: int, part: int, row: int) -> int:
    """Seed of the GNB label draws of one row of the global batch: independent of the process count."""
    state = np.random.SeedSequence([v % 2**63 for v in (seed, step, part, row)]).generate_state(1, np.uint64)
    return int(state[0] >> 1)


ESTIMATORS: dict[str, type[HessianEstimator]] = {}


def register_estimator(cls: type[HessianEstimator]) -> type[HessianEstimator]:
    """Class decorator: makes `cls` available as ``--hessian_estimator cls.name``."""
    if cls.name in ESTIMATORS:
        raise ValueError(f"A Hessian estimator named {cls.name!r} is already registered.")
    ESTIMATORS[cls.name] = cls
    return cls


def estimator_names() -> tuple[str, ...]:
    return tuple(ESTIMATORS)


def get_estimator(name: str) -> HessianEstimator:
    """A new instance of the estimator registered as `name`."""
    try:
        return ESTIMATORS[name]()
    except KeyError:
        raise ValueError(f"Unknown hessian_estimator {name!r}; known: {', '.join(ESTIMATORS)}.") from None


@register_estimator
class GaussNewtonBartlett(HessianEstimator):
    """Sophia-G: labels sampled from the model's own softmax on the answer tokens of forget and retain rows;
    the estimate loss is their mean CE scaled by world / B_global, so that after the ranks' gradients are
    averaged, g = ĝ over all B_global sampled tokens (as in one process), and h absorbs B_global * ĝ⊙ĝ.

    Row r of the global batch draws its labels from a generator seeded by (seed, step, part, r), and
    `batch_fraction` keeps the rows g with floor((g+1)f) > floor(g f) (evenly spaced): neither depends on
    how the batch is split over processes.

    A part whose logits the training step computed already (``ctx.step_logits``, all rows kept) is not
    forwarded again: the same call on the same parameters and rows gives the same logits. Only the rows that
    predict answer tokens are read (`kept_logits`), so only those are kept from the step's forward.
    """

    name = "gnb"
    reuses_step_forward = True

    def estimate_loss(self, model, batch, ctx):
        total, count = None, 0
        for part_index, part in enumerate(("forget", "retain")):
            if part not in batch:
                continue
            inputs = batch[part]
            rows = inputs["labels"].shape[0]
            first = ctx.rank * rows
            kept = [r for r in range(rows)
                    if math.floor((first + r + 1) * ctx.batch_fraction) > math.floor((first + r) * ctx.batch_fraction)]
            forward_rows = kept or [0]  # a rank with nothing kept still takes part in the backward
            if len(forward_rows) < rows:
                inputs = {key: value[forward_rows] if torch.is_tensor(value) else value for key, value in inputs.items()}
            if ctx.step_logits is not None and part in ctx.step_logits and len(forward_rows) == rows:
                answer_logits = ctx.step_logits[part]
            else:
                answer_logits = self.kept_logits(inputs, model(input_ids=inputs["input_ids"],
                                                               attention_mask=inputs["attention_mask"]).logits)
            labels = inputs["labels"]
            if total is None:
                total = answer_logits.sum() * 0.0  # a rank without answer tokens still takes part in the backward
            if not kept:
                continue
            answer_tokens = answer_lengths(labels).tolist()
            uniforms = [torch.rand(n, generator=torch.Generator().manual_seed(
                _row_seed(ctx.seed, ctx.step, part_index, ctx.rank * rows + row)))
                for row, n in zip(kept, answer_tokens) if n]
            if uniforms:
                n = answer_logits.shape[0]
                loss = gnb_rows_loss(answer_logits, uniforms=torch.cat(uniforms).to(answer_logits.device))
                total, count = total + loss * n, count + n
        global_count = ctx.sum_over_processes(count)
        if total is None or global_count == 0:
            raise ValueError(
                f"The Hessian refresh at step {ctx.step} found no answer tokens in the batch (every label is -100): "
                "GNB has nothing to sample. Check the data, or use --hessian_estimator empirical."
            )
        return total * (ctx.world / global_count), global_count

    def kept_logits(self, part, logits):
        return logits[predicts_answer(part["labels"])]  # the B rows that predict answer tokens, row-major


@register_estimator
class Hutchinson(HessianEstimator):
    """Sophia-H: u ⊙ (H u) of the unlearning loss with Rademacher u drawn from (seed, step) alike on every
    rank (so averaging u⊙H_r u over ranks gives u⊙Hu of the averaged loss). The estimate loss is the
    surrogate ``sum <p, stop_grad(u⊙Hu)>``, whose gradient is u⊙Hu; parameters in model order."""

    name = "hutchinson"
    squared = False
    double_backward = True

    def estimate_loss(self, model, batch, ctx):
        generator = torch.Generator(device=ctx.device)
        generator.manual_seed(ctx.seed * 1_000_003 + ctx.step)  # a resumed run draws the same u
        loss = ctx.unlearning_loss(model, batch)
        params = [p for p in model.parameters() if p.requires_grad]
        diagonals = hutchinson_diagonal(loss, params, generator)
        del loss
        return sum((p * d.to(p.dtype)).sum() for p, d in zip(params, diagonals)), 1.0


@register_estimator
class Empirical(HessianEstimator):
    """SOUL's released code: h from the training gradient itself at every step, ĥ = S·g⊙g with
    S = EMPIRICAL_SCALE, inside SophiaG's own step (no refresh step)."""

    name = "empirical"
    refreshes = False

    def configure(self, optimizer) -> None:
        optimizer.empirical_hessian_scale = EMPIRICAL_SCALE

