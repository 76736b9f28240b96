"""Kernel gradient descent where the spectral-bias theorem is exact: measured modal trajectories.

The model is linear in a fixed feature map, f(x) = phi(x)^T w with random Fourier features of a
Gaussian kernel (Rahimi and Recht 2007): phi(x) = sqrt(2/D) cos(omega x + b), omega ~ N(0, 1/l^2),
b ~ U[0, 2 pi). Gradient descent on L(w) = 1/(2n) ||Phi w - y||^2 from w = 0 moves the fitted
values by f_{k+1} = f_k - eta (K/n)(f_k - y) with K = Phi Phi^T, so on the eigenpairs
(lambda_j, u_j) of K/n the projections u_j^T f_k follow c_j (1 - (1 - eta lambda_j)^k) exactly
and c_j (1 - exp(-lambda_j eta k)) up to the O(eta) bound of multilens.theory.spectral_bias.

The weights are trained for real (one matvec with Phi and one with Phi^T per step); the
projections are measured from the fitted values, never from the formula.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from multilens.seeding import SeedLike, as_generator
from multilens.theory.spectral_bias import (
    discretization_bound,
    modal_trajectory_continuous,
    modal_trajectory_discrete,
    mode_fit_step,
)
from multilens.validation import check_int


def random_fourier_features(x: np.ndarray, n_features: int, lengthscale: float, seed: SeedLike) -> np.ndarray:
    """Phi (n, D) with E[Phi Phi^T] = exp(-(x - x')^2 / (2 l^2))."""
    check_int("n_features", n_features, 1)
    rng = as_generator(seed)
    omega = rng.standard_normal(n_features) / lengthscale
    phase = rng.uniform(0.0, 2.0 * np.pi, n_features)
    return np.sqrt(2.0 / n_features) * np.cos(np.outer(x, omega) + phase[None, :])


@dataclass(frozen=True)
class KernelFlowRun:
    """One kernel-GD run: measured and predicted modal coordinates of the fitted values."""

    eta: float
    lam: np.ndarray  # (n,) eigenvalues of K/n, descending
    u: np.ndarray  # (n, n) their eigenvectors (columns)
    c: np.ndarray  # (n,) target coordinates u_j^T y
    measured: np.ndarray  # (T+1, n) u_j^T f_k
    discrete: np.ndarray  # (T+1, n) c_j (1 - (1 - eta lambda_j)^k)
    continuous: np.ndarray  # (T+1, n) c_j (1 - exp(-lambda_j eta k))
    bound: np.ndarray  # (n,) discretisation bound per mode

    @property
    def dev_discrete(self) -> float:
        """max_{k,j} |measured - discrete| / max_j |c_j|."""
        return float(np.max(np.abs(self.measured - self.discrete)) / np.max(np.abs(self.c)))

    @property
    def dev_continuous(self) -> np.ndarray:
        """max_k |measured - continuous| per mode."""
        return np.max(np.abs(self.measured - self.continuous), axis=0)


def run_kernel_gd(phi: np.ndarray, y: np.ndarray, lr_fraction: float, steps: int) -> KernelFlowRun:
    """GD on the weights of f = Phi w from w = 0 with eta = lr_fraction / lambda_max(K/n)."""
    check_int("steps", steps, 1)
    n = phi.shape[0]
    lam, u = np.linalg.eigh(phi @ phi.T / n)
    order = np.argsort(lam)[::-1]
    lam = np.clip(lam[order], 0.0, None)  # K/n is PSD; tiny negative rounding is noise
    u = u[:, order]
    eta = lr_fraction / float(lam[0])
    w = np.zeros(phi.shape[1])
    f = np.zeros(n)
    meas = np.empty((steps + 1, n))
    meas[0] = 0.0
    for k in range(1, steps + 1):
        w = w - (eta / n) * (phi.T @ (f - y))
        f = phi @ w
        meas[k] = u.T @ f
    c = u.T @ y
    ks = np.arange(steps + 1)
    return KernelFlowRun(
        eta,
        lam,
        u,
        c,
        meas,
        modal_trajectory_discrete(c, lam, eta, ks),
        modal_trajectory_continuous(c, lam, eta * ks),
        discretization_bound(c, lam, eta),
    )


def fit_steps_measured(run: KernelFlowRun, threshold: float) -> np.ndarray:
    """First step at which |c_j - u_j^T f_k| <= threshold |c_j| per mode (inf if never)."""
    resid = np.abs(run.c[None, :] - run.measured)
    ok = resid <= threshold * np.abs(run.c)[None, :]
    first = np.where(ok.any(axis=0), ok.argmax(axis=0), -1).astype(np.float64)
    first[first < 0] = np.inf
    return first


def fit_steps_predicted(run: KernelFlowRun, threshold: float) -> np.ndarray:
    return mode_fit_step(run.lam, run.eta, threshold)
