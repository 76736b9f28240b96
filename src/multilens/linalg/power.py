"""Power iteration with deflation: the baseline the Lanczos solver is measured against.

The classical method (Golub & Van Loan, section 7.3.1; PyHessian's ``eigenvalues``): iterate
``v <- A v / ||A v||`` from a random start, projecting out the eigenvectors already found
(deflation by orthogonal projection), and take the Rayleigh quotient. It finds the eigenvalues of
largest magnitude; its error shrinks like ``(|lambda_{i+1}| / |lambda_i|)^(2t)``, so close
eigenvalues cost many products. Unlike PyHessian, which stops when the Rayleigh quotient moves
less than ``tol`` between two steps (and so stops early on slow convergence), this stops on the
residual ``||A v - theta v|| <= tol * |theta|`` and warns at the cap.
"""

from __future__ import annotations

import warnings

import numpy as np

from multilens.errors import ConfigError, ConvergenceWarning
from multilens.linalg.lanczos import EigenResult
from multilens.linalg.operator import CountingMatvec, Matvec, check_dim, check_k, check_tol, orthogonalize
from multilens.seeding import SeedLike, as_generator


def power_iteration(
    matvec: Matvec,
    dim: int,
    k: int = 1,
    *,
    tol: float = 1e-8,
    max_iter: int = 1000,
    seed: SeedLike = 0,
    return_eigenvectors: bool = True,
) -> EigenResult:
    """The ``k`` largest-magnitude eigenpairs by power iteration with deflation.

    ``max_iter`` caps the iterations per eigenpair. Each iteration costs one product; the
    residual of the current iterate comes with it (``A v`` is the next iterate's numerator).
    """
    dim = check_dim(dim)
    k = check_k(k, dim)
    tol = check_tol("tol", tol)
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ConfigError(f"`max_iter` must be an int >= 1; got {max_iter!r}.")
    rng = as_generator(seed)
    op = CountingMatvec(matvec, dim)
    found = np.zeros((0, dim))  # rows: converged eigenvectors
    values: list[float] = []
    residuals: list[float] = []
    n_iter = 0
    all_converged = True
    for _ in range(k):
        v = orthogonalize(rng.standard_normal(dim), found)
        v /= np.linalg.norm(v)
        theta, res, ok = 0.0, np.inf, False
        for _ in range(int(max_iter)):
            w = orthogonalize(op(v), found)
            n_iter += 1
            theta = float(v @ w)
            res = float(np.linalg.norm(w - theta * v))
            if res <= tol * abs(theta):
                ok = True
                break
            nrm = float(np.linalg.norm(w))
            if nrm == 0.0:  # v lies in the null space of the deflated operator: theta = 0 exactly
                ok = True
                break
            v = w / nrm
        all_converged &= ok
        values.append(theta)
        residuals.append(res)
        found = np.vstack([found, v])
    vals = np.array(values)
    res_arr = np.array(residuals)
    if not all_converged:
        warnings.warn(
            f"power iteration hit max_iter={max_iter} per eigenpair with relative residuals "
            f"{np.array2string(res_arr / np.maximum(np.abs(vals), 1e-300), precision=2)} above tol={tol:g}; "
            "raise `max_iter`, loosen `tol`, or use lanczos.",
            ConvergenceWarning,
            stacklevel=2,
        )
    return EigenResult(
        eigenvalues=vals,
        residuals=res_arr,
        converged=bool(all_converged),
        n_iter=n_iter,
        n_matvec=op.count,
        which="LM",
        tol=tol,
        method="power iteration with deflation",
        eigenvectors=found.T.copy() if return_eigenvectors else None,
    )
