"""The engine-specific half of a Hessian refresh: backward the estimator's loss, average over processes,
and fold the result into SophiaG's h with one Hessian-mode step that leaves no trace behind.

The estimate goes through SophiaG's Hessian mode (`SophiaG.collecting_hessian`): inside it, `step()`
folds whatever sits in the gradients into h (``scale * g*g`` for GNB, ``g`` for Hutchinson's ``u*Hu``)
and leaves the parameters, m and the step count alone. So h is refreshed by the same `step()` call, on
the same tensors, as the real update.

One process: backward the estimate loss, `sophia.step()` in Hessian mode, zero the grads.

One process, reusing the step's forward (the default where `can_reuse_step_forward` holds): GNB's
refresh forward is the same call, on the same parameters and rows, as the training step's own forwards
of the forget and retain rows. So the trainer keeps what GNB reads of the step's logits (the answer
rows: `recording_logits`, `HessianEstimator.kept_logits`) and refreshes right after the method's loss,
before the training backward: the sampled-label loss is built on those rows and backpropagated with
``retain_graph=True`` (the training backward still needs the graph), each parameter's gradient folded
into h as soon as it is complete and then dropped, so the GNB gradient and the training gradient never
mix, and no whole set of GNB gradients sits beside the step's graph. h and every later number are
those of the separate refresh (bitwise in tests/test_refresh_reuse.py), for one forward less per
refresh. With gradient accumulation both paths refresh on the first micro-batch, the same rows. A part
the method does not forward with gradients (GA's retain rows, UNDIAL's at retain weight 0) gets its own
forward as before; when no part's logits were kept (RMU's forwards read a decoder layer, not logits; a
subclass's `compute_loss` that hands none back), the refresh forwards everything itself, after the step's
forward, through the plain path above. Memory: the GNB backward runs while the step's graph is alive, so its transients
(chiefly the [B, T, V] gradient of each part's logits) add to the graph instead of preceding it: P2's
refresh step peaks at 241 MiB instead of 208 (+16%, tiny Llama, vocabulary 4096); the parameters'
GNB gradients are folded one at a time, so no whole set of them adds to that. Kept on the separate
refresh, where reuse would not be the same computation or is unsafe: several processes or any wrapper
around the module (DDP's reduction hooks would fire on the extra backward; DeepSpeed's engine owns the
backward), a `hessian_batch_fraction` below 1 (the refresh forwards other rows), gradient checkpointing
(the segments would be recomputed for the second backward), a model with any dropout probability above
0 (the separate refresh draws its own dropout mask; reusing would change the numbers), and estimators
that do not declare `reuses_step_forward` (Hutchinson differentiates the whole loss twice).

DDP: the backward runs under `no_sync()` (the refresh runs on the first micro-batch, maybe inside
Trainer's own `no_sync`, and must not leave a half-reduced bucket behind), then the gradients are
averaged across ranks by hand (SUM then divide: gloo has no AVG), then the Hessian-mode step.

DeepSpeed (ZeRO-1/2/3): DeepSpeed gives the client optimizer flat fp32 partitions of the parameters
(ZeRO-2 keeps them in ``param_groups``; ZeRO-3 swaps each sub-group in and out around its `step()`),
reduces and partitions the gradients inside the engine, and calls the client `step()` itself. The
refresh uses that same path: the estimate loss is backpropagated with ``engine.backward`` and
``engine.step()`` runs inside Hessian mode, so the engine reduce-scatters the gradient and each rank
folds into h exactly the shard of m and h it owns. Around that one engine step:
* a gradient-accumulation boundary is forced (`set_gradient_accumulation_boundary(True)`), so the
  engine reduces and steps even when gradient_accumulation_steps > 1; the refresh runs on the first
  micro-batch of an optimizer step, when no real gradient has accumulated yet;
* gradient clipping is off (engine config and the ZeRO optimizer's ``clip_grad``): a clipped sampled
  gradient would bias ĥ = B·ĝ⊙ĝ;
* the engine's LR scheduler is detached (Trainer steps its own, but a DeepSpeed-config one would tick);
* the engine's ``global_steps``, ``global_samples``, ``micro_steps`` and ``skipped_steps`` and the
  boundary flag are restored afterwards, so the refresh is invisible to the engine's bookkeeping. With
  fp16 loss scaling an overflowing refresh is skipped by the engine (h keeps its old value) and lowers
  the loss scale, as an overflowing step would.
An estimator that differentiates twice (Hutchinson) cannot do so through the engine: it runs on the
unwrapped module (ZeRO-1/2 keep whole parameters on every rank; ZeRO-3 is refused up front) and only
its surrogate loss goes through the engine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from ..models.dropout import has_dropout
from .estimators import HessianEstimator, RefreshContext
from .sophia import SophiaG


def refresh_hessian(model, batch: dict, sophia: SophiaG, estimator: HessianEstimator, ctx: RefreshContext, *,
                    engine=None, autocast=contextlib.nullcontext) -> str:
    """Estimates diag(H) on `batch` and folds it into `sophia`'s h; leaves no gradient behind.

    `engine`: the DeepSpeed engine (then `model` is it), else None. `autocast`: the context the loss is
    computed under (Trainer's `compute_loss_context_manager`). Returns the path it took: "step_forward" (on
    the step's graph, with the logits in ``ctx.step_logits``; taken only when that holds some) or
    "own_forward".
    """
    if engine is not None:
        forward_model = engine.module if estimator.double_backward else engine
        with autocast():
            loss, scale = estimator.estimate_loss(forward_model, batch, ctx)
        _engine_hessian_step(engine, sophia, loss, scale, estimator.squared)
        return "own_forward"
    if ctx.step_logits:  # on the step's graph, which its own backward still needs
        model.zero_grad(set_to_none=True)  # the first micro-batch of a step: nothing accumulated yet
        with autocast():
            loss, scale = estimator.estimate_loss(model, batch, ctx)
            with sophia.collecting_hessian(scale=scale, squared=estimator.squared):
                _backward_folding_each_gradient(loss, sophia)
        model.zero_grad(set_to_none=True)
        return "step_forward"
    distributed = ctx.world > 1 and hasattr(model, "no_sync")
    with model.no_sync() if distributed else contextlib.nullcontext():
        with autocast():
            loss, scale = estimator.estimate_loss(model, batch, ctx)
            loss.backward()
    if ctx.world > 1:
        _average_gradients(sophia, ctx.world)
    with sophia.collecting_hessian(scale=scale, squared=estimator.squared):
        sophia.step()
    model.zero_grad(set_to_none=True)
    return "own_forward"


def _backward_folding_each_gradient(loss: torch.Tensor, sophia: SophiaG) -> None:
    """``loss.backward(retain_graph=True)`` from gradients all None, each parameter's gradient folded into h
    (`SophiaG.fold_gradient`) as soon as it is complete, then dropped. So beside the step's graph at most one
    parameter's gradient is alive, not a whole set. Autograd sums every path into a parameter before its one
    accumulation, so the fold sees the whole gradient."""
    def folder(param, group):
        def fold(_):
            sophia.fold_gradient(param, group)
            param.grad = None
        return fold

    handles = [p.register_post_accumulate_grad_hook(folder(p, group))
               for group in sophia.param_groups for p in group["params"] if p.requires_grad]
    try:
        loss.backward(retain_graph=True)
    finally:
        for handle in handles:
            handle.remove()


def can_reuse_step_forward(module, estimator: HessianEstimator, ctx: RefreshContext, *, wrapped: bool) -> bool:
    """Whether the refresh may take its logits from the training step's forward (see the module docstring).

    `module`: the model being trained, unwrapped; `wrapped`: the step runs it inside a wrapper (DDP,
    DeepSpeed, DataParallel, compile).
    """
    checkpointing = getattr(module, "is_activation_checkpointing", None)  # transformers >= 5.x's name
    if checkpointing is None:
        checkpointing = getattr(module, "is_gradient_checkpointing", False)
    return (estimator.reuses_step_forward and ctx.world == 1 and not wrapped and ctx.batch_fraction == 1
            and not checkpointing and not has_dropout(module))


@contextlib.contextmanager
def recording_logits(model, batch: dict, estimator: HessianEstimator) -> Iterator[dict[str, torch.Tensor]]:
    """Yields ``{part: estimator.kept_logits(part, logits)}``, filled while the block runs from the first forward
    of `model`, with gradients, on exactly a batch part's tensors: ``model(input_ids=part["input_ids"],
    attention_mask=part["attention_mask"])`` (the same tensor objects, nothing else passed). The frozen
    reference runs without gradients and is not kept. Keeping only what the estimate reads (GNB: the answer
    rows) lets the step free its full logits as it would without a refresh."""
    parts = {name: part for name, part in batch.items() if isinstance(part, dict) and "input_ids" in part}
    recorded: dict[str, torch.Tensor] = {}

    def keep(module, args, kwargs, output):
        logits = getattr(output, "logits", None)
        if args or logits is None or logits.grad_fn is None or not torch.is_grad_enabled():
            return
        if any(value is not None and value is not False for key, value in kwargs.items()
               if key not in ("input_ids", "attention_mask")):
            return
        for name, part in parts.items():
            if (name not in recorded and kwargs.get("input_ids") is part["input_ids"]
                    and kwargs.get("attention_mask") is part.get("attention_mask")):
                recorded[name] = estimator.kept_logits(part, logits)

    handle = model.register_forward_hook(keep, with_kwargs=True)
    try:
        yield recorded
    finally:
        handle.remove()


def _average_gradients(sophia: SophiaG, world: int) -> None:
    for group in sophia.param_groups:
        for param in group["params"]:
            if param.grad is not None:
                torch.distributed.all_reduce(param.grad, op=torch.distributed.ReduceOp.SUM)  # gloo has no AVG
                param.grad.div_(world)


def _engine_hessian_step(engine, sophia: SophiaG, loss, scale: float, squared: bool) -> None:
    """One `engine.backward` + `engine.step()` in SophiaG's Hessian mode, invisible to the engine's counters."""
    zero_optimizer = engine.optimizer
    counters = {name: getattr(engine, name) for name in
                ("global_steps", "global_samples", "micro_steps", "skipped_steps")}
    boundary = getattr(engine, "_is_gradient_accumulation_boundary", None)
    clip_config = engine._config.gradient_clipping
    clip_optimizer = getattr(zero_optimizer, "clip_grad", None)
    scheduler = engine.lr_scheduler
    try:
        engine._config.gradient_clipping = 0.0
        if clip_optimizer is not None:
            zero_optimizer.clip_grad = 0.0
        engine.lr_scheduler = None
        engine.set_gradient_accumulation_boundary(True)
        with sophia.collecting_hessian(scale=scale, squared=squared):
            engine.backward(loss, scale_wrt_gas=False)
            engine.step()
    finally:
        for name, value in counters.items():
            setattr(engine, name, value)
        engine._is_gradient_accumulation_boundary = boundary
        if boundary is not None and hasattr(zero_optimizer, "set_gradient_accumulation_boundary"):
            zero_optimizer.set_gradient_accumulation_boundary(boundary)
        engine._config.gradient_clipping = clip_config
        if clip_optimizer is not None:
            zero_optimizer.clip_grad = clip_optimizer
        engine.lr_scheduler = scheduler
