"""Preconditioning on quadratics with constructed spectra: GD iterations against the condition number.

The chapter's worked example 1 and B.3. On ``f(theta) = theta^T H theta / 2 - b^T theta`` with
a Hessian built to have a chosen spectrum, gradient descent with the step ``2 / (mu + L)`` is
run to a relative error ``tol`` and its iteration count is set beside the theory's
``ceil(log tol / log((kappa - 1)/(kappa + 1)))`` (:mod:`multilens.theory.curvature`). From the
worst-case start (equal error on the extreme eigenvectors) the theory's count is attained
exactly; from a random start it is an upper bound. ``mu`` and ``L`` are estimated by Lanczos
from matvecs, as they would be for a model, and compared with the constructed spectrum.

Diagonal (Jacobi) preconditioning ``P = diag(H)`` is steepest descent in the ``P`` inner
product (B.3): GD on ``P^{-1/2} H P^{-1/2}`` in the coordinates ``z = P^{1/2} theta``. On
``H = S M S`` with a badly scaled diagonal ``S`` and a well-conditioned ``M`` it removes ``S``
entirely (``P^{-1/2} H P^{-1/2} = diag(M)^{-1/2} M diag(M)^{-1/2}``), so the gain is the ratio of
the two theory counts; ``P = diag(H)^{-1}`` is run as the deliberately bad control.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from multilens.errors import ConfigError, ConvergenceWarning
from multilens.linalg import dense_matvec, lanczos
from multilens.seeding import SeedLike, as_generator
from multilens.theory.curvature import gd_iterations, gd_rate, optimal_step
from multilens.validation import check_int


def constructed_spectrum(dim: int, kappa: float) -> np.ndarray:
    """Eigenvalues geometrically spaced from 1 to ``kappa`` (both ends included)."""
    check_int("dim", dim, 2)
    if not kappa >= 1.0:
        raise ConfigError(f"`kappa` must be >= 1; got {kappa!r}.")
    return np.geomspace(1.0, kappa, dim)


def random_orthogonal(dim: int, seed: SeedLike) -> np.ndarray:
    """A Haar-random orthogonal matrix (QR of a Gaussian matrix with the sign fix of Mezzadri 2007)."""
    q, r = np.linalg.qr(as_generator(seed).standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))


def with_spectrum(eigenvalues: np.ndarray, seed: SeedLike) -> tuple[np.ndarray, np.ndarray]:
    """(H, Q) with H = Q diag(eigenvalues) Q^T, symmetric to rounding."""
    q = random_orthogonal(eigenvalues.size, seed)
    h = (q * eigenvalues) @ q.T
    return 0.5 * (h + h.T), q


@dataclass(frozen=True)
class GDRun:
    iterations: int
    converged: bool
    final_error: float


def gd_to_tolerance(h: np.ndarray, e0: np.ndarray, step: float, tol: float, max_iter: int) -> GDRun:
    """Iterate the error map ``e <- (I - step H) e`` (GD on the quadratic) until ``||e|| <= tol ||e0||``.

    GD's error evolves independently of ``b`` (``e_t = theta_t - theta*``), so the error itself is
    iterated: no solve is needed to know ``theta*``.
    """
    e = e0.copy()
    target = tol * float(np.linalg.norm(e0))
    for t in range(1, max_iter + 1):
        e = e - step * (h @ e)
        err = float(np.linalg.norm(e))
        if err <= target:
            return GDRun(t, True, err / float(np.linalg.norm(e0)))
    warnings.warn(
        f"gradient descent did not reach relative error {tol:g} in {max_iter} steps; the count is censored at the cap.",
        ConvergenceWarning,
        stacklevel=2,
    )
    return GDRun(max_iter, False, float(np.linalg.norm(e)) / float(np.linalg.norm(e0)))


@dataclass(frozen=True)
class ConditioningRow:
    kappa: float
    lanczos_mu: float
    lanczos_L: float
    lanczos_converged: bool
    lanczos_rel_err: float
    theory_iterations: int
    worst_iterations: int
    worst_converged: bool
    random_iterations: int
    random_converged: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def extremes(h: np.ndarray, seed: SeedLike) -> tuple[float, float, bool]:
    """(mu, L, converged) of a symmetric positive definite matrix by Lanczos (from matvecs).

    The smallest eigenvalue's residual cannot fall below rounding, about ``eps * L``; the
    absolute tolerance ``1e-12 * L`` keeps its convergence test meaningful when kappa is huge.
    """
    mv, dim = dense_matvec(h)
    # tol 1e-8 on residuals gives eigenvalues to ~1e-16 relative here (error <= residual^2 / gap).
    top = lanczos(mv, dim, 1, "LA", tol=1e-8, seed=seed, return_eigenvectors=False, deflation_check=False)
    big = float(top.eigenvalues[0])
    bot = lanczos(
        mv, dim, 1, "SA", tol=1e-8, atol=1e-12 * abs(big), seed=seed, return_eigenvectors=False, deflation_check=False
    )
    return float(bot.eigenvalues[0]), big, top.converged and bot.converged


def condition_sweep(
    dim: int, kappas: tuple[float, ...], tol: float, seed: SeedLike, max_iter_factor: float = 3.0
) -> list[ConditioningRow]:
    """GD iterations to ``tol`` against kappa, from the worst-case and from a random start."""
    rng = as_generator(seed)
    rows = []
    for kappa in kappas:
        lam = constructed_spectrum(dim, kappa)
        h, q = with_spectrum(lam, rng)
        mu, big, ok = extremes(h, rng)
        rel = max(abs(mu - lam[0]) / lam[0], abs(big - lam[-1]) / lam[-1])
        step = optimal_step(mu, big)
        theory = gd_iterations(big / mu, tol)
        cap = int(max_iter_factor * theory) + 10
        worst = (q[:, 0] + q[:, -1]) / math.sqrt(2.0)  # equal error on both extreme eigenvectors
        w = gd_to_tolerance(h, worst, step, tol, cap)
        r = gd_to_tolerance(h, rng.standard_normal(dim), step, tol, cap)
        rows.append(
            ConditioningRow(kappa, mu, big, ok, rel, theory, w.iterations, w.converged, r.iterations, r.converged)
        )
    return rows


@dataclass(frozen=True)
class PreconditionRow:
    scale_range: float  # max/min of the diagonal scaling S
    kappa: float  # kappa(H)
    kappa_jacobi: float  # kappa(P^-1/2 H P^-1/2), P = diag(H)
    kappa_bad: float  # the control P = diag(H)^-1
    theory_plain: int
    measured_plain: int
    plain_converged: bool
    theory_jacobi: int
    measured_jacobi: int
    jacobi_converged: bool
    theory_bad: int
    measured_bad: int
    bad_converged: bool

    @property
    def gain_measured(self) -> float:
        return self.measured_plain / max(self.measured_jacobi, 1)

    @property
    def gain_theory(self) -> float:
        return self.theory_plain / max(self.theory_jacobi, 1)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__) | {"gain_measured": self.gain_measured, "gain_theory": self.gain_theory}


def _preconditioned_run(
    h: np.ndarray, p_diag: np.ndarray, tol: float, cap: int, seed: SeedLike
) -> tuple[float, int, GDRun]:
    """GD with P^-1 on H, as plain GD on P^-1/2 H P^-1/2 (z = P^1/2 theta), worst-case start in z."""
    s = 1.0 / np.sqrt(p_diag)
    ht = (h * s[:, None]) * s[None, :]
    ht = 0.5 * (ht + ht.T)
    mu, big, _ = extremes(ht, seed)
    kappa = big / mu
    theory = gd_iterations(kappa, tol)
    vals, vecs = np.linalg.eigh(ht)
    start = (vecs[:, 0] + vecs[:, -1]) / math.sqrt(2.0)
    run = gd_to_tolerance(ht, start, optimal_step(mu, big), tol, min(cap, int(3 * theory) + 10))
    return kappa, theory, run


def preconditioning_sweep(
    dim: int, kappa_m: float, scale_ranges: tuple[float, ...], tol: float, seed: SeedLike, max_iter: int = 200_000
) -> list[PreconditionRow]:
    """H = S M S with kappa(M) = ``kappa_m`` and log-uniform S spanning each scale range."""
    rng = as_generator(seed)
    m, _ = with_spectrum(constructed_spectrum(dim, kappa_m), rng)
    rows = []
    for sr in scale_ranges:
        s = np.exp(rng.uniform(0.0, math.log(sr), dim)) if sr > 1 else np.ones(dim)
        h = (m * s[:, None]) * s[None, :]
        h = 0.5 * (h + h.T)
        k_plain, t_plain, r_plain = _preconditioned_run(h, np.ones(dim), tol, max_iter, rng)
        k_jac, t_jac, r_jac = _preconditioned_run(h, np.diag(h).copy(), tol, max_iter, rng)
        # The control only has to show it is worse than no preconditioner: cap it at twice the plain
        # theory count (a censored count is reported as not converged, with a warning).
        k_bad, t_bad, r_bad = _preconditioned_run(h, 1.0 / np.diag(h), tol, min(max_iter, 2 * t_plain + 10), rng)
        rows.append(
            PreconditionRow(
                float(sr),
                k_plain,
                k_jac,
                k_bad,
                t_plain,
                r_plain.iterations,
                r_plain.converged,
                t_jac,
                r_jac.iterations,
                r_jac.converged,
                t_bad,
                r_bad.iterations,
                r_bad.converged,
            )
        )
    return rows


def theory_curve(kappas: np.ndarray, tol: float) -> np.ndarray:
    return np.array([gd_iterations(float(k), tol) for k in kappas])


__all__ = [
    "ConditioningRow",
    "PreconditionRow",
    "condition_sweep",
    "constructed_spectrum",
    "gd_rate",
    "gd_to_tolerance",
    "preconditioning_sweep",
    "theory_curve",
    "with_spectrum",
]
