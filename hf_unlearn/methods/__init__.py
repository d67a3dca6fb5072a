"""Unlearning methods, registered by name: one `Method` definition each (see `base.py`).

Adding a method = a module here with its loss (formula and paper in the docstring) and its
`register_method(Method(...))`, one import line below, its recipe(s) and its tests.
"""

from .base import (  # noqa: F401
    METHODS, Hyperparameter, Method, MethodSettings, RetainDual, get_method, hyperparameters, method_names,
    register_method,
)

# Built-in methods, in the order they are listed (--help, errors).
from . import gradient, npo, idk, undial, rmu, reweighted, ceu, pdu  # noqa: E402,F401
