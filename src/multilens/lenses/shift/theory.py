"""Closed forms for the shift lens's synthetic studies (pure NumPy).

Linear regression with features phi(x) = (1, x) on x ~ N(mu, s^2):

* ``E[phi phi^T] = [[1, mu], [mu, mu^2 + s^2]]``;
* the labelling function g(x) = sin(2x) + x (misspecified for a line) has, by Stein's identity
  ``E[x h(x)] = mu E[h] + s^2 E[h']`` and ``E[sin 2x] = sin(2 mu) e^{-2 s^2}``,
  ``E[cos 2x] = cos(2 mu) e^{-2 s^2}``, the population least-squares line
  ``theta*(mu, s) = E[phi phi^T]^{-1} E[phi g]``;
* the excess target risk of any line theta is ``(theta - theta*_t)^T Sigma_t (theta - theta*_t)``
  (theta*_t is the L2(P_t) projection of g), so A.6's limit of source ERM is
  ``(theta*_s - theta*_t)^T Sigma_t (theta*_s - theta*_t)``, > 0 unless the projections coincide;
* for a well-specified line g(x) = a + b x with noise variance v, OLS on n source points has
  ``E[excess] ~ v tr(Sigma_t Sigma_s^{-1}) / n`` (to first order in 1/n).
"""

from __future__ import annotations

import numpy as np


def second_moment(mu: float, s: float) -> np.ndarray:
    return np.array([[1.0, mu], [mu, mu * mu + s * s]])


def misspecified_projection(mu: float, s: float) -> np.ndarray:
    """theta* = argmin E[(sin 2x + x - a - b x)^2] for x ~ N(mu, s^2)."""
    damp = np.exp(-2.0 * s * s)
    e_sin = np.sin(2 * mu) * damp
    e_xsin = mu * e_sin + 2.0 * s * s * np.cos(2 * mu) * damp
    b = np.array([e_sin + mu, e_xsin + mu * mu + s * s])
    return np.linalg.solve(second_moment(mu, s), b)


def excess_risk(theta: np.ndarray, theta_star: np.ndarray, sigma_t: np.ndarray) -> float:
    d = np.asarray(theta, np.float64) - theta_star
    return float(d @ sigma_t @ d)


def ols_excess_well_specified(noise_var: float, sigma_t: np.ndarray, sigma_s: np.ndarray, n: int) -> float:
    return float(noise_var * np.trace(sigma_t @ np.linalg.inv(sigma_s)) / n)
