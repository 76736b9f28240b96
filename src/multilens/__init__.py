"""multilens: measure the mathematical structure of training runs against the theorems that predict it.

The curated public API. Your own model: :class:`Subject`, :func:`diagnose` (post hoc) and
:class:`Monitor` (during training), imported lazily so that ``import multilens`` stays light.
Lenses live in :mod:`multilens.lenses` (see ``lenses.registry``); the curvature functions are
also at :mod:`multilens.curvature`; the capstone is :func:`multilens.protocol.capstone.run_capstone`.
"""

from typing import Any

from multilens.errors import (
    ConfigError,
    ConvergenceWarning,
    DataError,
    MultilensError,
    StoreError,
)
from multilens.results import Assumption, Check, Estimate, Figure, LensResult, Table

__version__ = "0.1.0"

_LAZY = {
    "Subject": "multilens.subject",
    "diagnose": "multilens.diagnosis",
    "DiagnoseReport": "multilens.diagnosis",
    "Monitor": "multilens.monitor",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'multilens' has no attribute {name!r}")


__all__ = [
    "Assumption",
    "DiagnoseReport",
    "Monitor",
    "Subject",
    "diagnose",
    "Check",
    "ConfigError",
    "ConvergenceWarning",
    "DataError",
    "Estimate",
    "Figure",
    "LensResult",
    "MultilensError",
    "StoreError",
    "Table",
    "__version__",
]
