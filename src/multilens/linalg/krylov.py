"""The one Lanczos recurrence of :mod:`multilens.linalg`: eigenvalues, SLQ and the re-check all run it.

:class:`LanczosProcess` advances ``b`` independent Lanczos recurrences together, so one block
product ``A [v_1 ... v_b]`` (a vectorized pass of Hessian-vector products on the model side)
serves all of them per step. Every new vector is orthogonalized against the whole basis of its
recurrence (and against ``locked`` rows), twice ("twice is enough"), so the recurrence is the
symmetric Arnoldi process and the projected matrix ``T = V^T A V`` is kept densely: its entries
are the Gram-Schmidt coefficients themselves. That makes the same code serve

* plain Lanczos (``T`` tridiagonal up to rounding), whose Gauss quadrature SLQ needs;
* thick-restart Lanczos (Wu & Simon, SIAM J. Matrix Anal. Appl. 22, 2000): :meth:`thick_restart`
  replaces the basis by ``l`` Ritz vectors plus the next Lanczos vector, after which ``T`` is an
  arrowhead matrix and the recurrence goes on unchanged;
* the relation ``A V_m = V_m T_m + beta_m v_{m+1} e_m^T`` holds throughout, so the residual of
  a Ritz pair ``(theta, V s)`` is ``|beta_m s_m|`` without another product.

All vectors and coefficients are float64 whatever precision the operator computes in.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import eigh

from multilens.linalg.operator import CountingMatvec, orthogonalize

_EPS = np.finfo(np.float64).eps
_TINY = np.finfo(np.float64).tiny


class LanczosProcess:
    """``b`` Lanczos recurrences with full reorthogonalization, advanced by one block product per step.

    ``starts``: (b, dim) start vectors (normalized here). ``cap``: the largest basis per recurrence.
    ``locked``: (p, dim) orthonormal rows every vector is kept orthogonal to (deflation).
    ``on_breakdown``: what a recurrence does when its Krylov space becomes invariant (beta ~ 0):
    "restart" continues with a fresh random vector orthogonal to the basis (coupling 0, so the
    Ritz values of both blocks come out of one solve), "stop" freezes the recurrence (its
    quadrature is then exact).
    """

    def __init__(
        self,
        op: CountingMatvec,
        starts: np.ndarray,
        cap: int,
        rng: np.random.Generator,
        *,
        locked: np.ndarray | None = None,
        on_breakdown: str = "restart",
    ) -> None:
        self.op = op
        dim = op.dim
        self.locked = np.zeros((0, dim)) if locked is None else locked
        self.room = dim - self.locked.shape[0]  # dimension of the space the recurrences can explore
        self.cap = max(1, min(int(cap), self.room))
        self.rng = rng
        self.on_breakdown = on_breakdown
        starts = np.atleast_2d(np.asarray(starts, dtype=np.float64))
        b = starts.shape[0]
        self.b = b
        self.V = np.zeros((b, self.cap + 1, dim))
        self.T = np.zeros((b, self.cap + 1, self.cap + 1))
        self.m = np.zeros(b, dtype=int)  # vectors whose product has been taken (T is m x m)
        self.beta = np.zeros(b)  # coupling of the last vector to the next one
        self.anorm = np.zeros(b)  # running estimate of ||A|| (for the breakdown test)
        self.active = np.ones(b, dtype=bool)
        self.invariant = np.zeros(b, dtype=bool)  # the Krylov space became invariant (stop mode)
        self.exhausted = np.zeros(b, dtype=bool)  # the basis spans the whole explorable space
        self.n_breakdowns = np.zeros(b, dtype=int)
        self.n_steps = 0
        for i in range(b):
            v = orthogonalize(starts[i].copy(), self.locked)
            nrm = float(np.linalg.norm(v))
            if nrm == 0.0 or not np.isfinite(nrm):
                v, nrm = self.fresh_vector(self.locked)
            self.V[i, 0] = v / nrm

    def fresh_vector(self, basis: np.ndarray) -> tuple[np.ndarray, float]:
        """A random unit vector orthogonal to the rows of ``basis`` and the locked rows."""
        w = orthogonalize(orthogonalize(self.rng.standard_normal(self.op.dim), basis), self.locked)
        nrm = float(np.linalg.norm(w))
        return (w / nrm if nrm > 0 else w), nrm

    def step(self) -> None:
        """One Lanczos step for every active recurrence, with one block product."""
        rows = np.flatnonzero(self.active)
        if rows.size == 0:
            return
        x = np.stack([self.V[r, self.m[r]] for r in rows], axis=1)  # (dim, nb)
        w_all = self.op.matmat(x)
        self.n_steps += 1
        for c, r in enumerate(rows):
            j = int(self.m[r])
            basis = self.V[r, : j + 1]
            w = w_all[:, c]
            h = basis @ w
            w = w - basis.T @ h
            h2 = basis @ w
            w = w - basis.T @ h2
            h = h + h2
            w = orthogonalize(w, self.locked)
            beta = float(np.linalg.norm(w))
            self.T[r, : j + 1, j] = h
            self.T[r, j, : j + 1] = h
            self.anorm[r] = max(self.anorm[r], float(np.abs(h).sum()) + beta)
            self.m[r] = j + 1
            exhausted = j + 1 >= self.room
            breakdown = exhausted or beta <= 100.0 * _EPS * max(self.anorm[r], _TINY)
            if breakdown:
                self.beta[r] = 0.0
                self.exhausted[r] = exhausted
                if exhausted or self.on_breakdown == "stop":
                    self.invariant[r] = True
                    self.active[r] = False
                    continue
                v, nrm = self.fresh_vector(self.V[r, : j + 1])
                if nrm == 0.0:
                    self.invariant[r] = True
                    self.active[r] = False
                    continue
                self.V[r, j + 1] = v
                self.n_breakdowns[r] += 1
            else:
                self.beta[r] = beta
                self.V[r, j + 1] = w / beta
                self.T[r, j + 1, j] = self.T[r, j, j + 1] = beta
            if self.m[r] >= self.cap:
                self.active[r] = False  # full: the caller restarts it or is done

    def full(self, r: int = 0) -> bool:
        return bool(self.m[r] >= self.cap and not self.invariant[r])

    def projected(self, r: int = 0) -> np.ndarray:
        m = int(self.m[r])
        t = self.T[r, :m, :m]
        return 0.5 * (t + t.T)

    def ritz(self, r: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ritz values (ascending), the eigenvectors of T, and the residual of each pair, |beta s_m|."""
        theta, s = eigh(self.projected(r))
        return theta, s, np.abs(self.beta[r] * s[-1, :])

    def ritz_vectors(self, s: np.ndarray, r: int = 0) -> np.ndarray:
        """(dim, l) Ritz vectors ``V_m s`` for the columns of ``s``."""
        return self.V[r, : self.m[r]].T @ s

    def thick_restart(self, keep: np.ndarray, r: int = 0) -> None:
        """Keep the Ritz vectors of the columns ``keep`` and the next Lanczos vector; T becomes arrowhead."""
        theta, s, _ = self.ritz(r)
        sk = s[:, keep]
        l = int(sk.shape[1])
        y = sk.T @ self.V[r, : self.m[r]]  # (l, dim)
        nxt = self.V[r, self.m[r]].copy()
        self.V[r, :l] = y
        self.V[r, l] = nxt
        self.V[r, l + 1 :] = 0.0
        self.T[r] = 0.0
        self.T[r, np.arange(l), np.arange(l)] = theta[keep]
        coupling = self.beta[r] * s[-1, keep]
        self.T[r, l, :l] = coupling
        self.T[r, :l, l] = coupling
        self.m[r] = l
        self.active[r] = True


