"""Separable logistic regression: GD's direction against the exact hard-margin SVM direction.

Follows Soudry et al. (JMLR 2018): GD with a fixed step on the summed logistic loss over
linearly separable data satisfies w(t) = w_hat log t + rho(t), so its direction reaches the SVM
direction w_hat/||w_hat|| only like 1/log t; when the support vectors span R^d, rho(t) tends to
w_tilde (eta exp(-z_n^T w_tilde) = alpha_n), which predicts the gap curve itself, not just its
order. Loss-normalised GD, w <- w - eta grad L / L (Nacson et al., "Convergence of Gradient
Descent on Separable Data", AISTATS 2019), converges polynomially instead (their bound:
O(log t / sqrt t)).

Data: a planted separable problem whose SVM is known in closed form (d support vectors on a
distorted simplex around the direction u, every other point at margin >= 2), so the QP solver
is itself checked against a known answer and the support vectors span R^d, as the w_tilde
prediction needs. Labels are random signs; x_n = y_n z_n.

Numerics: normalised GD drives margins up linearly in t, so exp(-margin) underflows (margins
> ~745 in float64) and the naive step eta / L(w) becomes eta / 0. The weights
q_n = -l'(m_n) / L are computed in log space: log sigmoid(-m_n) - logsumexp_k log softplus(-m_k).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.special import log_expit

from multilens.errors import ConfigError, ConvergenceWarning
from multilens.seeding import SeedLike, as_generator
from multilens.theory.implicit_bias import (
    SVMSolution,
    hard_margin_svm,
    logistic_max_lr,
    soudry_direction_gap,
    soudry_residual_limit,
)
from multilens.validation import check_int

# ----------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class PlantedSeparable:
    """Separable data whose hard-margin SVM is w_hat = u / margin, with dual alpha_n ∝ c_n."""

    x: np.ndarray  # (n, d)
    y: np.ndarray  # (n,) in {-1, +1}
    w_hat: np.ndarray  # (d,) the planted SVM solution
    alpha: np.ndarray  # (n,) the planted dual solution (zero off the support)

    @property
    def z(self) -> np.ndarray:
        return self.x * self.y[:, None]


def _simplex(k: int) -> np.ndarray:
    """k+1 unit vectors in R^k forming a regular simplex centred at the origin: (k+1, k)."""
    e = np.eye(k + 1) - 1.0 / (k + 1)  # centred standard basis, rank k
    _, _, vt = np.linalg.svd(e)
    b = e @ vt[:k].T
    return b / np.linalg.norm(b, axis=1, keepdims=True)


def planted_separable(n: int, d: int, margin: float, seed: SeedLike, far: float = 2.0) -> PlantedSeparable:
    """n points in R^d with exactly d support vectors spanning R^d and geometric margin ``margin``.

    Support vectors z_n = margin u + v_n with v_n a regular simplex in u-perp of radius
    margin sqrt(d-1) (so sum_n alpha_n z_n z_n^T is well conditioned and rho(t) converges fast),
    recentred so that sum_n c_n v_n = 0 for random weights c_n in [0.5, 1.5]; then
    w_hat = sum alpha_n z_n with alpha_n = c_n / (margin^2 sum c) and every support margin is 1.
    Unequal c_n give rho(t) a component off w_hat, so the gap decays like 1/log t, not faster.
    The other n - d points have u^T z >= far * margin (SVM margin >= far).
    """
    check_int("n", n, d + 1)
    check_int("d", d, 2)
    if not margin > 0:
        raise ConfigError(f"`margin` must be > 0; got {margin}.")
    rng = as_generator(seed)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    u, basis = q[:, 0], q[:, 1:]  # u and an orthonormal basis of u-perp
    c = rng.uniform(0.5, 1.5, d)
    v = (_simplex(d - 1) @ basis.T) * margin * np.sqrt(d - 1)  # (d, d) rows in u-perp
    v = v - (c @ v) / c.sum()  # weighted-centre: sum_n c_n v_n = 0
    z_sup = margin * u + v
    z_far = rng.standard_normal((n - d, d))
    target = margin * (far + np.abs(rng.standard_normal(n - d)))
    z_far = z_far + (target - z_far @ u)[:, None] * u
    z = np.vstack([z_sup, z_far])
    y = np.where(rng.random(n) < 0.5, 1.0, -1.0)
    alpha = np.r_[c / (margin**2 * c.sum()), np.zeros(n - d)]
    return PlantedSeparable(z * y[:, None], y, u / margin, alpha)


# ----------------------------------------------------------------------------------------------
# Log-space logistic loss


def log_softplus(a: np.ndarray) -> np.ndarray:
    """log(log(1 + e^a)), stable for very negative a (where it is a + log1p(-e^a/2 + ...))."""
    a = np.asarray(a, np.float64)
    small = a < -30.0
    out = np.empty_like(a)
    e = np.exp(a[small])
    # log1p(u)/u = 1 - u/2 + u^2/3 - ...: good to ~u^3 ~ 1e-39 for a < -30.
    out[small] = a[small] + np.log1p(-0.5 * e + e * e / 3.0)
    out[~small] = np.log(np.logaddexp(0.0, a[~small]))
    return out


def _logsumexp_last(a: np.ndarray) -> np.ndarray:
    m = np.max(a, axis=-1, keepdims=True)
    return (m + np.log(np.sum(np.exp(a - m), axis=-1, keepdims=True)))[..., 0]


def log_loss(margins: np.ndarray) -> np.ndarray:
    """log L for L = sum_n log(1 + exp(-m_n)) over the last axis, never underflowing."""
    return _logsumexp_last(log_softplus(-np.asarray(margins, np.float64)))


def normalized_weights(margins: np.ndarray) -> np.ndarray:
    """q_n = sigmoid(-m_n) / sum_k log(1 + e^{-m_k}) = -l'(m_n)/L, in log space (last axis)."""
    m = np.asarray(margins, np.float64)
    return np.exp(log_expit(-m) - log_loss(m)[..., None])


