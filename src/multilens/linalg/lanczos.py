"""Lanczos iteration with full reorthogonalization for a few extreme eigenpairs of a symmetric operator.

Follows Golub & Van Loan, *Matrix Computations* (4th ed.), sections 10.1-10.3: the Krylov
basis is reorthogonalized against every previous vector at every step (twice, so orthogonality
holds to working precision), the projected tridiagonal matrix is solved with LAPACK's
``stebz``/``stein`` through :func:`scipy.linalg.eigh_tridiagonal`, and convergence is judged on
residuals, ``||A y - theta y|| <= tol * |theta| + atol``, never on how little a Ritz value moved.

Three things the tools users reach for get wrong and this module does not:

* It never stops silently at the iteration cap: ``converged`` is computed from explicit residuals
  (one extra product per wanted pair, so they are measured, not estimated) and a
  :class:`~multilens.errors.ConvergenceWarning` is raised when the cap is hit.
* A Krylov space started from one vector holds one copy of a repeated eigenvalue, so plain
  Lanczos can return ``[5, 3, 2]`` with tiny residuals when the spectrum is ``[5, 5, 3, ...]``.
  With ``deflation_check`` (the default) a second Lanczos run on the complement of the converged
  vectors, given as many steps as the first run needed, looks for a wanted eigenvalue that was
  missed and merges it by Rayleigh-Ritz; when that run converges short of the wanted ones it
  reports the next eigenvalue (``next_eigenvalue``), whose gap bounds the eigenvector error
  (Davis-Kahan: sin angle <= residual / gap).
* An invariant subspace (beta = 0) restarts from a fresh random vector orthogonal to the basis
  instead of dividing by zero.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.linalg import eigh, eigh_tridiagonal

from multilens.errors import ConfigError, ConvergenceWarning
from multilens.linalg.operator import (
    CountingMatvec,
    Matvec,
    check_dim,
    check_k,
    check_tol,
    check_which,
    order_for,
    orthogonalize,
)
from multilens.seeding import SeedLike, as_generator

_EPS = np.finfo(np.float64).eps


@dataclass(frozen=True)
class EigenResult:
    """Eigenpairs of a symmetric operator, with the evidence for how accurate they are.

    ``eigenvalues`` are sorted as ``which`` says (LA: descending, SA: ascending, LM: descending
    magnitude); ``eigenvectors`` (when requested) are the matching orthonormal columns, shape
    (dim, k). ``residuals[i]`` is ``||A y_i - theta_i y_i||`` computed with explicit products.
    ``converged`` means every residual meets ``tol * |theta_i| + atol``. ``next_eigenvalue`` is
    the first eigenvalue past the wanted ones found by the deflation check (None when the check
    did not run), so ``gap`` bounds eigenvector errors.
    """

    eigenvalues: np.ndarray
    residuals: np.ndarray
    converged: bool
    n_iter: int
    n_matvec: int
    which: str
    tol: float
    method: str
    eigenvectors: np.ndarray | None = None
    atol: float = 0.0
    n_restarts: int = 0
    deflation_checked: bool = False
    n_missed_found: int = 0
    next_eigenvalue: float | None = None
    note: str = ""
    schema_version: int = 1

    @property
    def relative_residuals(self) -> np.ndarray:
        return self.residuals / np.maximum(np.abs(self.eigenvalues), np.finfo(np.float64).tiny)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (eigenvectors are left out; they belong in arrays, not JSON)."""
        return {
            "schema_version": self.schema_version,
            "method": self.method,
            "which": self.which,
            "eigenvalues": [float(x) for x in self.eigenvalues],
            "residuals": [float(x) for x in self.residuals],
            "relative_residuals": [float(x) for x in self.relative_residuals],
            "converged": bool(self.converged),
            "n_iter": int(self.n_iter),
            "n_matvec": int(self.n_matvec),
            "tol": float(self.tol),
            "atol": float(self.atol),
            "n_restarts": int(self.n_restarts),
            "deflation_checked": bool(self.deflation_checked),
            "n_missed_found": int(self.n_missed_found),
            "next_eigenvalue": None if self.next_eigenvalue is None else float(self.next_eigenvalue),
            "note": self.note,
        }


@dataclass(frozen=True)
class _Run:
    """The outcome of one Lanczos run (before the deflation check)."""

    theta: np.ndarray  # (k,) wanted Ritz values, sorted as `which`
    y: np.ndarray  # (dim, k) Ritz vectors
    ay: np.ndarray  # (dim, k) A @ y, from explicit products
    n_iter: int
    n_restarts: int
    exhausted: bool  # the basis spans the whole (deflated) space: the Ritz pairs are exact


