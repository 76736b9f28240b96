"""Post-hoc recalibration of logits: temperature, vector and matrix scaling (Guo et al. 2017).

* Temperature scaling divides the logits by one T > 0 chosen to minimise the validation NLL. It
  is fitted in ``log T`` (so T > 0 always) by bounded 1-D minimisation (Brent's method on
  ``[log t_min, log t_max]``, scipy ``minimize_scalar(method="bounded")``), and reports whether
  it converged: the optimiser's own status, the derivative dNLL/dlog T at the optimum (0 at an
  interior minimum; the NLL is convex in 1/T) and whether the optimum sits on a bound.
* Vector scaling ``a * z + b`` (a, b in R^K) and matrix scaling ``W z + b`` are fitted by
  L-BFGS with exact gradients, starting at the identity (T = 1), with an L2 penalty
  ``l2 * (||W - I||^2 + ||b||^2)`` (Kull et al. 2019 regularise the off-diagonal part the same way)
  so that K^2 + K parameters do not overfit a small validation split.

Fitted objects follow scikit-learn: ``fit`` returns self, fitted attributes end in ``_``, and
``transform(logits)`` returns calibrated logits. Nothing here draws random numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from multilens.errors import ConfigError
from multilens.lenses.calibration.metrics import as_probs, log_softmax, nll_logits, softmax

T_MIN, T_MAX = 0.05, 20.0
GRAD_TOL = 1e-5  # |dNLL/dlog T| at the optimum for "converged" (NLL is O(1); Brent's xatol is 1e-9)


def nll_and_grad_log_t(labels: np.ndarray, logits: np.ndarray, log_t: float) -> tuple[float, float]:
    """NLL(z / T) and its derivative in log T: mean((z_y - E_p[z]) / T) with p = softmax(z / T)."""
    t = math.exp(log_t)
    z = logits / t
    ls = log_softmax(z)
    n = z.shape[0]
    val = float(-np.mean(ls[np.arange(n), labels]))
    p = np.exp(ls)
    grad = float(np.mean((logits[np.arange(n), labels] - np.sum(p * logits, axis=1)) / t))
    return val, grad


@dataclass(frozen=True)
class TemperatureFit:
    temperature: float
    nll_before: float  # at T = 1, on the data it was fitted on
    nll_after: float
    converged: bool
    n_iter: int
    grad: float  # dNLL/dlog T at the optimum
    at_bound: bool
    message: str


def fit_temperature(
    labels: np.ndarray, logits: np.ndarray, *, t_min: float = T_MIN, t_max: float = T_MAX, xatol: float = 1e-9
) -> TemperatureFit:
    """The NLL-minimising temperature on (labels, logits), with a convergence report."""
    if not 0 < t_min < 1 < t_max:
        raise ConfigError(f"`t_min` < 1 < `t_max` with t_min > 0 is required; got {t_min}, {t_max}.")
    z = np.asarray(logits, np.float64)
    lo, hi = math.log(t_min), math.log(t_max)
    res = optimize.minimize_scalar(
        lambda s: nll_and_grad_log_t(labels, z, s)[0],
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": xatol, "maxiter": 500},
    )
    s = float(res.x)
    val, grad = nll_and_grad_log_t(labels, z, s)
    before = nll_logits(labels, z)
    at_bound = min(s - lo, hi - s) < 1e-3
    converged = bool(res.success) and not at_bound and abs(grad) <= GRAD_TOL
    msg = f"{res.message}; |dNLL/dlogT| = {abs(grad):.2g}" + ("; optimum on the search bound" if at_bound else "")
    return TemperatureFit(math.exp(s), before, val, converged, int(res.nfev), grad, at_bound, msg)


class TemperatureScaler:
    """Temperature scaling as an estimator: ``fit(labels, logits)``, then ``transform(logits)``."""

    def __init__(self, t_min: float = T_MIN, t_max: float = T_MAX) -> None:
        self.t_min, self.t_max = t_min, t_max

    def fit(self, labels: np.ndarray, logits: np.ndarray) -> TemperatureScaler:
        y, _ = as_probs(labels, logits=logits)
        self.fit_ = fit_temperature(y, np.asarray(logits, np.float64), t_min=self.t_min, t_max=self.t_max)
        self.temperature_ = self.fit_.temperature
        self.converged_ = self.fit_.converged
        self.n_iter_ = self.fit_.n_iter
        return self

    def transform(self, logits: np.ndarray) -> np.ndarray:
        return np.asarray(logits, np.float64) / self.temperature_

    def predict_proba(self, logits: np.ndarray) -> np.ndarray:
        return softmax(self.transform(logits))


class AffineScaler:
    """Vector (``kind="vector"``: a * z + b) or matrix (``kind="matrix"``: z W^T + b) scaling."""

    def __init__(self, kind: str = "vector", l2: float = 1e-3, max_iter: int = 1000, gtol: float = 1e-7) -> None:
        if kind not in ("vector", "matrix"):
            raise ConfigError(f"`kind` must be 'vector' or 'matrix'; got {kind!r}.")
        if not l2 >= 0:
            raise ConfigError(f"`l2` must be >= 0; got {l2}.")
        self.kind, self.l2, self.max_iter, self.gtol = kind, l2, max_iter, gtol

    def _unpack(self, theta: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.kind == "vector":
            return np.diag(theta[:k]), theta[k:]
        return theta[: k * k].reshape(k, k), theta[k * k :]

    def _objective(self, theta: np.ndarray, z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        n, k = z.shape
        w, b = self._unpack(theta, k)
        out = z @ w.T + b  # (n, K)
        ls = log_softmax(out)
        val = -np.mean(ls[np.arange(n), y])
        g = np.exp(ls)
        g[np.arange(n), y] -= 1.0
        g /= n  # dNLL/d out, (n, K)
        gw = g.T @ z  # (K, K)
        gb = g.sum(axis=0)
        eye = np.eye(k)
        val += self.l2 * (np.sum((w - eye) ** 2) + np.sum(b**2))
        gw = gw + 2 * self.l2 * (w - eye)
        gb = gb + 2 * self.l2 * b
        grad = np.concatenate([np.diag(gw) if self.kind == "vector" else gw.ravel(), gb])
        return float(val), grad

    def fit(self, labels: np.ndarray, logits: np.ndarray) -> AffineScaler:
        y, _ = as_probs(labels, logits=logits)
        z = np.asarray(logits, np.float64)
        k = z.shape[1]
        theta0 = np.concatenate([np.ones(k) if self.kind == "vector" else np.eye(k).ravel(), np.zeros(k)])
        res = optimize.minimize(
            self._objective, theta0, args=(z, y), jac=True, method="L-BFGS-B",
            options={"maxiter": self.max_iter, "gtol": self.gtol},
        )  # fmt: skip
        self.w_, self.b_ = self._unpack(res.x, k)
        self.converged_ = bool(res.success)
        self.n_iter_ = int(res.nit)
        self.nll_before_ = nll_logits(y, z)
        self.nll_after_ = nll_logits(y, self.transform(z))
        self.message_ = str(res.message)
        return self

    def transform(self, logits: np.ndarray) -> np.ndarray:
        return np.asarray(logits, np.float64) @ self.w_.T + self.b_

    def predict_proba(self, logits: np.ndarray) -> np.ndarray:
        return softmax(self.transform(logits))
