"""Estimators of the Hessian diagonal that feed :meth:`SophiaG.update_hessian`.

Pure functions of torch tensors; nothing here imports from the rest of
``hf_unlearn``.  Batches follow the causal-LM convention: ``labels`` is -100 on
prompt and padding positions, and the logits at position t predict token t+1,
so logits[:, :-1] are scored against labels[:, 1:].

The three estimators the trainer offers (``--hessian_estimator``; their interface and registry are in
:mod:`hf_unlearn.optim.estimators`):

``gnb``
    Gauss-Newton-Bartlett (Sophia-G).  Sample ŷ from the model's own softmax on
    the B answer positions, backprop the mean CE(logits, ŷ) to get ĝ, then
    ``update_hessian(scale=B)``: ĥ = B·ĝ⊙ĝ.  Because the per-token terms
    J_bᵀ(p_b − e_ŷb) have mean zero and are independent, E[B·ĝ⊙ĝ] =
    (1/B)·Σ_b diag(J_bᵀ(diag(p_b) − p_b p_bᵀ)J_b): the diagonal of the
    Gauss-Newton matrix of the mean loss, for any B.
``hutchinson``
    Sophia-H.  ĥ = u ⊙ (H u) with Rademacher u, unbiased for diag(H); needs a
    loss that can be differentiated twice.  ``update_hessian(squared=False)``.
``empirical``
    ĥ = S·g⊙g from the actual unlearning gradient at every step (k = 1), with
    S = :data:`EMPIRICAL_SCALE`.  A reproduction mode, not the default.
"""

from __future__ import annotations

from typing import Iterable, Optional

import torch
import torch.nn.functional as F

from ..answer_tokens import predicts_answer

__all__ = ["EMPIRICAL_SCALE", "gnb_loss", "gnb_rows_loss", "hutchinson_diagonal", "sample_from_logits"]

#: Scale S of the ``empirical`` estimator ĥ = S·g⊙g, refreshed from the actual
#: unlearning gradient at every step (k = 1).  SOUL's released code runs exactly
#: this Hessian estimate: it keeps an EMA of the squared training gradient and
#: its step divides by ρ·5120·h.  Putting the 5120 into the estimate
#: (``update_hessian(scale=EMPIRICAL_SCALE)``) gives the same update with our
#: SophiaG, where ρ keeps its paper meaning.  A reproduction mode, not the
#: default estimator.
EMPIRICAL_SCALE = 5120


_HUTCHINSON_HINT = (
    "Hutchinson's estimator needs a twice-differentiable loss (it computes a "
    "Hessian-vector product by differentiating the gradient again). Fused attention "
    "kernels (SDPA on CPU) are not: load the model with attn_implementation='eager' "
    "(--attn_implementation eager), or use `--hessian_estimator gnb` instead, which "
    "needs only first derivatives."
)


def sample_from_logits(rows: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """One draw ŷ_i ~ softmax(rows_i) per row, by inverse CDF from u_i ~ U[0, 1).

    ŷ_i is the first class v whose cumulative probability exceeds u_i (classes with zero probability
    are never drawn).  One cumsum and one binary search per row: several times faster on CPU than
    ``torch.multinomial``, and the draw is a fixed function of u, so the caller controls the randomness.
    """
    with torch.no_grad():
        rows = rows.detach()
        if rows.dtype in (torch.float16, torch.bfloat16):
            rows = rows.float()  # the cumsum of a half-precision softmax drifts
        cdf = torch.softmax(rows, dim=-1).cumsum_(-1)
        # Scale u by the last cdf entry so rounding in the cumsum (sum slightly under 1) cannot overflow.
        targets = uniforms.to(device=cdf.device, dtype=cdf.dtype).unsqueeze(-1) * cdf[:, -1:]
        drawn = torch.searchsorted(cdf, targets, right=True).squeeze(-1)
        return drawn.clamp_max_(rows.shape[-1] - 1)


def gnb_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    generator: Optional[torch.Generator] = None,
    uniforms: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, int]:
    """Sampled-label loss of the Gauss-Newton-Bartlett estimator (Sophia-G).

    On the answer positions only (shifted labels != -100), draw ŷ ~ softmax(logits)
    from the model itself (no gradient flows through the sampling) and return
    ``(mean CE(logits, ŷ) over those B tokens, B)``.  After ``loss.backward()``
    the gradient is ĝ; the caller then runs ``optimizer.update_hessian(scale=B)``
    so that h absorbs ĥ = B·ĝ⊙ĝ.

    Args:
        logits: (batch, seq, vocab) model outputs.
        labels: (batch, seq) token ids, -100 on prompt and padding positions.
        generator: optional ``torch.Generator`` on the logits' device, for
            reproducible sampling.
        uniforms: optional (B,) draws from U[0, 1), one per answer position in
            row-major order, used instead of ``generator`` (the trainer seeds
            each row on its own so the draw does not depend on the batch split).

    Raises:
        ValueError: on mismatched shapes, or when no position has an answer label.
    """
    if logits.dim() != 3:
        raise ValueError(
            f"gnb_loss: logits must have shape (batch, seq, vocab), got {tuple(logits.shape)}."
        )
    if labels.shape != logits.shape[:2]:
        raise ValueError(
            f"gnb_loss: labels shape {tuple(labels.shape)} does not match the first two "
            f"dimensions of logits {tuple(logits.shape)}; pass labels of shape (batch, seq)."
        )
    mask = predicts_answer(labels)  # full length: no second [B, T, V] gradient from a slice's backward
    num_tokens = int(mask.sum())
    if num_tokens == 0:
        raise ValueError(
            "gnb_loss: the batch has zero answer tokens (every shifted label is -100), "
            "so there is nothing to sample the Gauss-Newton estimate from; check that "
            "the collator masks only prompt and padding, or skip this batch."
        )
    return gnb_rows_loss(logits[mask], generator, uniforms), num_tokens


