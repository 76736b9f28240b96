"""Closed-form predictions for data-parallel SGD on quadratics (pure NumPy/SciPy).

Theorem (seed chapter line 172, "Distributed Convergence Structure"; example 10, B.6): for a
mu-strongly convex, L-smooth F, m workers with unbiased gradients of variance sigma^2 and
0 < eta <= 1/L, synchronous averaged SGD satisfies

    E||theta_t - theta*||^2 <= (1 - mu*eta)^t ||theta_0 - theta*||^2 + eta*sigma^2 / (mu*m).

(The seed's proof has a false step, 1 - 2*mu*eta + eta^2*L^2 <= 1 - mu*eta; the bound itself
holds by co-coercivity. See inventory-1, E4.)

For the noise model the lens actually runs, a quadratic with Hessian eigenvalues lam_i and
additive isotropic Gaussian noise xi ~ N(0, sigma^2/d I) per worker (so E||xi||^2 = sigma^2,
the theorem's sigma^2), the error in eigen-coordinate i is the AR(1) process
e_i' = (1 - eta*lam_i) e_i - eta*xibar_i with Var(xibar_i) = sigma^2/(d*m). Its exact
stationary mean square is

    E||e||^2_inf = sum_i eta*sigma^2 / (d*m*lam_i*(2 - eta*lam_i)),

which is <= eta*sigma^2/(mu*m) whenever eta*L <= 1 (each term is at most eta*sigma^2/(d*m*mu)),
and falls exactly as 1/m. (With per-coordinate variance sigma^2 instead of total variance the
1/d disappears; the lens states sigma^2 as the total.)

Delays. With a constant delay tau (gradients applied tau steps late) each mode follows
x_{t+1} = x_t - a x_{t-tau} - eta*xi, a = eta*lam. It is stable iff 0 < a < 2 cos(tau*pi/(2 tau + 1))
(Levin & May 1976), its rate is the spectral radius of the (tau+1) x (tau+1) companion matrix and
its stationary variance solves a discrete Lyapunov equation. Delayed noise is still white and
independent of the state, so the same equation covers the delay buffer.

Local SGD. With K local gradient steps on shard quadratics F_r (grad = H_r theta - b_r) and a
parameter average, one round is the affine map theta -> mean_r A_r^K theta + mean_r S_r eta b_r,
A_r = I - eta H_r, S_r = sum_{j<K} A_r^j. Its fixed point differs from theta* when the H_r differ
(client drift; Woodworth et al. 2020); the lens predicts the iterate exactly.
"""

from __future__ import annotations

import math

import numpy as np

from multilens.errors import ConfigError
from multilens.validation import check_int


def _check_step(eigvals: np.ndarray, eta: float) -> np.ndarray:
    lam = np.asarray(eigvals, dtype=np.float64)
    if lam.ndim != 1 or lam.size == 0 or not np.all(lam > 0):
        raise ConfigError("`eigvals` must be a non-empty 1-D array of positive numbers.")
    if not (eta > 0 and np.all(eta * lam < 2.0)):
        raise ConfigError(f"`eta` must be in (0, 2/L) = (0, {2.0 / lam.max():.6g}) for a stationary floor; got {eta}.")
    return lam


def exact_stationary_floor(eigvals: np.ndarray, eta: float, sigma2: float, m: int) -> float:
    """Exact stationary E||theta - theta*||^2 of averaged SGD with isotropic noise of total variance sigma2."""
    lam = _check_step(eigvals, eta)
    check_int("m", m, 1)
    d = lam.size
    return float(np.sum(eta * sigma2 / (d * m * lam * (2.0 - eta * lam))))


def theorem_floor(mu: float, eta: float, sigma2: float, m: int) -> float:
    """The theorem's noise floor eta*sigma^2/(mu*m) (an upper bound on the exact floor)."""
    check_int("m", m, 1)
    return float(eta * sigma2 / (mu * m))


def theorem_bound_curve(steps: np.ndarray, init_sq: float, mu: float, eta: float, sigma2: float, m: int) -> np.ndarray:
    """(1 - mu*eta)^t ||theta_0 - theta*||^2 + eta*sigma^2/(mu*m) at each t in ``steps``."""
    t = np.asarray(steps, dtype=np.float64)
    return (1.0 - mu * eta) ** t * init_sq + theorem_floor(mu, eta, sigma2, m)


def exact_error_curve(
    eigvals: np.ndarray, init_coords: np.ndarray, eta: float, sigma2: float, m: int, steps: np.ndarray
) -> np.ndarray:
    """Exact E||theta_t - theta*||^2 from a fixed start (``init_coords`` = Q^T (theta_0 - theta*))."""
    lam = _check_step(eigvals, eta)
    c2 = np.asarray(init_coords, dtype=np.float64) ** 2
    t = np.asarray(steps, dtype=np.float64)[:, None]  # (T, 1) against modes (1, d)
    decay = (1.0 - eta * lam)[None, :] ** (2.0 * t)
    v = eta * sigma2 / (lam.size * m * lam * (2.0 - eta * lam))
    return np.sum(decay * c2[None, :] + v[None, :] * (1.0 - decay), axis=1)


# ---------------------------------------------------------------------------------------------
# Delays (bounded staleness)
# ---------------------------------------------------------------------------------------------


