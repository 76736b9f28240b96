"""Subjects of the stability lens: tasks (a data pool, lambda, n, the domain radius, a trainer).

A :class:`Task` is a training function plus a dataset. The pool ``x, y`` is the population: the
empirical distribution of its rows. Training sets S are drawn from it, replacements z' come from
outside S, probe points are the whole pool (so "max over probe points" is the sup over the
support), and the population risk R(theta) is the exact mean loss over the pool. ``radius`` R is
max ||x|| over the pool (the data's domain); the trainer turns it into the Lipschitz constant
(for the logistic loss, L = R).

A user passes their own tasks: arrays and any trainer with ``fit(x, y, lam, theta0)``,
``losses(theta, x, y)``, ``lipschitz(radius)`` and ``smoothness(radius)`` (see
:class:`~multilens.lenses.stability.logistic.LogisticRidge`).

Bundled tasks (labels in {-1, +1}, rows scaled so max ||x|| = 1 exactly, R = 1):

* ``digits``: scikit-learn digits, even vs odd, pixels / 16 and a constant 1 feature;
* ``synthetic``: x uniform on the unit sphere in d dimensions, y = +-1 with
  P(y = 1 | x) = sigmoid(4 w.x) for a fixed unit teacher w.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.datasets import load_digits

from multilens.lenses.stability.logistic import LogisticRidge
from multilens.seeding import as_generator


@dataclass(frozen=True)
class Task:
    name: str
    x: np.ndarray
    y: np.ndarray
    lam: float
    n: int
    trainer: Any = field(default_factory=LogisticRidge)
    x_test: np.ndarray | None = None  # a separate split for the duplicate detector (optional)

    def __post_init__(self) -> None:
        if np.asarray(self.x).ndim != 2 or np.asarray(self.y).shape != (np.asarray(self.x).shape[0],):
            raise ValueError(f"task `{self.name}`: `x` must be (N, d) and `y` (N,).")
        if not set(np.unique(self.y)) <= {-1.0, 1.0}:
            raise ValueError(f"task `{self.name}`: labels `y` must be -1 or +1.")
        if not 2 <= self.n < np.asarray(self.x).shape[0]:
            raise ValueError(f"task `{self.name}`: `n` must be in [2, N); got {self.n} for N = {len(self.y)}.")
        if not self.lam > 0:
            raise ValueError(f"task `{self.name}`: `lam` must be > 0; got {self.lam}.")

    @property
    def radius(self) -> float:
        return float(np.sqrt(np.max(np.sum(np.asarray(self.x) ** 2, axis=1))))


@dataclass(frozen=True)
class StabilitySubject:
    """Tasks (the first is the main subject, the one the default policy's gates judge) and, for the
    ``family`` part, a data family (:class:`multilens.data.family.FamilySpec`)."""

    tasks: tuple[Task, ...]
    name: str = "user tasks"
    family: Any = None  # a FamilySpec, or None: the `family` part is not measured

    def __post_init__(self) -> None:
        if not self.tasks and self.family is None:
            raise ValueError("`tasks` must hold at least one task (or give a data `family`).")


def digits_task(*, lam: float, n: int, tol: float = 1e-10) -> Task:
    d = load_digits()
    x = np.c_[d.data / 16.0, np.ones(len(d.target))]
    x = x / np.sqrt(np.max(np.sum(x * x, axis=1)))
    y = np.where(d.target % 2 == 0, 1.0, -1.0)
    return Task("digits", x, y, lam, n, LogisticRidge(tol=tol))


def synthetic_task(*, lam: float, n: int, d: int = 20, pool: int = 4000, seed: int = 0, tol: float = 1e-10) -> Task:
    rng = as_generator(seed)
    x = rng.standard_normal((pool, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    w = np.zeros(d)
    w[0] = 1.0
    p = 1.0 / (1.0 + np.exp(-4.0 * x @ w))
    y = np.where(rng.random(pool) < p, 1.0, -1.0)
    return Task("synthetic", x, y, lam, n, LogisticRidge(tol=tol))
