"""InfluenceStep: one-shot influence unlearning with a damped diagonal Hessian (``--unlearn_optimizer influence``).

Influence unlearning (Koh & Liang 2017, arXiv 1703.04730; as an unlearning baseline Jia et al. 2023, arXiv
2304.04934) removes the forget set's influence with one Newton step, θ ← θ + H⁻¹∇ℓ_f(θ); SOUL (arXiv 2404.18239,
section "influence unlearning") starts from it and makes it iterative (SophiaG). Here the step is taken on the
unlearning loss L (GradDiff form L = γ·(−NLL_f) + α·R, or any method's L), with H the damped Hessian diagonal
from a chosen estimator (`hf_unlearn.optim.estimators`)::

    ḡ = mean over the optimizer steps of ∇L          (one pass over the forget set, every step)
    h̄ = mean over the steps of the estimate ĥ        (a refresh on every step's first micro-batch)
    θ ← θ − lr · ḡ / (max(h̄, 0) + damping)           (once, at the last step)

Plain torch only. It reuses SophiaG's Hessian mode (`collecting_hessian`, `fold_gradient`, `update_hessian`), so
the refresh path of `hf_unlearn.optim.refresh` — DDP averaging, DeepSpeed ZeRO-2/3 shards, LoRA adapters — and
the checkpoint handling (m and h as private fp32 copies) are the same; what differs is the fold (a plain mean
of the estimates instead of SophiaG's EMA) and the step (accumulate, then apply once).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from .sophia import _COORDS, _REFRESHES, _UNCLIPPED, SophiaG, _finite

__all__ = ["InfluenceStep"]


class InfluenceStep(SophiaG):
    r"""Accumulates the gradient and the Hessian diagonal over a run; applies one damped Newton step at its end.

    Every :meth:`step` (one per optimizer step of the run) folds ``p.grad`` into a running mean m (``exp_avg``,
    weight 1/t at the t-th step); each Hessian refresh folds its estimate into a running mean h (weight 1/k at
    the k-th refresh). While :attr:`apply_on_step` is True (the trainer sets it for the run's last step), the
    step also applies, after folding::

        θ ← θ − lr · m / (max(h, 0) + damping)

    A Hutchinson estimate may be negative (the unlearning loss has negative curvature along ascent directions):
    those coordinates take the damped gradient step lr·m/damping. No weight decay, no clipping.

    Args:
        params: parameters or param groups (a group may override ``lr``).
        lr: the step's scale η (1 = a full damped Newton step), > 0.
        damping: λ > 0, added to h (the damped Hessian of influence functions).
    """

    def __init__(self, params, lr: float = 1.0, damping: float = 1e-3):
        if not _finite(damping) or float(damping) <= 0.0:
            raise ValueError(
                f"InfluenceStep: damping must be a finite number > 0, got {damping!r}; it is added to the Hessian "
                "diagonal before dividing (default 1e-3)."
            )
        self.damping = float(damping)
        self.apply_on_step = False
        self.applied = False
        # SophiaG's checks on lr; betas, rho and weight decay are unused here.
        super().__init__(params, lr=lr, betas=(0.0, 0.0), rho=1.0, weight_decay=0.0)

    def _hessian_fold_weights(self, group: dict) -> tuple[float, float]:
        # The k-th refresh (k - 1 counted so far in the group) enters the mean with weight 1/k.
        count = group.get(_REFRESHES, 0) + 1
        return 1.0 - 1.0 / count, 1.0 / count

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], torch.Tensor]] = None):
        if self.in_hessian_mode:
            return super().step(closure)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self.empirical_hessian_scale is not None:  # the empirical estimator: h from this step's gradient
            self.update_hessian(scale=self.empirical_hessian_scale)
        for group in self.param_groups:
            if not group["params"]:  # swapped out by DeepSpeed ZeRO-3 between its sub-group steps
                continue
            coords = 0
            for (_, dtype), (params, grads, exp_avgs, hessians, steps) in self._buckets(group).items():
                low_precision = dtype in (torch.float16, torch.bfloat16)
                for param, grad, mean_grad, hessian, step in zip(params, grads, exp_avgs, hessians, steps):
                    step += 1
                    mean_grad.lerp_(grad.float() if low_precision else grad, 1.0 / float(step))
                    if self.apply_on_step:
                        target = param.float() if low_precision else param
                        target.addcdiv_(mean_grad, hessian.clamp_min(0.0).add_(self.damping), value=-group["lr"])
                        if low_precision:
                            param.copy_(target)
                    coords += param.numel()
            group[_COORDS] = coords
            group[_UNCLIPPED] = coords  # nothing is clipped
        if self.apply_on_step:
            self.applied = True
        return loss
