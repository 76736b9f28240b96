"""Pareto fronts with uncertainty: non-domination, hypervolume, scalarization vs epsilon-constraint (A.18).

All objectives are MAXIMIZED (pass -latency). ``points`` is (n_points, n_objectives).

* :func:`non_dominated`: mask of points no other point weakly dominates with one strict improvement.
* :func:`hypervolume`: exact dominated volume above a reference point (inclusion-exclusion over boxes
  for n <= 16 points; exact for any dimension).
* :func:`lp_supported`: whether some weight vector w >= 0, sum w = 1 makes a point maximize w . f over
  the population (linear programming): the points linear scalarization can return. A.18: the
  non-dominated points that are not supported (unsupported points) are never selected by any weight.
* :func:`scalarization_selects`: argmax of w . f over a weight grid on the simplex.
* :func:`epsilon_constraint`: maximize objective 0 subject to objective j >= eps_j, for eps taken at every
  point's values (Chankong-Haimes: this recovers every non-dominated point without ties).
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.optimize import linprog


def non_dominated(points: np.ndarray) -> np.ndarray:
    p = np.asarray(points, float)
    n = p.shape[0]
    keep = np.ones(n, bool)
    for i in range(n):
        for j in range(n):
            if i != j and np.all(p[j] >= p[i]) and np.any(p[j] > p[i]):
                keep[i] = False
                break
    return keep


def hypervolume(points: np.ndarray, ref: np.ndarray) -> float:
    """Volume of the union of boxes [ref, p] over points p > ref (exact inclusion-exclusion; n <= 16)."""
    p = np.asarray(points, float)
    p = p[np.all(p > ref, axis=1)]
    p = p[non_dominated(p)] if len(p) else p
    n = len(p)
    if n == 0:
        return 0.0
    if n > 16:
        raise ValueError("hypervolume by inclusion-exclusion needs <= 16 non-dominated points")
    total = 0.0
    for size in range(1, n + 1):
        for sub in itertools.combinations(range(n), size):
            corner = p[list(sub)].min(axis=0)
            total += (-1) ** (size + 1) * float(np.prod(corner - ref))
    return total


def lp_supported(points: np.ndarray, i: int) -> bool:
    """Is there w >= 0, sum w = 1, with w . (f_i - f_j) >= 0 for every j? (max t s.t. w . (f_i - f_j) >= t >= 0)"""
    p = np.asarray(points, float)
    k = p.shape[1]
    diffs = p[i] - p  # (n, k)
    # variables (w_1..w_k, t); maximize t  <=>  minimize -t; constraints -diffs w + t <= 0
    a_ub = np.hstack([-diffs, np.ones((len(p), 1))])
    res = linprog(
        np.r_[np.zeros(k), -1.0],
        A_ub=a_ub,
        b_ub=np.zeros(len(p)),
        A_eq=np.r_[np.ones(k), 0.0][None],
        b_eq=[1.0],
        bounds=[(0, None)] * k + [(None, None)],
        method="highs",
    )
    return bool(res.success and -res.fun >= -1e-12)


def weight_grid(k: int, steps: int) -> np.ndarray:
    out = [np.array(c) / steps for c in itertools.product(range(steps + 1), repeat=k) if sum(c) == steps]
    return np.array(out)


def scalarization_selects(points: np.ndarray, weights: np.ndarray) -> set[int]:
    p = np.asarray(points, float)
    return {int(np.argmax(p @ w)) for w in weights}


def epsilon_constraint(points: np.ndarray) -> set[int]:
    """max f_0 s.t. f_j >= eps_j (j >= 1) with eps at each point's own values; ties broken by the other objectives."""
    p = np.asarray(points, float)
    out = set()
    for i in range(len(p)):
        ok = np.all(p[:, 1:] >= p[i, 1:], axis=1)
        cand = np.flatnonzero(ok)
        best = max(cand, key=lambda j: tuple(p[j]))
        out.add(int(best))
    return out


def normalize(points: np.ndarray) -> np.ndarray:
    p = np.asarray(points, float)
    lo, hi = p.min(0), p.max(0)
    return (p - lo) / np.where(hi > lo, hi - lo, 1.0)
