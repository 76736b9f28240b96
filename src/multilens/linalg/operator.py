"""The one interface every kernel in :mod:`multilens.linalg` consumes: a symmetric matvec.

A matvec is any callable mapping a float64 NumPy vector of length ``dim`` to another one,
``v -> A v`` for a fixed symmetric ``A`` that is never formed. A matvec may also carry a
``matmat`` attribute, ``V -> A V`` on a (dim, b) block, which the kernels use to apply the
operator to several vectors at once (the model side computes a block of Hessian-vector
products in one vectorized pass); without one, a block is applied column by column. Nothing here knows about
models: the model side (multilens.lenses.curvature.hvp) wraps a Hessian-vector product into
this shape, and the tests wrap dense matrices, so every kernel is checked against ``eigh``.

:class:`CountingMatvec` counts products, validates shapes and refuses non-finite output, so a
kernel's reported ``n_matvec`` is the number of products it really paid for.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import numpy as np

from multilens.errors import ConfigError, DataError

Matvec = Callable[[np.ndarray], np.ndarray]
Matmat = Callable[[np.ndarray], np.ndarray]
Which = Literal["LA", "SA", "LM"]
WHICH: tuple[str, ...] = ("LA", "SA", "LM")


class CountingMatvec:
    """Wrap ``matvec`` so every call is counted, shape-checked and checked for finiteness."""

    def __init__(self, matvec: Matvec, dim: int, matmat: Matmat | None = None) -> None:
        if not callable(matvec):
            raise ConfigError(f"`matvec` must be a callable v -> A v; got {type(matvec).__name__}.")
        if matmat is not None and not callable(matmat):
            raise ConfigError(f"`matmat` must be a callable V -> A V; got {type(matmat).__name__}.")
        self.matvec = matvec
        self._matmat = matmat if matmat is not None else getattr(matvec, "matmat", None)
        self.dim = check_dim(dim)
        self.count = 0
        self.n_blocks = 0  # calls of the block product (each counts its columns in `count`)

    def __call__(self, v: np.ndarray) -> np.ndarray:
        out = np.asarray(self.matvec(v), dtype=np.float64)
        self.count += 1
        if out.shape != (self.dim,):
            raise DataError(f"`matvec` must return a vector of shape ({self.dim},); got {out.shape}.")
        if not np.all(np.isfinite(out)):
            raise DataError("`matvec` returned a non-finite value (nan or inf); check the operator's inputs.")
        return out

    def matmat(self, v: np.ndarray) -> np.ndarray:
        """``A V`` for a (dim, b) block: one block call when the operator has one, else b matvecs."""
        v = np.asarray(v, dtype=np.float64)
        if v.ndim != 2 or v.shape[0] != self.dim:
            raise DataError(f"a block must have shape ({self.dim}, b); got {v.shape}.")
        b = int(v.shape[1])
        if b == 0:
            return np.zeros((self.dim, 0))
        if self._matmat is None or b == 1:
            return np.column_stack([self(v[:, i]) for i in range(b)])
        out = np.asarray(self._matmat(v), dtype=np.float64)
        self.count += b
        self.n_blocks += 1
        if out.shape != (self.dim, b):
            raise DataError(f"`matmat` must return a block of shape ({self.dim}, {b}); got {out.shape}.")
        if not np.all(np.isfinite(out)):
            raise DataError("`matmat` returned a non-finite value (nan or inf); check the operator's inputs.")
        return out


class DenseOperator:
    """A dense symmetric matrix as a matvec with a block product (tests, quadratics)."""

    def __init__(self, a: np.ndarray) -> None:
        self.a = a
        self.dim = int(a.shape[0])

    def __call__(self, v: np.ndarray) -> np.ndarray:
        return self.a @ v

    def matmat(self, v: np.ndarray) -> np.ndarray:
        return self.a @ v


def dense_matvec(a: np.ndarray) -> tuple[Matvec, int]:
    """A matvec for a dense symmetric matrix (tests, quadratics); returns (matvec, dim)."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ConfigError(f"`a` must be a square matrix; got shape {a.shape}.")
    return DenseOperator(a), int(a.shape[0])


def check_dim(dim: object) -> int:
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or int(dim) < 1:
        raise ConfigError(f"`dim` must be an int >= 1; got {dim!r}.")
    return int(dim)


def check_k(k: object, dim: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or int(k) < 1:
        raise ConfigError(f"`k` must be an int >= 1; got {k!r}.")
    if int(k) > dim:
        raise ConfigError(f"`k` must be <= the operator dimension {dim}; got {k}.")
    return int(k)


def check_which(which: object) -> str:
    if which not in WHICH:
        raise ConfigError(f"`which` must be one of {', '.join(map(repr, WHICH))}; got {which!r}.")
    return str(which)


def check_tol(name: str, tol: object, *, allow_zero: bool = False) -> float:
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not math.isfinite(float(tol)):
        raise ConfigError(f"`{name}` must be a finite number; got {tol!r}.")
    if float(tol) < 0 or (float(tol) == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"`{name}` must be a number {bound}; got {tol!r}.")
    return float(tol)


def check_level(level: object) -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0.0 < float(level) < 1.0:
        raise ConfigError(f"`level` must be a number in (0, 1); got {level!r}.")
    return float(level)


def order_for(which: str, values: np.ndarray) -> np.ndarray:
    """Indices of ``values`` sorted as ``which`` asks (wanted first)."""
    if which == "LA":
        return np.argsort(-values, kind="stable")
    if which == "SA":
        return np.argsort(values, kind="stable")
    return np.argsort(-np.abs(values), kind="stable")


def orthogonalize(w: np.ndarray, basis: np.ndarray | None) -> np.ndarray:
    """Remove from ``w`` its components along the orthonormal rows of ``basis``, twice.

    Two passes of classical Gram-Schmidt are enough to reach orthogonality at working precision
    ("twice is enough", Giraud et al. 2005); one pass is not when ``w`` is nearly in the span.
    """
    if basis is None or basis.shape[0] == 0:
        return w
    for _ in range(2):
        w = w - basis.T @ (basis @ w)
    return w


def rademacher(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Entries +1/-1 with probability 1/2 each, as float64."""
    return rng.integers(0, 2, size=shape).astype(np.float64) * 2.0 - 1.0
