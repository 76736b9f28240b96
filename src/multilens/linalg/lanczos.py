"""Thick-restart Lanczos for a few extreme eigenpairs of a symmetric operator, with a missed-eigenvalue re-check.

The recurrence is the one of :mod:`multilens.linalg.krylov` (full reorthogonalization, Golub &
Van Loan 4th ed. sections 10.1-10.3). The basis is bounded by ``ncv`` vectors (ARPACK's name and
default, ``max(2k+1, 20)``, raised to what fits in 64 MB): when it is full, the ``l`` best Ritz
vectors and the next Lanczos vector become the new basis (thick restart, Wu & Simon 2000; the same subspace ARPACK's
implicit restart keeps, Sorensen 1992). Unlike ARPACK, convergence is tested after *every*
step, at no cost in products: the Lanczos relation gives each Ritz residual as ``|beta s_m|``.
So the run stops at the first step where every wanted pair meets
``||A y - theta y|| <= tol * |theta| + atol``, never on how little a Ritz value moved.

What the result adds to ARPACK's answer, each paid for in products counted apart
(``n_matvec_check``, so the main run's ``n_matvec - n_matvec_check`` compares with ARPACK's):

* **Measured residuals.** ``residuals`` come from ``k`` explicit products ``A y`` (one block),
  not from the Lanczos relation; if they miss the tolerance the run resumes with a tighter
  internal target. At the iteration cap the result has ``converged=False`` and a
  :class:`~multilens.errors.ConvergenceWarning` is raised.
* **The missed-eigenvalue re-check.** A Krylov space started from one vector holds one copy of a
  repeated eigenvalue, so Lanczos (and ARPACK) can return ``[5, 3, 2]`` with tiny residuals when
  the spectrum is ``[5, 5, 3, ...]``. With ``deflation_check`` (the default, "bound") a short
  Lanczos probe from a random start runs on the operator deflated by the main run's *whole*
  Krylov basis (a missed copy is orthogonal to that basis, so it stays an eigenvector of the
  deflated operator while the directions already resolved are gone). It stops as soon as its
  extreme Ritz value crosses the last wanted eigenvalue (conclusive: Ritz values move
  monotonically outward), or when the Kuczynski-Wozniakowski bound (1992) on having missed an
  eigenvalue past it falls to ``check_delta`` (reported as ``miss_bound``), or when its own
  extreme Ritz pair converges short of it (to ``tol``), or at the main run's product count. A
  missed eigenvalue is converged from the probe's Ritz vector and merged by Rayleigh-Ritz.
  ``deflation_check="gap"`` is the earlier probe (complement of the converged vectors only, run
  until it converges the next eigenvalue, reported as ``next_eigenvalue`` with ``next_residual``,
  whose gap bounds the eigenvector errors: Davis-Kahan, sin angle <= residual / gap).
* **Block Lanczos** (``method="block"``): ``block_size`` start vectors, one block product per
  step (:class:`multilens.linalg.krylov.BlockLanczosProcess`), so a wanted eigenvalue of
  multiplicity up to ``block_size`` is found by the main run itself, and a model-side operator
  computes each step's products in one vectorized pass; it costs more products than the
  single-vector run (the block Krylov space spends them on ``block_size`` directions at once).
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
from multilens.linalg.krylov import BlockLanczosProcess, LanczosProcess
from multilens.linalg.operator import (
    CountingMatvec,
    Matmat,
    Matvec,
    check_dim,
    check_k,
    check_tol,
    check_which,
    order_for,
    orthogonalize,
)
from multilens.seeding import SeedLike, as_generator

_NCV_MEMORY = 64 * 2**20  # bytes of Lanczos basis the default ncv may use
_TINY_F = np.finfo(np.float64).tiny


@dataclass(frozen=True)
class EigenResult:
    """Eigenpairs of a symmetric operator, with the evidence for how accurate they are.

    ``eigenvalues`` are sorted as ``which`` says (LA: descending, SA: ascending, LM: descending
    magnitude); ``eigenvectors`` (when requested) are the matching orthonormal columns, shape
    (dim, k). ``residuals[i]`` is ``||A y_i - theta_i y_i||`` computed with explicit products.
    ``converged`` means every residual meets ``tol * |theta_i| + atol``. ``next_eigenvalue`` is
    the first eigenvalue past the wanted ones found by the deflation check (None when the check
    did not run), so ``gap`` bounds eigenvector errors. ``n_matvec`` counts every product;
    ``n_matvec_check`` the part spent on the explicit residuals and the missed-eigenvalue
    re-check (the main run, comparable with ARPACK's count, is the difference). ``miss_bound``
    (default check) bounds the probability that the check missed a wanted eigenvalue of the
    deflated operator (Kuczynski-Wozniakowski; None when the check did not run). ``ncv`` is the
    largest basis kept (thick restart when it fills; ``n_restarts`` counts restarts of either
    kind, thick or after an invariant subspace).
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
    n_matvec_check: int = 0
    next_residual: float | None = None
    ncv: int = 0
    miss_bound: float | None = None

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
            "next_residual": None if self.next_residual is None else float(self.next_residual),
            "n_matvec_check": int(self.n_matvec_check),
            "n_matvec_main": int(self.n_matvec - self.n_matvec_check),
            "ncv": int(self.ncv),
            "miss_bound": None if self.miss_bound is None else float(self.miss_bound),
            "note": self.note,
        }