def naive_normalized_weights(margins: np.ndarray) -> np.ndarray:
    """The same weights computed directly; underflows to 0/0 once margins exceed ~745.

    Kept only so tests and the lens can show where the direct form breaks.
    """
    m = np.asarray(margins, np.float64)
    with np.errstate(all="ignore"):
        loss = np.sum(np.log1p(np.exp(-m)), axis=-1, keepdims=True)
        return (1.0 / (1.0 + np.exp(m))) / loss


# ----------------------------------------------------------------------------------------------
# The runs


@dataclass(frozen=True)
class LogisticTrajectories:
    """GD and normalised-GD direction gaps at the recorded steps, for S problem instances."""

    steps: np.ndarray  # (K,) recorded steps (>= 1)
    gap_gd: np.ndarray  # (S, K) ||w/||w|| - w_hat/||w_hat|| ||
    gap_ngd: np.ndarray  # (S, K)
    gap_pred: np.ndarray  # (S, K) Soudry asymptote; NaN where w_tilde is undefined
    margin_gap_gd: np.ndarray  # (S, K) gamma* - min_n z_n^T w_t / ||w_t|| (l2 margin shortfall)
    margin_gap_pred: np.ndarray  # (S, K) the same for w_hat log t + w_tilde
    norm_gd: np.ndarray  # (S, K) ||w_t||
    par_gd: np.ndarray  # (S, K) w_t^T w_hat / ||w_hat|| (grows like ||w_hat|| log t)
    rho_err: np.ndarray  # (S, K) ||w_t - w_hat log t - w_tilde|| (NaN without w_tilde)
    min_margin_ngd: np.ndarray  # (S, K) min_n z_n^T w_t of normalised GD
    eta: np.ndarray  # (S,) step sizes
    svms: tuple[SVMSolution, ...]
    problems: tuple[PlantedSeparable, ...]
    w_tilde: tuple[np.ndarray | None, ...]
    w_gd: np.ndarray  # (S, d) final iterates
    w_ngd: np.ndarray  # (S, d)
    finite_ngd: bool  # every normalised-GD iterate stayed finite


def record_steps(total: int, n_points: int) -> np.ndarray:
    """About ``n_points`` log-spaced steps in [1, total], always including ``total``."""
    s = np.unique(np.round(np.logspace(0, np.log10(total), n_points)).astype(np.int64))
    return np.unique(np.r_[s[(s >= 1) & (s <= total)], total])


