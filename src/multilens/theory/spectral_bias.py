"""Closed-form modal trajectories of kernel gradient flow and kernel gradient descent.

Seed theorem "Spectral Bias Theorem" (line 162; worked example 3; exercises B.9, C.7): for
gradient flow on the squared loss in an RKHS, d/dt f_t = -T (f_t - f*), f_0 = 0, with kernel
operator eigenpairs (lambda_j, psi_j) and f* = sum_j c_j psi_j,

    f_t = sum_j c_j (1 - exp(-lambda_j t)) psi_j,

so modes with larger lambda_j are learned first. On n sample points with the empirical
operator K/n (eigenpairs (lambda_j, u_j)) and gradient descent with step eta, the same
argument gives the exact discrete-time law

    u_j^T f_k = c_j (1 - (1 - eta lambda_j)^k),        k = 0, 1, 2, ...,

and with t = eta k the two differ by at most |c_j| h / (2 e (1 - h)) for h = eta lambda_j < 1
(from log(1-h) >= -h - h^2/(2(1-h)) and max_s s e^-s = 1/e): an O(eta) discretisation error.

For a neural network the same law holds for its linearisation at initialisation, with the
empirical neural tangent kernel Theta = J J^T in place of K (Jacot, Gabriel, Hongler 2018;
Lee et al. 2019, "Wide Neural Networks of Any Depth Evolve as Linear Models Under Gradient
Descent"); for squared loss mean((f - y)^2) the residual evolves as r_{k+1} = (I - eta (2/n)
Theta) r_k. Spectral bias of networks: Rahaman et al. 2019, "On the Spectral Bias of Neural
Networks"; Fourier-feature inputs that rebalance it: Tancik et al. 2020.
"""

from __future__ import annotations

import math

import numpy as np


def modal_trajectory_continuous(c: np.ndarray, lam: np.ndarray, t: np.ndarray) -> np.ndarray:
    """c_j (1 - exp(-lambda_j t)) for every time in ``t`` (T,) and mode j: shape (T, J)."""
    t = np.asarray(t, np.float64)[:, None]
    return np.asarray(c, np.float64)[None, :] * -np.expm1(-np.asarray(lam, np.float64)[None, :] * t)


def modal_trajectory_discrete(c: np.ndarray, lam: np.ndarray, eta: float, steps: np.ndarray) -> np.ndarray:
    """c_j (1 - (1 - eta lambda_j)^k) for every step k in ``steps`` and mode j: shape (K, J)."""
    k = np.asarray(steps, np.float64)[:, None]
    return np.asarray(c, np.float64)[None, :] * (1.0 - _power(1.0 - eta * np.asarray(lam, np.float64), k))


def discretization_bound(c: np.ndarray, lam: np.ndarray, eta: float) -> np.ndarray:
    """Upper bound on sup_k |discrete - continuous| per mode: |c| h / (2 e (1 - h)), h = eta*lambda.

    Infinite for modes with h >= 1 (the bound's derivation needs 0 <= h < 1).
    """
    h = eta * np.asarray(lam, np.float64)
    with np.errstate(divide="ignore"):
        bound = np.abs(np.asarray(c, np.float64)) * h / (2.0 * math.e * (1.0 - h))
    return np.where((h >= 0) & (h < 1), bound, np.inf)


def linearized_residual(u: np.ndarray, lam: np.ndarray, r0: np.ndarray, eta: float, steps: np.ndarray) -> np.ndarray:
    """Residual of the linearised dynamics r_k = U (I - eta Lambda)^k U^T r_0: shape (K, n).

    ``u`` (n, J) orthonormal eigenvectors, ``lam`` (J,) eigenvalues of the step operator (e.g.
    2 Theta / n for mean squared error); with J < n the part of r_0 outside span(U) is held fixed.
    """
    coef = u.T @ r0  # (J,)
    decay = _power(1.0 - eta * np.asarray(lam, np.float64), np.asarray(steps, np.float64)[:, None])  # (K, J)
    rest = r0 - u @ coef
    return (decay * coef[None, :]) @ u.T + rest[None, :]


def mode_fit_step(lam: np.ndarray, eta: float, threshold: float) -> np.ndarray:
    """First step k with |1 - eta lambda|^k <= threshold (inf if the mode never contracts)."""
    rho = np.abs(1.0 - eta * np.asarray(lam, np.float64))
    out = np.full(rho.shape, np.inf)
    ok = rho < 1.0
    with np.errstate(divide="ignore"):
        out[ok] = np.ceil(np.log(threshold) / np.log(np.where(rho[ok] > 0, rho[ok], 1e-300)))
    return np.maximum(out, 0.0)


def mode_fit_time(lam: np.ndarray, threshold: float) -> np.ndarray:
    """Continuous time t with exp(-lambda t) = threshold: log(1/threshold) / lambda."""
    lam = np.asarray(lam, np.float64)
    with np.errstate(divide="ignore"):
        return np.where(lam > 0, math.log(1.0 / threshold) / np.where(lam > 0, lam, 1.0), np.inf)


def _power(base: np.ndarray, k: np.ndarray) -> np.ndarray:
    """base**k elementwise for real bases (negative allowed) and large k, without overflow warnings."""
    base = np.asarray(base, np.float64)
    mag = np.abs(base)
    with np.errstate(divide="ignore", over="ignore", under="ignore", invalid="ignore"):
        logm = np.where(mag > 0, np.log(np.where(mag > 0, mag, 1.0)), -np.inf)
        val = np.exp(k * logm)
    sign = np.where((base < 0) & (np.mod(k, 2) == 1), -1.0, 1.0)
    val = np.where(k == 0, 1.0, val)  # 0**0 = 1
    return sign * val