@dataclass(frozen=True)
class _Run:
    """The outcome of the main thick-restart run (before the re-check)."""

    theta: np.ndarray  # (k,) wanted Ritz values, sorted as `which`
    y: np.ndarray  # (dim, k) Ritz vectors
    ay: np.ndarray  # (dim, k) A @ y, from explicit products
    n_iter: int
    n_restarts: int
    exhausted: bool  # the basis spans the whole (deflated) space: the Ritz pairs are exact
    n_verify: int  # products spent on explicit residuals
    basis: np.ndarray | None = None  # (r, dim) orthonormal rows: the main run's final Krylov basis


def _converged_mask(residuals: np.ndarray, theta: np.ndarray, tol: float, atol: float) -> np.ndarray:
    return residuals <= tol * np.abs(theta) + atol


def _n_keep(k: int, ncv: int) -> int:
    """Ritz vectors kept at a thick restart: the wanted ones and 45% of the rest of the basis.

    Keeping more than ``k`` keeps the restart from discarding the directions that are about to
    converge (Wu & Simon 2000 section 3). The fraction was chosen by measurement: over 24 dense
    test problems (4 spectra x k in {1, 3, 6} x tol in {1e-6, 1e-8}) 0.45 was the one fraction in
    {0.33, 0.4, 0.45, 0.5, 0.55, 0.6, 0.66, 0.8} never needing more products than ARPACK.
    """
    return max(k, min(ncv - 2, k + (45 * (ncv - k)) // 100))


def _run(
    op: CountingMatvec,
    k: int,
    which: str,
    tol: float,
    atol: float,
    max_iter: int,
    ncv: int,
    rng: np.random.Generator,
    v0: np.ndarray | None,
    locked: np.ndarray,
) -> _Run:
    """Thick-restart Lanczos until the wanted Ritz pairs' explicit residuals meet the tolerance."""
    dim = op.dim
    start = rng.standard_normal(dim) if v0 is None else np.asarray(v0, dtype=np.float64).reshape(dim).copy()
    proc = LanczosProcess(op, start[None, :], ncv, rng, locked=locked, on_breakdown="restart")
    target = tol
    n_thick = 0
    n_verify = 0
    steps = 0
    while True:
        proc.step()
        steps += 1
        m = int(proc.m[0])
        exhausted = bool(proc.exhausted[0])
        at_cap = steps >= max_iter
        if m >= k:
            theta_all, s, est = proc.ritz()
            idx = order_for(which, theta_all)[:k]
            theta = theta_all[idx]
            if exhausted or at_cap or bool(np.all(_converged_mask(est[idx], theta, target, atol))):
                y = proc.ritz_vectors(s[:, idx])
                before = op.count
                ay = op.matmat(y)
                n_verify += op.count - before
                res = np.linalg.norm(ay - y * theta, axis=0)
                done = bool(np.all(_converged_mask(res, theta, tol, atol)))
                if done or exhausted or at_cap or target < 1e-3 * tol:
                    return _Run(
                        theta,
                        y,
                        ay,
                        steps,
                        n_thick + int(proc.n_breakdowns[0]),
                        exhausted,
                        n_verify,
                        proc.V[0, : int(proc.m[0]) + 1],
                    )
                # The relation's residuals met the target, the measured ones did not (rounding at
                # a tolerance near machine precision): ask the relation for more.
                target *= 0.1
        elif exhausted or proc.invariant[0]:
            # The whole explorable space is smaller than k: return what there is (k <= room is
            # validated, so this only happens when locking leaves fewer than k directions).
            theta_all, s, _ = proc.ritz()
            idx = order_for(which, theta_all)[:k]
            y = proc.ritz_vectors(s[:, idx])
            ay = op.matmat(y)
            return _Run(theta_all[idx], y, ay, steps, n_thick, True, y.shape[1])
        if proc.full():
            theta_all, _, _ = proc.ritz()
            keep = order_for(which, theta_all)[: _n_keep(k, proc.cap)]
            proc.thick_restart(np.sort(keep))
            n_thick += 1


def _block_run(
    op: CountingMatvec,
    k: int,
    which: str,
    tol: float,
    atol: float,
    max_iter: int,
    ncv: int,
    b: int,
    rng: np.random.Generator,
    v0: np.ndarray | None,
    locked: np.ndarray,
) -> _Run:
    """Thick-restart block Lanczos (block size ``b``) until the explicit residuals meet the tolerance."""
    dim = op.dim
    starts = rng.standard_normal((b, dim))
    if v0 is not None:
        starts[0] = np.asarray(v0, dtype=np.float64).reshape(dim)
    proc = BlockLanczosProcess(op, starts, ncv, rng, locked=locked)
    target = tol
    n_thick = 0
    n_verify = 0
    steps = 0
    while True:
        if proc.full():
            theta_all, _, _ = proc.ritz()
            keep = order_for(which, theta_all)[: max(k, min(proc.cap - 2 * b, k + (45 * (proc.cap - k)) // 100))]
            proc.thick_restart(np.sort(keep))
            n_thick += 1
        proc.step()
        steps += 1
        exhausted = proc.exhausted
        at_cap = steps >= max_iter
        if proc.m >= k:
            theta_all, s, est = proc.ritz()
            idx = order_for(which, theta_all)[:k]
            theta = theta_all[idx]
            if exhausted or at_cap or bool(np.all(_converged_mask(est[idx], theta, target, atol))):
                y = proc.ritz_vectors(s[:, idx])
                before = op.count
                ay = op.matmat(y)
                n_verify += op.count - before
                res = np.linalg.norm(ay - y * theta, axis=0)
                done = bool(np.all(_converged_mask(res, theta, tol, atol)))
                if done or exhausted or at_cap or target < 1e-3 * tol:
                    return _Run(
                        theta,
                        y,
                        ay,
                        steps,
                        n_thick + proc.n_breakdowns,
                        exhausted,
                        n_verify,
                        proc.Q[: proc.m + proc.cur],
                    )
                target *= 0.1
        elif exhausted:
            theta_all, s, _ = proc.ritz()
            idx = order_for(which, theta_all)[:k]
            y = proc.ritz_vectors(s[:, idx])
            ay = op.matmat(y)
            return _Run(theta_all[idx], y, ay, steps, n_thick, True, y.shape[1])


def _shortfall(which: str, value: float, threshold: float) -> float:
    """How far ``value`` falls short of ``threshold`` in the wanted direction (negative: beyond it)."""
    if which == "LA":
        return threshold - value
    if which == "SA":
        return value - threshold
    return abs(threshold) - abs(value)


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
) -> tuple[bool, float, float, bool, int]:
    """Lanczos in the complement of ``locked``: does a wanted eigenvalue lie beyond ``threshold``?

    Stops as soon as the extreme Ritz value crosses ``threshold`` by ``margin`` (conclusive), or
    converges short of it (residual below ``tol``), or the space is invariant, or at ``budget``
    steps. (A looser "resolved" rule, residual below a tenth of the distance to the threshold, was
    tried and dropped: in high dimension a random start's first Ritz value sits in the bulk with a
    small residual, so the rule stopped after one step, having checked nothing.) Returns
    (crossed, extreme Ritz value, its residual, whether it converged, steps).
    """
    dim = op.dim
    start = rng.standard_normal(dim)
    proc = LanczosProcess(op, start[None, :], budget, rng, locked=locked, on_breakdown="stop")
    value, res = float("nan"), float("inf")
    while proc.active[0]:
        proc.step()
        theta_all, _, est = proc.ritz()
        j = int(order_for(which, theta_all)[0])
        value, res = float(theta_all[j]), float(est[j])
        short = _shortfall(which, value, threshold)
        if short < -margin:
            return True, value, res, False, proc.n_steps
        if proc.invariant[0] or res <= tol * abs(value) + atol:
            return False, value, res, True, proc.n_steps
    return False, value, res, False, proc.n_steps


_KW_CONST = 1.648  # Kuczynski & Wozniakowski (1992), Theorem 4.2(a)


def _kw_tail(eps: float, steps: int, n: int) -> float:
    """K-W bound on P[(lambda_max - theta_m) >= eps (lambda_max - lambda_min)] for m Lanczos steps
    from a uniformly random start in dimension n: ``1.648 sqrt(n) exp(-sqrt(eps) (2m - 1))``."""
    if eps <= 0.0:
        return 1.0
    return float(min(1.0, _KW_CONST * np.sqrt(n) * np.exp(-np.sqrt(min(eps, 1.0)) * (2 * steps - 1))))


def _probe_bound(
    op: CountingMatvec,
    which: str,
    threshold: float,
    margin: float,
    budget: int,
    delta: float,
    rng: np.random.Generator,
    locked: np.ndarray,
    tol: float,
    atol: float,
) -> tuple[bool, np.ndarray | None, float, int, bool]:
    """Lanczos in the complement of ``locked`` (the main run's whole basis): a wanted eigenvalue past ``threshold``?

    The operator seen is ``P A P`` on the complement (P projects out ``locked``). An eigenvector of
    A orthogonal to the main run's Krylov space (a missed copy of a repeated eigenvalue always is:
    a start with no component on it keeps the whole space orthogonal to it) is an eigenvector of
    ``P A P`` with the same eigenvalue, while the directions the main run already resolved are
    gone, so the gap between a missed eigenvalue and the rest is larger than in the complement of
    the ``k`` Ritz vectors alone. The probe stops

    * on a crossing: the extreme Ritz value passes ``threshold`` by ``margin`` (conclusive, Ritz
      values only move outward); it returns the Ritz vector to start converging it from;
    * when the Kuczynski-Wozniakowski bound (SIAM J. Matrix Anal. Appl. 13, 1992, Thm 4.2a) says
      that an eigenvalue of ``P A P`` beyond the threshold would have been approached by the Ritz
      value with probability at least ``1 - delta``: with ``eps = (tau - theta_m) / (tau -
      lambda_lo)`` (``tau`` the threshold plus margin, ``lambda_lo`` the far end of the spectrum,
      estimated as the probe's far Ritz value minus its residual), ``1.648 sqrt(n) exp(-sqrt(eps)
      (2m - 1))`` times the number of steps tested (a union bound over the sequential test) is at
      most ``delta``. For "LM" both ends are tested and the two bounds added;
    * when its extreme Ritz pair (both for "LM") converges short of the threshold (residual within
      ``tol``): the earlier check's rule, which is the cheaper of the two at a loose ``tol``;
    * at ``budget`` steps, or when its Krylov space is invariant (then nothing is beyond).

    Returns (crossed, Ritz vector if crossed, the K-W bound at the stop, steps, whether it stopped
    on convergence).
    """
    dim = op.dim
    n_c = max(dim - locked.shape[0], 1)
    start = rng.standard_normal(dim)
    proc = LanczosProcess(op, start[None, :], budget, rng, locked=locked, on_breakdown="stop")
    tau_hi = abs(threshold) + margin if which == "LM" else threshold + margin
    tau_lo = -abs(threshold) - margin if which == "LM" else threshold - margin
    bound = 1.0
    while proc.active[0]:
        proc.step()
        m = proc.n_steps
        theta_all, s, est = proc.ritz()
        hi, lo = float(theta_all[-1]), float(theta_all[0])
        crossed_hi = which in ("LA", "LM") and hi > tau_hi
        crossed_lo = which in ("SA", "LM") and lo < tau_lo
        if crossed_hi or crossed_lo:
            j = -1 if (crossed_hi and (not crossed_lo or abs(hi) >= abs(lo))) else 0
            return True, proc.ritz_vectors(s[:, [j]])[:, 0], 1.0, m, False
        if proc.invariant[0]:
            return False, None, 0.0, m, False
        lam_lo = lo - float(est[0])  # the far ends of P A P's spectrum (estimates)
        lam_hi = hi + float(est[-1])
        bound = 0.0
        if which in ("LA", "LM"):
            bound += _kw_tail((tau_hi - hi) / max(tau_hi - lam_lo, _TINY_F), m, n_c)
        if which in ("SA", "LM"):
            bound += _kw_tail((lo - tau_lo) / max(lam_hi - tau_lo, _TINY_F), m, n_c)
        bound = min(1.0, bound * budget)
        if bound <= delta:
            return False, None, bound, m, False
        ends = {"LA": (-1,), "SA": (0,), "LM": (0, -1)}[which]
        if m > 1 and all(float(est[e]) <= tol * abs(float(theta_all[e])) + atol for e in ends):
            return False, None, bound, m, True
    return False, None, bound, proc.n_steps, False


def _rayleigh_ritz(z: np.ndarray, az: np.ndarray, k: int, which: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best ``k`` wanted pairs from span(z) given A z (no new products)."""
    q, r = np.linalg.qr(z)
    aq = np.linalg.solve(r.T, az.T).T  # A q = A z r^{-1}
    g = q.T @ aq
    vals, u = eigh((g + g.T) / 2.0)
    idx = order_for(which, vals)[:k]
    return vals[idx], q @ u[:, idx], aq @ u[:, idx]


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
    deflation_check: bool | str = True,
    ortho_against: np.ndarray | None = None,
    ncv: int | None = None,
    matmat: Matmat | None = None,
    method: str = "single",
    block_size: int | None = None,
    check_delta: float = 0.01,
) -> EigenResult:
    """The ``k`` wanted eigenpairs of the symmetric operator ``matvec`` (dimension ``dim``).

    ``which``: "LA" largest algebraic, "SA" smallest algebraic, "LM" largest magnitude.
    ``tol``/``atol``: a pair is converged when ``||A y - theta y|| <= tol*|theta| + atol``.
    ``max_iter``: cap on Lanczos steps of the main run, over all restarts (default
    ``max(300, 20 k)``); at the cap the result has ``converged=False`` and a ConvergenceWarning
    is raised. ``ncv``: the largest basis kept (default ``max(2k+1, 20)``, ARPACK's, raised to
    as many vectors as fit in 64 MB, so small problems never restart); memory is ``ncv * dim``
    float64 numbers.
    ``deflation_check``: after convergence, look for a missed wanted eigenvalue (e.g. the second
    copy of a repeated one); its products are counted in ``n_matvec_check``. True or "bound" (the
    default): a probe in the complement of the main run's whole Krylov basis, stopped on a crossing
    or when the Kuczynski-Wozniakowski bound on missing an eigenvalue beyond the last wanted one
    falls to ``check_delta`` (reported as ``miss_bound``) or the probe converges short of it; "gap":
    the earlier probe in the complement of the converged vectors only, run until it converges the
    next eigenvalue (reported as ``next_eigenvalue``, whose gap bounds eigenvector errors); False:
    no check.
    ``ortho_against``: orthonormal columns (dim, p) to work in the complement of (locking).
    ``matmat``: a block product ``V -> A V`` (default: ``matvec.matmat`` when it exists), used for
    the explicit residuals, the block method and the re-check.
    ``method``: "single" (thick-restart Lanczos from one start vector, the fewest products) or
    "block" (thick-restart block Lanczos from ``block_size`` start vectors, default ``min(max(k,
    2), 8)``: one block product per step, so each step costs ``block_size`` products in one
    vectorized pass, and a wanted eigenvalue of multiplicity up to ``block_size`` is found by the
    main run itself). ``n_iter`` counts steps (block steps for "block"); ``ncv`` is then the
    largest basis in vectors (at least ``k + 2 * block_size``).
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
        max_iter = max(300, 20 * k)
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < k:
        raise ConfigError(f"`max_iter` must be an int >= k ({k}); got {max_iter!r}.")
    if method not in ("single", "block"):
        raise ConfigError(f"`method` must be 'single' or 'block'; got {method!r}.")
    if deflation_check is True:
        deflation_check = "bound"
    if deflation_check not in (False, "bound", "gap"):
        raise ConfigError(f"`deflation_check` must be True/'bound', 'gap' or False; got {deflation_check!r}.")
    check_mode = deflation_check
    check_delta = check_tol("check_delta", check_delta)
    if check_delta >= 1.0:
        raise ConfigError(f"`check_delta` must be a number in (0, 1); got {check_delta!r}.")
    b = 1
    if method == "block":
        if block_size is None:
            block_size = min(max(k, 2), 8)
        if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
            raise ConfigError(f"`block_size` must be an int >= 1; got {block_size!r}.")
        b = int(min(block_size, max(room, 1)))
    elif block_size is not None:
        raise ConfigError("`block_size` is an option of method='block'; leave it None for method='single'.")
    least = k + 2 * b if method == "block" else k + 2
    if ncv is None:
        # ARPACK's max(2k+1, 20), raised to as many vectors as fit in 64 MB (a larger basis never
        # costs more products: the restarted Krylov space is a subspace of the unrestarted one).
        ncv = max(2 * k + 1, 20, least, min(room, _NCV_MEMORY // (8 * dim)))
    if isinstance(ncv, bool) or not isinstance(ncv, (int, np.integer)) or ncv < least:
        what = "k + 2 * block_size" if method == "block" else "k + 2"
        raise ConfigError(f"`ncv` must be an int >= {what} ({least}); got {ncv!r}.")
    ncv = int(min(ncv, room))
    rng = as_generator(seed)
    op = CountingMatvec(matvec, dim, matmat)

    if method == "block":
        run = _block_run(op, k, which, tol, atol, int(max_iter), ncv, b, rng, v0, locked)
    else:
        run = _run(op, k, which, tol, atol, int(max_iter), ncv, rng, v0, locked)
    theta, y, ay = run.theta, run.y, run.ay
    n_iter, n_restarts = run.n_iter, run.n_restarts
    n_check = run.n_verify
    residuals = np.linalg.norm(ay - y * theta, axis=0)
    converged = bool(np.all(_converged_mask(residuals, theta, tol, atol)))
    n_missed = 0
    miss_bound: float | None = None
    next_eig: float | None = None
    next_res: float | None = None
    checked = False
    notes: list[str] = []
    if check_mode == "bound" and converged and not run.exhausted and room - k > 0:
        checked = True
        budget = max(run.n_iter * b, 10)  # as many steps as the main run took products
        base = locked if run.basis is None else np.vstack([locked, run.basis])
        for _ in range(min(k, room - k)):
            comp = np.vstack([locked, y.T])
            probe_rows = _extend_orthonormal(base, y)
            margin = tol * abs(float(theta[-1])) + atol
            before = op.count
            crossed, start, bound, steps, conv = _probe_bound(
                op, which, float(theta[-1]), margin, budget, check_delta, rng, probe_rows, tol, atol
            )
            n_check += op.count - before
            n_iter += steps
            if not crossed:
                miss_bound = bound
                if conv:
                    notes.append(
                        f"deflation check: the deflated operator's extreme eigenvalue converged short of the "
                        f"last wanted one after {steps} Lanczos steps (K-W bound {bound:.2g})"
                    )
                elif bound > check_delta:
                    notes.append(
                        f"deflation check: not resolved within {steps} Lanczos steps (probability bound "
                        f"{bound:.2g} > {check_delta:g} that a wanted eigenvalue was missed)"
                    )
                break
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
                v0=start,
                deflation_check=False,
                ortho_against=comp.T,
                ncv=max(3, min(ncv, room - comp.shape[0] + locked.shape[0])),
                matmat=matmat,
            )
            op.count += sub.n_matvec
            n_check += sub.n_matvec
            n_iter += sub.n_iter
            z = np.hstack([y, sub.eigenvectors])
            az = np.hstack([ay, _sub_ay(op, sub.eigenvectors[:, 0])])
            n_check += 1
            theta, y, ay = _rayleigh_ritz(z, az, k, which)
            residuals = np.linalg.norm(ay - y * theta, axis=0)
            converged = bool(np.all(_converged_mask(residuals, theta, tol, atol)))
            if not converged:
                notes.append("after merging a missed eigenvalue the residuals no longer meet tol")
                break
        if n_missed:
            notes.append(f"the deflation check found {n_missed} wanted eigenvalue(s) the main run missed")
    if check_mode == "gap" and converged and not run.exhausted and room - k > 0:
        checked = True
        # A missed copy of a wanted eigenvalue is the extreme eigenvalue of the operator on the
        # complement of the converged vectors; the probe stops as soon as a Ritz value crosses the
        # last wanted one (it need not converge it), else runs as long as the main run did.
        budget = max(run.n_iter, 10)
        for _ in range(min(k, room - k)):
            comp = np.vstack([locked, y.T])
            margin = tol * abs(float(theta[-1])) + atol
            before = op.count
            crossed, value, value_res, resolved, steps = _probe_missed(
                op, which, float(theta[-1]), margin, budget, tol, atol, rng, comp
            )
            n_check += op.count - before
            n_iter += steps
            if not crossed:
                if resolved:
                    next_eig, next_res = value, value_res
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
                ncv=ncv,
                matmat=matmat,
            )
            op.count += sub.n_matvec
            n_check += sub.n_matvec
            n_iter += sub.n_iter
            z = np.hstack([y, sub.eigenvectors])
            before = op.count
            az = np.hstack([ay, op(sub.eigenvectors[:, 0])[:, None]])
            n_check += op.count - before
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
        method=("thick-restart lanczos" if method == "single" else f"thick-restart block lanczos (b={b})")
        + " (full reorthogonalization"
        + (", deflation check)" if checked else ")"),
        eigenvectors=y.copy() if return_eigenvectors else None,
        n_restarts=n_restarts,
        deflation_checked=checked,
        n_missed_found=n_missed,
        next_eigenvalue=next_eig,
        note="; ".join(notes),
        n_matvec_check=n_check,
        next_residual=next_res,
        ncv=ncv,
        miss_bound=miss_bound,
    )


def _sub_ay(op: CountingMatvec, v: np.ndarray) -> np.ndarray:
    """``A v`` as a (dim, 1) column, counted by ``op``."""
    return op(v)[:, None]


def _extend_orthonormal(base: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Rows of ``base`` (orthonormal) plus the part of each column of ``y`` outside their span."""
    cur = base
    for i in range(y.shape[1]):
        w = orthogonalize(y[:, i].copy(), cur)
        nrm = float(np.linalg.norm(w))
        if nrm > 1e-8:
            cur = np.vstack([cur, (w / nrm)[None, :]])
    return cur


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
    (:func:`multilens.linalg.slq.slq_density` runs the same recurrence for a block of vectors.)
    """
    v0 = np.asarray(v0, dtype=np.float64)
    dim = int(v0.shape[0])
    op = CountingMatvec(matvec, dim)
    proc = LanczosProcess(op, v0[None, :], min(int(n_steps), dim), as_generator(0), on_breakdown="stop")
    while proc.active[0]:
        proc.step()
    t = proc.projected()
    inv = bool(proc.invariant[0])
    return Tridiagonal(np.diag(t).copy(), np.diag(t, 1).copy(), float(proc.beta[0]), op.count, inv)


def tridiagonal_ritz(tri: Tridiagonal) -> tuple[np.ndarray, np.ndarray]:
    """Ritz values and eigenvectors of a :class:`Tridiagonal` (LAPACK stebz/stein)."""
    return eigh_tridiagonal(tri.alphas, tri.betas)