def _converged_mask(residuals: np.ndarray, theta: np.ndarray, tol: float, atol: float) -> np.ndarray:
    return residuals <= tol * np.abs(theta) + atol


def _fresh_vector(rng: np.random.Generator, dim: int, basis: np.ndarray) -> tuple[np.ndarray, float]:
    """A random unit vector orthogonal to the rows of ``basis`` (and the norm before scaling)."""
    w = orthogonalize(rng.standard_normal(dim), basis)
    nrm = float(np.linalg.norm(w))
    return (w / nrm if nrm > 0 else w), nrm


def _run(
    op: CountingMatvec,
    k: int,
    which: str,
    tol: float,
    atol: float,
    max_iter: int,
    rng: np.random.Generator,
    v0: np.ndarray | None,
    locked: np.ndarray,
) -> _Run:
    """Lanczos with full reorthogonalization against the basis and the ``locked`` rows."""
    dim = op.dim
    room = dim - locked.shape[0]  # dimension of the space the iteration can explore
    cap = min(max_iter, room)
    basis = np.zeros((cap + 1, dim))  # rows: Lanczos vectors; one spare for the next vector
    alphas: list[float] = []
    betas: list[float] = []  # betas[j] couples vectors j and j+1
    start = rng.standard_normal(dim) if v0 is None else np.asarray(v0, dtype=np.float64).copy()
    start = orthogonalize(start, locked)
    nrm = float(np.linalg.norm(start))
    if nrm == 0.0 or not np.isfinite(nrm):
        start, nrm = _fresh_vector(rng, dim, locked)
    basis[0] = start / nrm
    anorm = 0.0
    n_restarts = 0
    last_verified = -5
    m = 0
    best: _Run | None = None
    while True:
        v = basis[m]
        w = op(v)
        alpha = float(v @ w)
        w = w - alpha * v - (betas[-1] * basis[m - 1] if m > 0 else 0.0)
        w = orthogonalize(w, basis[: m + 1])
        w = orthogonalize(w, locked)
        beta = float(np.linalg.norm(w))
        alphas.append(alpha)
        m += 1
        anorm = max(anorm, abs(alpha) + beta + (betas[-1] if betas else 0.0))
        breakdown = beta <= 100.0 * _EPS * max(anorm, np.finfo(np.float64).tiny)
        exhausted = m >= room
        at_cap = m >= cap
        if m >= k:
            theta_all, s = eigh_tridiagonal(np.array(alphas), np.array(betas[: m - 1]))
            idx = order_for(which, theta_all)[:k]
            theta = theta_all[idx]
            # The Lanczos relation A V = V T + beta v_{m+1} e_m^T gives each Ritz residual as
            # |beta * (last component of its eigenvector of T)|, for free.
            beta_eff = 0.0 if (breakdown or exhausted) else beta
            est = np.abs(beta_eff * s[-1, idx])
            # After a failed verification wait a few steps: each verification costs k products.
            want_verify = bool(np.all(_converged_mask(est, theta, tol, atol))) and m >= last_verified + 5
            if want_verify or at_cap or exhausted:
                y = basis[:m].T @ s[:, idx]  # (dim, k)
                ay = np.column_stack([op(y[:, i]) for i in range(k)])
                last_verified = m
                best = _Run(theta, y, ay, m, n_restarts, exhausted)
                res = np.linalg.norm(ay - y * theta, axis=0)
                if np.all(_converged_mask(res, theta, tol, atol)) or at_cap or exhausted:
                    return best
        if breakdown:
            # An invariant subspace: continue in its orthogonal complement; T stays tridiagonal
            # with a zero coupling, so the Ritz values of both blocks come out of one solve.
            w, nrm = _fresh_vector(rng, dim, np.vstack([basis[:m], locked]))
            if nrm == 0.0:
                assert best is not None
                return best
            betas.append(0.0)
            basis[m] = w
            n_restarts += 1
        else:
            betas.append(beta)
            basis[m] = w / beta


