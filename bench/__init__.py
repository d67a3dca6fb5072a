"""Benchmarks of hf-unlearn: speed (P1-P4, ``make bench``) and quality (P5, P6, P8, P9, ``make bench-quality``).

Every module has ``ID``, ``MEASURE``, ``TARGET`` and ``run(ctx) -> record``; see ``docs/benchmarks.md``.
"""

from __future__ import annotations

import importlib

_MODULES = {
    "P1": "p1_trainer_overhead",
    "P2": "p2_sophia",
    "P3": "p3_undial",
    "P4": "p4_eval",
    "P5": "p5_sophia_quality",
    "P6": "p6_undial_lr",
    "P8": "p8_sequential",
    "P9": "p9_muse",
}
SPEED = ("P1", "P2", "P3", "P4")
QUALITY = ("P5", "P6", "P8", "P9")


class _Lazy(dict):
    """Imports a bench module on first use (the quality benches need nothing of the speed ones)."""

    def __missing__(self, key):
        if key not in _MODULES:
            raise KeyError(key)
        module = importlib.import_module(f"{__name__}.{_MODULES[key]}")
        self[key] = module
        return module

    def __contains__(self, key):
        return key in _MODULES

    def __iter__(self):
        return iter(_MODULES)


BENCHES = _Lazy()
