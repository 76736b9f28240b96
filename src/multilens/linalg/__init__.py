"""Model-free numerics on a symmetric matvec: Lanczos, power iteration, trace and density estimators.

Everything here takes a callable ``v -> A v`` on float64 NumPy vectors (optionally with a block
product ``matmat``, ``V -> A V``), the dimension and an explicit ``seed``; nothing knows about models (the model side is
:mod:`multilens.lenses.curvature.hvp`). Each kernel returns a frozen result carrying
``converged``, ``n_iter``, ``n_matvec`` and residuals or a standard error, and warns with
:class:`~multilens.errors.ConvergenceWarning` at its cap; fixed budgets (Hutchinson, Hutch++,
XTrace, SLQ) report ``converged=None``. The one Lanczos recurrence is
:class:`multilens.linalg.krylov.LanczosProcess`.
"""

from multilens.linalg.lanczos import EigenResult, Tridiagonal, lanczos, tridiagonalize
from multilens.linalg.operator import CountingMatvec, DenseOperator, Matmat, Matvec, dense_matvec
from multilens.linalg.power import power_iteration
from multilens.linalg.slq import DensityResult, gaussian_density, slq_density
from multilens.linalg.trace import TRACE_METHODS, TraceResult, hutchinson, hutchpp, trace_estimate, xtrace

__all__ = [
    "TRACE_METHODS",
    "CountingMatvec",
    "DenseOperator",
    "DensityResult",
    "EigenResult",
    "Matmat",
    "Matvec",
    "TraceResult",
    "Tridiagonal",
    "dense_matvec",
    "gaussian_density",
    "hutchinson",
    "hutchpp",
    "lanczos",
    "power_iteration",
    "slq_density",
    "trace_estimate",
    "tridiagonalize",
    "xtrace",
]