def _probe_missed(
    op: CountingMatvec,
    which: str,
    threshold: float,
    margin: float,
    budget: int,
    tol: float,
    atol: float,
    rng: np.random.Generator,
    locked: np.ndarray,
) -> tuple[bool, float, bool, int]:
    """Lanczos in the complement of ``locked``: does a wanted eigenvalue lie beyond ``threshold``?

    Runs at most ``budget`` steps and stops as soon as the extreme Ritz value crosses
    ``threshold`` by ``margin`` (Ritz values move monotonically toward the extreme eigenvalue, so a
    crossing is conclusive) or converges short of it. Returns (crossed, extreme Ritz value,
    whether that value converged, steps).
    """
    dim = op.dim
    room = dim - locked.shape[0]
    cap = min(budget, room)
    basis = np.zeros((cap + 1, dim))
    alphas: list[float] = []
    betas: list[float] = []
    v, _ = _fresh_vector(rng, dim, locked)
    basis[0] = v
    anorm = 0.0
    value = float("nan")
    for m in range(1, cap + 1):
        v = basis[m - 1]
        w = op(v)
        alpha = float(v @ w)
        w = w - alpha * v - (betas[-1] * basis[m - 2] if m > 1 else 0.0)
        w = orthogonalize(orthogonalize(w, basis[:m]), locked)
        beta = float(np.linalg.norm(w))
        alphas.append(alpha)
        anorm = max(anorm, abs(alpha) + beta)
        theta_all, s = eigh_tridiagonal(np.array(alphas), np.array(betas))
        j = int(order_for(which, theta_all)[0])
        value = float(theta_all[j])
        if _beyond(which, value, threshold, margin):
            return True, value, False, m
        invariant = beta <= 100.0 * _EPS * max(anorm, np.finfo(np.float64).tiny) or m >= room
        if invariant or abs(beta * s[-1, j]) <= tol * abs(value) + atol:
            return False, value, True, m
        if m < cap:
            betas.append(beta)
            basis[m] = w / beta
    return False, value, False, cap


