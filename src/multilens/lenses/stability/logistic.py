"""L2-regularised logistic regression solved to a stated tolerance, and its stability constants.

Objective (labels y in {-1, +1}, no separate bias: append a constant feature to x):
    F_S(theta) = (1/n) sum_i log(1 + exp(-y_i theta.x_i)) + (lam / 2) ||theta||^2.
F_S is lam-strongly convex. The loss is L-Lipschitz in theta with L = max ||x|| = R over the data's
domain (|d loss / d theta| = sigma(-y theta.x) ||x|| <= ||x||), and R^2/4-smooth. For this ERM,
replacing one example moves the minimiser by at most 2 L / (lam n) and any loss value by at most
2 L^2 / (lam n) (Bousquet & Elisseeff 2002; the chapter's Example 9).

:class:`LogisticRidge` minimises F_S by Newton's method with backtracking (Armijo) and stops when
``||grad F_S|| <= tol``; since F_S is lam-strongly convex, that guarantees
``||theta - theta*|| <= tol / lam`` (stated with every fit as ``param_error_bound``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit, log_expit

from multilens.validation import check_int, check_positive


def losses(theta: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-example logistic loss log(1 + exp(-y theta.x)), computed stably."""
    return -log_expit(y * (x @ theta))


@dataclass(frozen=True)
class FitResult:
    theta: np.ndarray
    n_iter: int
    converged: bool
    grad_norm: float
    param_error_bound: float  # ||theta - theta*|| <= grad_norm / lam


@dataclass(frozen=True)
class LogisticRidge:
    """Newton's method to ``||grad|| <= tol`` (a stopping rule: ``converged`` says whether it was met)."""

    tol: float = 1e-10
    max_iter: int = 100

    def __post_init__(self) -> None:
        check_positive("tol", self.tol)
        check_int("max_iter", self.max_iter, 1)

    def objective(self, theta: np.ndarray, x: np.ndarray, y: np.ndarray, lam: float) -> float:
        return float(losses(theta, x, y).mean() + 0.5 * lam * theta @ theta)

    def grad_hess(self, theta, x, y, lam):
        n = x.shape[0]
        m = y * (x @ theta)
        s = expit(-m)  # sigma(-y theta.x)
        g = -(x.T @ (y * s)) / n + lam * theta
        w = s * (1 - s)
        h = (x.T * w) @ x / n + lam * np.eye(x.shape[1])
        return g, h

    def fit(self, x: np.ndarray, y: np.ndarray, lam: float, theta0: np.ndarray | None = None) -> FitResult:
        theta = np.zeros(x.shape[1]) if theta0 is None else np.array(theta0, dtype=np.float64)
        g, h = self.grad_hess(theta, x, y, lam)
        gn = float(np.linalg.norm(g))
        it = 0
        while gn > self.tol and it < self.max_iter:
            step = np.linalg.solve(h, g)
            t = 1.0
            if gn > 1e-6:  # Armijo backtracking; near the optimum objective differences drop below rounding and
                # the full Newton step is taken (quadratic convergence; `converged` still checks the gradient)
                f0 = self.objective(theta, x, y, lam)
                while self.objective(theta - t * step, x, y, lam) > f0 - 1e-4 * t * float(g @ step) and t > 1e-10:
                    t *= 0.5
            theta = theta - t * step
            g, h = self.grad_hess(theta, x, y, lam)
            gn = float(np.linalg.norm(g))
            it += 1
        return FitResult(theta, it, gn <= self.tol, gn, gn / lam)

    def losses(self, theta: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return losses(theta, x, y)

    def lipschitz(self, radius: float) -> float:
        """L = R: ||d/dtheta log(1 + exp(-y theta.x))|| = sigma(-y theta.x) ||x|| <= ||x|| <= R."""
        return float(radius)

    def smoothness(self, radius: float) -> float:
        """beta = R^2 / 4: the Hessian of the loss is sigma(1 - sigma) x x^T with sigma(1 - sigma) <= 1/4."""
        return float(radius) ** 2 / 4.0


def gradient_descent_fit(x, y, lam, *, tol: float, max_iter: int = 100000, theta0=None) -> FitResult:
    """Plain gradient descent with step 1/(R^2/4 + lam) to ``||grad|| <= tol`` (for the benchmark)."""
    solver = LogisticRidge(tol=tol)
    theta = np.zeros(x.shape[1]) if theta0 is None else np.array(theta0, dtype=np.float64)
    r2 = float(np.max(np.sum(x * x, axis=1)))
    step = 1.0 / (r2 / 4.0 + lam)
    it = 0
    n = x.shape[0]
    while it < max_iter:
        g = -(x.T @ (y * expit(-y * (x @ theta)))) / n + lam * theta
        gn = float(np.linalg.norm(g))
        if gn <= tol:
            break
        theta = theta - step * g
        it += 1
    g, _ = solver.grad_hess(theta, x, y, lam)
    gn = float(np.linalg.norm(g))
    return FitResult(theta, it, gn <= tol, gn, gn / lam)