def delay_companion(a: float, tau: int) -> np.ndarray:
    """Companion matrix of x_{t+1} = x_t - a x_{t-tau} on the state (x_t, ..., x_{t-tau})."""
    check_int("tau", tau, 0)
    n = tau + 1
    c = np.zeros((n, n))
    c[0, 0] = 1.0
    c[0, -1] -= a  # tau = 0 gives the 1x1 matrix [1 - a]
    c[1:, :-1] += np.eye(n - 1)
    return c


def delayed_spectral_radius(eigvals: np.ndarray, eta: float, tau: int) -> float:
    """Per-step contraction factor of delayed GD: max over modes of the companion spectral radius."""
    lam = np.asarray(eigvals, dtype=np.float64)
    return float(max(np.max(np.abs(np.linalg.eigvals(delay_companion(eta * li, tau)))) for li in lam))


def levin_may_threshold(tau: int) -> float:
    """x_{t+1} = x_t - a x_{t-tau} is asymptotically stable iff 0 < a < 2 cos(tau*pi/(2*tau+1))."""
    check_int("tau", tau, 0)
    return 2.0 * math.cos(tau * math.pi / (2 * tau + 1))


def max_stable_delay(eta_l: float, cap: int = 100_000) -> int:
    """Largest constant delay tau with eta*L below the Levin-May threshold (-1 if none, cap if all)."""
    if not eta_l > 0:
        raise ConfigError(f"`eta_l` must be > 0; got {eta_l}.")
    if eta_l >= 2.0:
        return -1
    phi = math.acos(eta_l / 2.0)
    # tau*pi/(2 tau + 1) < phi  <=>  tau < phi / (pi - 2 phi); the threshold decreases in tau.
    guess = int(min(cap, math.ceil(phi / (math.pi - 2.0 * phi)) if phi < math.pi / 2 else cap))

    def stable(tau: int) -> bool:  # on the boundary (to rounding) the iteration is only marginal
        return eta_l < levin_may_threshold(tau) * (1.0 - 1e-12)

    tau = max(guess, 0)
    while tau > 0 and not stable(tau):
        tau -= 1
    while tau + 1 <= cap and stable(tau + 1):
        tau += 1
    return tau


def delayed_stationary_floor(eigvals: np.ndarray, eta: float, sigma2: float, m: int, tau: int) -> float | None:
    """Exact stationary E||e||^2 of SGD with a constant gradient delay tau (None when unstable)."""
    from scipy.linalg import solve_discrete_lyapunov  # imported here: worker processes never need scipy

    lam = np.asarray(eigvals, dtype=np.float64)
    check_int("m", m, 1)
    q_var = eta**2 * sigma2 / (lam.size * m)  # variance of eta * (averaged noise) per coordinate
    total = 0.0
    for li in lam:
        a_mat = delay_companion(eta * li, tau)
        if np.max(np.abs(np.linalg.eigvals(a_mat))) >= 1.0:
            return None
        q = np.zeros_like(a_mat)
        q[0, 0] = q_var
        total += float(solve_discrete_lyapunov(a_mat, q)[0, 0])
    return total


def delay_pmf(kind: str, tau_max: int, p: float = 0.5) -> np.ndarray:
    """The stated delay distribution on {0, ..., tau_max}: "uniform", or "geometric" (P(k) ~ (1-p)^k) truncated."""
    check_int("tau_max", tau_max, 0)
    k = np.arange(tau_max + 1)
    if kind == "uniform":
        w = np.ones(tau_max + 1)
    elif kind == "geometric":
        if not 0.0 < p <= 1.0:
            raise ConfigError(f"`p` must be in (0, 1]; got {p}.")
        w = (1.0 - p) ** k * p
    elif kind == "const":
        w = (k == tau_max).astype(np.float64)
    else:
        raise ConfigError(f"`kind` must be uniform, geometric or const; got {kind!r}.")
    return w / w.sum()


# ---------------------------------------------------------------------------------------------
# Local SGD
# ---------------------------------------------------------------------------------------------


def local_sgd_round_map(
    hessians: list[np.ndarray], linear: list[np.ndarray], eta: float, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """(M, c) with one local-SGD round theta -> M theta + c (K local GD steps, then the average)."""
    check_int("k", k, 1)
    d = hessians[0].shape[0]
    eye = np.eye(d)
    ms, cs = [], []
    for h, b in zip(hessians, linear):
        a = eye - eta * h
        ak = np.linalg.matrix_power(a, k)
        s = sum(np.linalg.matrix_power(a, j) for j in range(k))
        ms.append(ak)
        cs.append(s @ (eta * b))
    return sum(ms) / len(ms), sum(cs) / len(cs)


def local_sgd_iterate(
    hessians: list[np.ndarray], linear: list[np.ndarray], eta: float, k: int, theta0: np.ndarray, rounds: int
) -> np.ndarray:
    """Exact averaged iterate after ``rounds`` rounds of noise-free local GD from ``theta0``."""
    m_mat, c = local_sgd_round_map(hessians, linear, eta, k)
    theta = np.asarray(theta0, dtype=np.float64).copy()
    for _ in range(rounds):
        theta = m_mat @ theta + c
    return theta


def local_sgd_fixed_point(hessians: list[np.ndarray], linear: list[np.ndarray], eta: float, k: int) -> np.ndarray:
    """Fixed point (I - M)^{-1} c of the local-SGD round map: where local GD converges."""
    m_mat, c = local_sgd_round_map(hessians, linear, eta, k)
    return np.linalg.solve(np.eye(m_mat.shape[0]) - m_mat, c)
