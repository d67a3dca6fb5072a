"""Optimizers for unlearning: SophiaG (`sophia.py`, plain torch), the one-shot influence step that reuses its Hessian
mode (`influence.py`), the Hessian-diagonal estimators that feed them
(`hessian.py` formulas, `estimators.py` the registry by name) and the engine-specific refresh (`refresh.py`).

Imports nothing from the trainer.
"""

from .estimators import ESTIMATORS, HessianEstimator, RefreshContext, estimator_names, get_estimator, register_estimator
from .hessian import EMPIRICAL_SCALE, gnb_loss, hutchinson_diagonal
from .influence import InfluenceStep
from .refresh import can_reuse_step_forward, recording_logits, refresh_hessian
from .sophia import SophiaG

__all__ = [
    "EMPIRICAL_SCALE",
    "ESTIMATORS",
    "HessianEstimator",
    "InfluenceStep",
    "RefreshContext",
    "SophiaG",
    "can_reuse_step_forward",
    "estimator_names",
    "get_estimator",
    "gnb_loss",
    "hutchinson_diagonal",
    "recording_logits",
    "refresh_hessian",
    "register_estimator",
]