def _rayleigh_ritz(z: np.ndarray, az: np.ndarray, k: int, which: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best ``k`` wanted pairs from span(z) given A z (no new products)."""
    q, r = np.linalg.qr(z)
    aq = np.linalg.solve(r.T, az.T).T  # A q = A z r^{-1}
    g = q.T @ aq
    vals, u = eigh((g + g.T) / 2.0)
    idx = order_for(which, vals)[:k]
    return vals[idx], q @ u[:, idx], aq @ u[:, idx]


def _beyond(which: str, candidate: float, last: float, margin: float) -> bool:
    if which == "LA":
        return candidate > last + margin
    if which == "SA":
        return candidate < last - margin
    return abs(candidate) > abs(last) + margin


def lanczos(
    matvec: Matvec,
    dim: int,
    k: int = 3,
    which: str = "LA",
    *,
    tol: float = 1e-8,
    atol: float = 0.0,
    max_iter: int | None = None,
    seed: SeedLike = 0,
    v0: np.ndarray | None = None,
    return_eigenvectors: bool = True,
    deflation_check: bool = True,
    ortho_against: np.ndarray | None = None,
) -> EigenResult:
    """The ``k`` wanted eigenpairs of the symmetric operator ``matvec`` (dimension ``dim``).

    ``which``: "LA" largest algebraic, "SA" smallest algebraic, "LM" largest magnitude.
    ``tol``/``atol``: a pair is converged when ``||A y - theta y|| <= tol*|theta| + atol``.
    ``max_iter``: cap on Lanczos steps per run (default ``min(dim, max(300, 20 k))``); at the cap
    the result has ``converged=False`` and a ConvergenceWarning is raised.
    ``deflation_check``: after convergence, look for a missed wanted eigenvalue (e.g. the second
    copy of a repeated one) in the complement of the converged vectors; costs at most as many
    products as the first run (more only when something was missed and must be converged).
    ``ortho_against``: orthonormal columns (dim, p) to work in the complement of (locking).
    """
    dim = check_dim(dim)
    locked = np.zeros((0, dim))
    if ortho_against is not None:
        locked = np.asarray(ortho_against, dtype=np.float64).reshape(dim, -1).T.copy()
    room = dim - locked.shape[0]
    k = check_k(k, max(room, 0)) if room > 0 else check_k(k, 0)
    which = check_which(which)
    tol = check_tol("tol", tol)
    atol = check_tol("atol", atol, allow_zero=True)
    if max_iter is None:
        max_iter = min(dim, max(300, 20 * k))
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < k:
        raise ConfigError(f"`max_iter` must be an int >= k ({k}); got {max_iter!r}.")
    rng = as_generator(seed)
    op = CountingMatvec(matvec, dim)

    run = _run(op, k, which, tol, atol, int(max_iter), rng, v0, locked)
    theta, y, ay = run.theta, run.y, run.ay
    n_iter, n_restarts = run.n_iter, run.n_restarts
    residuals = np.linalg.norm(ay - y * theta, axis=0)
    converged = bool(np.all(_converged_mask(residuals, theta, tol, atol)))
    n_missed = 0
    next_eig: float | None = None
    checked = False
    notes: list[str] = []
    if deflation_check and converged and not run.exhausted and room - k > 0:
        checked = True
        # A missed copy of a wanted eigenvalue is the extreme eigenvalue of the operator on the
        # complement of the converged vectors, so a fresh Lanczos run there finds it about as
        # fast as the first run found its neighbours: give the probe the first run's step count.
        budget = max(run.n_iter, 10)
        for _ in range(min(k, room - k)):
            comp = np.vstack([locked, y.T])
            margin = tol * abs(float(theta[-1])) + atol
            crossed, value, value_ok, steps = _probe_missed(
                op, which, float(theta[-1]), margin, budget, tol, atol, rng, comp
            )
            n_iter += steps
            if not crossed:
                if value_ok:
                    next_eig = value
                else:
                    notes.append(
                        f"deflation check: no wanted eigenvalue appeared in the complement of the "
                        f"converged vectors within {steps} Lanczos steps"
                    )
                break
            # A wanted eigenvalue was missed (e.g. a repeated one): converge it, then merge it
            # with the others by Rayleigh-Ritz on their span.
            n_missed += 1
            sub = lanczos(
                matvec,
                dim,
                1,
                which,
                tol=tol,
                atol=atol,
                max_iter=max_iter,
                seed=rng,
                deflation_check=False,
                ortho_against=comp.T,
            )
            op.count += sub.n_matvec
            n_iter += sub.n_iter
            z = np.hstack([y, sub.eigenvectors])
            az = np.hstack([ay, op(sub.eigenvectors[:, 0])[:, None]])
            theta, y, ay = _rayleigh_ritz(z, az, k, which)
            residuals = np.linalg.norm(ay - y * theta, axis=0)
            converged = bool(np.all(_converged_mask(residuals, theta, tol, atol)))
            if not converged:
                notes.append("after merging a missed eigenvalue the residuals no longer meet tol")
                break
        if n_missed:
            notes.append(f"the deflation check found {n_missed} wanted eigenvalue(s) plain Lanczos missed")
    if run.exhausted:
        notes.append("the Krylov basis spans the whole space: the eigenpairs are exact up to rounding")
    if not converged:
        warnings.warn(
            f"lanczos stopped after {n_iter} iterations ({op.count} products) with relative residuals "
            f"{np.array2string(residuals / np.maximum(np.abs(theta), 1e-300), precision=2)} above tol={tol:g}; "
            "raise `max_iter` or loosen `tol`.",
            ConvergenceWarning,
            stacklevel=2,
        )
    return EigenResult(
        eigenvalues=theta.copy(),
        residuals=residuals,
        converged=converged,
        n_iter=n_iter,
        n_matvec=op.count,
        which=which,
        tol=tol,
        atol=atol,
        method="lanczos (full reorthogonalization" + (", deflation check)" if checked else ")"),
        eigenvectors=y.copy() if return_eigenvectors else None,
        n_restarts=n_restarts,
        deflation_checked=checked,
        n_missed_found=n_missed,
        next_eigenvalue=next_eig,
        note="; ".join(notes),
    )


@dataclass(frozen=True)
class Tridiagonal:
    """A Lanczos tridiagonalization from one start vector (the raw material of quadrature)."""

    alphas: np.ndarray  # (m,)
    betas: np.ndarray  # (m-1,)
    last_beta: float  # coupling to the next (unbuilt) vector; 0 when the Krylov space is invariant
    n_matvec: int
    invariant: bool


def tridiagonalize(matvec: Matvec, v0: np.ndarray, n_steps: int) -> Tridiagonal:
    """``n_steps`` Lanczos steps from ``v0`` with full reorthogonalization, no restarts.

    Stops early when the Krylov space becomes invariant: then the Gauss quadrature it defines
    for ``v0``'s spectral measure is exact, which is what stochastic Lanczos quadrature needs.
    """
    v0 = np.asarray(v0, dtype=np.float64)
    dim = int(v0.shape[0])
    op = CountingMatvec(matvec, dim)
    n_steps = min(int(n_steps), dim)
    basis = np.zeros((n_steps, dim))
    basis[0] = v0 / np.linalg.norm(v0)
    alphas: list[float] = []
    betas: list[float] = []
    anorm = 0.0
    beta = 0.0
    for j in range(n_steps):
        w = op(basis[j])
        alpha = float(basis[j] @ w)
        w = w - alpha * basis[j] - (betas[-1] * basis[j - 1] if j > 0 else 0.0)
        w = orthogonalize(w, basis[: j + 1])
        beta = float(np.linalg.norm(w))
        alphas.append(alpha)
        anorm = max(anorm, abs(alpha) + beta)
        if beta <= 100.0 * _EPS * max(anorm, np.finfo(np.float64).tiny):
            return Tridiagonal(np.array(alphas), np.array(betas), 0.0, op.count, True)
        if j + 1 < n_steps:
            betas.append(beta)
            basis[j + 1] = w / beta
    return Tridiagonal(np.array(alphas), np.array(betas), beta, op.count, len(alphas) == dim)