def run_logistic(
    problems: list[PlantedSeparable],
    steps: int,
    lr_fraction: float,
    n_points: int,
) -> LogisticTrajectories:
    """Run GD (fixed step) and loss-normalised GD from w = 0 on each problem, in lockstep.

    eta = lr_fraction * 8 / s_max(X)^2 (lr_fraction < 1 satisfies Soudry et al.'s condition);
    normalised GD uses the same eta with step eta / L(w_t).
    """
    check_int("steps", steps, 10)
    z = np.stack([p.z for p in problems])  # (S, n, d)
    s_count, _, d = z.shape
    eta = np.array([lr_fraction * logistic_max_lr(p.x) for p in problems])  # (S,)
    svms = tuple(hard_margin_svm(p.x, p.y) for p in problems)
    w_hat = np.stack([s.w for s in svms])  # (S, d)
    u = w_hat / np.linalg.norm(w_hat, axis=1, keepdims=True)
    w_tilde = tuple(soudry_residual_limit(p.x, p.y, s, e) for p, s, e in zip(problems, svms, eta))
    rec = record_steps(steps, n_points)
    k_count = rec.size
    gap_gd = np.empty((s_count, k_count))
    gap_ngd = np.empty((s_count, k_count))
    norm_gd = np.empty((s_count, k_count))
    par_gd = np.empty((s_count, k_count))
    rho_err = np.full((s_count, k_count), np.nan)
    min_m = np.empty((s_count, k_count))
    gap_pred = np.full((s_count, k_count), np.nan)
    mgap = np.empty((s_count, k_count))
    mgap_pred = np.full((s_count, k_count), np.nan)
    gamma = 1.0 / np.linalg.norm(w_hat, axis=1)  # (S,) optimal l2 margins
    for i, wt in enumerate(w_tilde):
        if wt is not None:
            gap_pred[i] = soudry_direction_gap(w_hat[i], wt, rec)
            p = np.log(rec)[:, None] * w_hat[i][None, :] + wt[None, :]  # (K, d)
            mgap_pred[i] = gamma[i] - (p @ z[i].T).min(axis=1) / np.linalg.norm(p, axis=1)
    w = np.zeros((s_count, d))
    wn = np.zeros((s_count, d))
    finite = True
    k = 0
    for t in range(1, steps + 1):
        m = np.einsum("snd,sd->sn", z, w)
        # -l'(m) = sigmoid(-m) = exp(log_expit(-m)): exact, and 0 (not NaN) on underflow.
        w = w + eta[:, None] * np.einsum("snd,sn->sd", z, np.exp(log_expit(-m)))
        mn = np.einsum("snd,sd->sn", z, wn)
        wn = wn + eta[:, None] * np.einsum("snd,sn->sd", z, normalized_weights(mn))
        if t == rec[k]:
            nw = np.linalg.norm(w, axis=1)
            gap_gd[:, k] = np.linalg.norm(w / nw[:, None] - u, axis=1)
            gap_ngd[:, k] = np.linalg.norm(wn / np.linalg.norm(wn, axis=1, keepdims=True) - u, axis=1)
            norm_gd[:, k] = nw
            mgap[:, k] = gamma - np.einsum("snd,sd->sn", z, w).min(axis=1) / nw
            par_gd[:, k] = np.einsum("sd,sd->s", w, u)
            min_m[:, k] = np.einsum("snd,sd->sn", z, wn).min(axis=1)
            for i, wt in enumerate(w_tilde):
                if wt is not None:
                    rho_err[i, k] = np.linalg.norm(w[i] - w_hat[i] * np.log(t) - wt)
            finite = finite and bool(np.all(np.isfinite(wn)))
            k += 1
    return LogisticTrajectories(
        rec,
        gap_gd,
        gap_ngd,
        gap_pred,
        mgap,
        mgap_pred,
        norm_gd,
        par_gd,
        rho_err,
        min_m,
        eta,
        svms,
        tuple(problems),
        w_tilde,
        w,
        wn,
        finite,
    )


# ----------------------------------------------------------------------------------------------
# Fits of the gap curves


@dataclass(frozen=True)
class GapFit:
    """Fits of one gap curve over a late window of steps."""

    inv_slope: float  # b in 1/gap = a + b log t (the Soudry asymptote's form)
    inv_intercept: float
    inv_r2: float
    origin_coef: float  # A in gap = A / log t (the plain 1/log t law, through the origin)
    origin_r2: float
    power_exponent: float  # p in gap ~ C t^p (the alternative: a power law)
    power_r2: float
    n_points: int


def _r2(y: np.ndarray, yhat: np.ndarray) -> float:
    ss = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum((y - yhat) ** 2)) / ss if ss > 0 else float("nan")


def fit_gap(steps: np.ndarray, gap: np.ndarray, t_min: float) -> GapFit:
    """Fit 1/gap = a + b log t, gap = A / log t and log gap = c + p log t on steps >= t_min."""
    sel = (steps >= t_min) & (steps > 1) & np.isfinite(gap) & (gap > 0)
    t = steps[sel].astype(np.float64)
    g = gap[sel]
    if t.size < 3:
        nan = float("nan")
        return GapFit(nan, nan, nan, nan, nan, nan, nan, int(t.size))
    lt = np.log(t)
    b, a = np.polyfit(lt, 1.0 / g, 1)
    x = 1.0 / lt
    coef = float(x @ g / (x @ x))
    p, c = np.polyfit(lt, np.log(g), 1)
    return GapFit(
        float(b),
        float(a),
        _r2(1.0 / g, a + b * lt),
        coef,
        _r2(g, coef * x),
        float(p),
        _r2(np.log(g), c + p * lt),
        int(t.size),
    )


def warn_unconverged_svms(svms: tuple[SVMSolution, ...]) -> None:
    """Warn when a QP did not meet its KKT tolerance (its number is then reported as is)."""
    for s in svms:
        if not s.converged:
            warnings.warn(
                f"hard-margin SVM did not meet its KKT tolerance (residual {s.kkt_residual:.2e} after "
                f"{s.n_iter} iterations)",
                ConvergenceWarning,
                stacklevel=2,
            )
