"""multilens: measure the mathematical structure of training runs against the theorems that predict it.

The curated public API. Lenses live in :mod:`multilens.lenses` (see ``lenses.registry``); the
curvature functions are also at :mod:`multilens.curvature`; the capstone is
:func:`multilens.protocol.capstone.run_capstone`.
"""

from multilens.errors import (
    ConfigError,
    ConvergenceWarning,
    DataError,
    MultilensError,
    StoreError,
)
from multilens.results import Assumption, Check, Estimate, Figure, LensResult, Table

__version__ = "0.1.0"

__all__ = [
    "Assumption",
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