def gnb_rows_loss(
    rows: torch.Tensor, generator: Optional[torch.Generator] = None, uniforms: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """:func:`gnb_loss` on the (B, vocab) logit rows that predict the B answer tokens (row-major order),
    ``logits[predicts_answer(labels)]``: mean CE(rows, ŷ), ŷ drawn from softmax(rows)."""
    if rows.dtype in (torch.float16, torch.bfloat16):
        rows = rows.float()  # softmax, sampling and CE in fp32
    if uniforms is None:
        uniforms = torch.rand(rows.shape[0], generator=generator, device=rows.device)
    elif uniforms.shape != (rows.shape[0],):
        raise ValueError(
            f"gnb_loss: got {tuple(uniforms.shape)} uniforms for {rows.shape[0]} answer positions; pass one per "
            "position (row-major order)."
        )
    sampled = sample_from_logits(rows, uniforms)
    return F.cross_entropy(rows, sampled, reduction="mean")


def _rademacher(p: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    u = torch.randint(0, 2, p.shape, generator=generator, device=p.device)
    return (2 * u - 1).to(p.dtype)


def hutchinson_diagonal(
    loss: torch.Tensor,
    params: Iterable[torch.Tensor],
    generator: Optional[torch.Generator] = None,
) -> list[torch.Tensor]:
    """One Hutchinson estimate u ⊙ (H u) of the Hessian diagonal (Sophia-H).

    u ~ Rademacher (±1, one per coordinate, drawn with ``generator``), g =
    ∂loss/∂θ with ``create_graph=True``, Hu = ∂⟨g, u⟩/∂θ.  E[u ⊙ Hu] = diag(H)
    because E[u_i u_j] = δ_ij.  Put the result into ``p.grad`` and call
    ``optimizer.update_hessian(squared=False)``.  A parameter the loss does not
    use gets an all-zero estimate.

    Raises:
        RuntimeError: when the loss cannot be differentiated twice (autograd
            raises, or a gradient comes back detached from the graph).
    """
    params = list(params)
    try:
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    except RuntimeError as err:
        raise RuntimeError(f"hutchinson_diagonal: {_HUTCHINSON_HINT} (autograd: {err})") from err
    detached = [i for i, g in enumerate(grads) if g is not None and g.grad_fn is None]
    if detached:
        raise RuntimeError(
            f"hutchinson_diagonal: the gradient of parameter(s) {detached} has no graph to "
            f"differentiate again (no grad_fn). {_HUTCHINSON_HINT}"
        )
    used = [i for i, g in enumerate(grads) if g is not None]
    us = [_rademacher(p, generator) for p in params]
    hvps: tuple = ()
    if used:
        try:
            hvps = torch.autograd.grad(
                [grads[i] for i in used],
                params,
                grad_outputs=[us[i] for i in used],
                allow_unused=True,
            )
        except RuntimeError as err:
            raise RuntimeError(f"hutchinson_diagonal: {_HUTCHINSON_HINT} (autograd: {err})") from err
    estimates = []
    for i, p in enumerate(params):
        hvp = hvps[i] if hvps else None
        if hvp is None:
            estimates.append(torch.zeros_like(p))
        else:
            estimates.append((us[i] * hvp).detach())
    return estimates