class BlockLanczosProcess:
    """Block Lanczos with full reorthogonalization: one block product ``A [x_1 ... x_b]`` per step.

    The basis grows by a block of (up to) ``b`` orthonormal vectors per step, so a wanted eigenvalue
    of multiplicity up to ``b`` is seen in full from a generic start block (a single-vector Krylov
    space holds one copy of it; Golub & Underwood 1977, Golub & Van Loan 4th ed. section 10.3.6).
    As in :class:`LanczosProcess` the projected matrix ``T = Q^T A Q`` is kept densely from the
    Gram-Schmidt coefficients (orthogonalized twice), which makes thick restart the same two lines
    as for one vector. The block relation ``A Q_m = Q_m T_m + X_{m+1} B E_last^T`` gives every Ritz
    residual as ``||B s_last||`` (``s_last``: the rows of the Ritz vector ``s`` on the last block)
    without another product. A column that becomes dependent (deflation inside the block) is
    replaced by a fresh random vector orthogonal to the basis with coupling 0; a column for which no
    fresh vector exists (the basis spans the whole space) is dropped, and the process is exhausted
    when no column is left. Everything is float64.
    """

    def __init__(
        self,
        op: CountingMatvec,
        starts: np.ndarray,
        cap: int,
        rng: np.random.Generator,
        *,
        locked: np.ndarray | None = None,
    ) -> None:
        self.op = op
        dim = op.dim
        self.locked = np.zeros((0, dim)) if locked is None else locked
        self.room = dim - self.locked.shape[0]
        starts = np.atleast_2d(np.asarray(starts, dtype=np.float64))
        self.b = int(starts.shape[0])
        self.cap = max(self.b, min(int(cap), self.room))  # the most vectors whose product is taken
        self.rng = rng
        n = self.cap + self.b
        self.Q = np.zeros((n, dim))
        self.T = np.zeros((n, n))
        self.m = 0  # vectors whose product has been taken (T[:m, :m] is the projected matrix)
        self.cur = 0  # vectors of the current block, Q[m : m + cur]
        self.B = np.zeros((0, 0))  # coupling of the last applied block to the current one (cur x last)
        self.last = 0  # size of the last applied block
        self.anorm = 0.0
        self.n_steps = 0
        self.n_breakdowns = 0
        for i in range(self.b):
            v = orthogonalize(orthogonalize(starts[i].copy(), self.Q[: self.cur]), self.locked)
            nrm = float(np.linalg.norm(v))
            if nrm <= 1e-8 * max(float(np.linalg.norm(starts[i])), _TINY) or not np.isfinite(nrm):
                v, nrm = self.fresh_vector(self.cur)
                if nrm == 0.0:
                    break
            self.Q[self.cur] = v / nrm
            self.cur += 1

    @property
    def exhausted(self) -> bool:
        return self.cur == 0

    def fresh_vector(self, upto: int) -> tuple[np.ndarray, float]:
        """A random unit vector orthogonal to ``Q[:upto]`` and the locked rows (norm 0: none exists)."""
        if upto >= self.room:
            return np.zeros(self.op.dim), 0.0
        w = self.rng.standard_normal(self.op.dim)
        w = orthogonalize(orthogonalize(w, self.Q[:upto]), self.locked)
        nrm = float(np.linalg.norm(w))
        if nrm <= 1e-10 * np.sqrt(self.op.dim):
            return w, 0.0
        return w / nrm, 1.0

    def full(self) -> bool:
        """The current block no longer fits under ``cap``: restart before the next step."""
        return self.cur > 0 and self.m + self.cur > self.cap

    def step(self) -> None:
        """Apply A to the current block (one block product), extend the basis by the next block."""
        if self.cur == 0:
            return
        m, cur = self.m, self.cur
        x = self.Q[m : m + cur]
        w_all = self.op.matmat(x.T)  # (dim, cur)
        self.n_steps += 1
        nb = m + cur
        basis = self.Q[:nb]
        # Classical Gram-Schmidt of the whole block against the basis, twice (BLAS-3).
        w_blk = np.array(w_all.T, dtype=np.float64)  # (cur, dim)
        h = basis @ w_blk.T  # (nb, cur)
        w_blk -= h.T @ basis
        h2 = basis @ w_blk.T
        w_blk -= h2.T @ basis
        h = h + h2
        if self.locked.shape[0]:
            for c in range(cur):
                w_blk[c] = orthogonalize(w_blk[c], self.locked)
        self.T[:nb, m : m + cur] = h
        self.T[m : m + cur, :nb] = h.T
        self.anorm = max(self.anorm, float(np.abs(h).sum(axis=0).max()))
        # Orthonormalize the new block column by column (twice), keeping the coupling R.
        r = np.zeros((self.b, cur))
        new = 0
        for c in range(cur):
            w = w_blk[c]
            prev = self.Q[nb : nb + new]
            coef = prev @ w
            w = w - prev.T @ coef
            coef2 = prev @ w
            w = w - prev.T @ coef2
            r[:new, c] = coef + coef2
            nrm = float(np.linalg.norm(w))
            self.anorm = max(self.anorm, nrm)
            if nrm > 100.0 * _EPS * max(self.anorm, _TINY) and nb + new < self.room:
                self.Q[nb + new] = w / nrm
                r[new, c] = nrm
                new += 1
        # Deflated columns: fresh random directions with coupling 0 (while the space has room).
        while new < cur:
            v, ok = self.fresh_vector(nb + new)
            if ok == 0.0:
                break
            self.Q[nb + new] = v
            self.n_breakdowns += 1
            new += 1
        self.B = r[:new, :cur]
        self.T[nb : nb + new, m : m + cur] = self.B
        self.T[m : m + cur, nb : nb + new] = self.B.T
        self.last = cur
        self.m = nb
        self.cur = new

    def projected(self) -> np.ndarray:
        t = self.T[: self.m, : self.m]
        return 0.5 * (t + t.T)

    def ritz(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ritz values (ascending), the eigenvectors of T, and each pair's residual ``||B s_last||``."""
        theta, s = eigh(self.projected())
        if self.cur == 0 or self.last == 0:
            return theta, s, np.zeros_like(theta)
        return theta, s, np.linalg.norm(self.B @ s[self.m - self.last : self.m, :], axis=0)

    def ritz_vectors(self, s: np.ndarray) -> np.ndarray:
        return self.Q[: self.m].T @ s

    def thick_restart(self, keep: np.ndarray) -> None:
        """Keep the Ritz vectors ``keep`` and the current block; T becomes a block arrowhead."""
        theta, s, _ = self.ritz()
        sk = s[:, keep]
        l = int(sk.shape[1])
        y = sk.T @ self.Q[: self.m]
        nxt = self.Q[self.m : self.m + self.cur].copy()
        coupling = self.B @ s[self.m - self.last : self.m, keep] if self.cur else np.zeros((0, l))
        self.Q[:] = 0.0
        self.Q[:l] = y
        self.Q[l : l + self.cur] = nxt
        self.T[:] = 0.0
        self.T[np.arange(l), np.arange(l)] = theta[keep]
        self.T[l : l + self.cur, :l] = coupling
        self.T[:l, l : l + self.cur] = coupling.T
        self.m = l
        # The relation now reads A Y = Y Theta + X_cur (B S_last): the "last block" is all of Y.
        self.B = coupling
        self.last = l
