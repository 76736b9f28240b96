"""The implicit-bias lens's hand-off to the robustness lens: a GD-trained linear classifier and its margins.

GD on the mean logistic loss of a linear classifier f(x) = w.x + b (labels y in {-1, +1}) from zero,
a fixed budget of full-batch steps. For an l-inf perturbation ||delta||_inf <= eps the worst case
of y f(x + delta) is y f(x) - eps ||w||_1 (Hoelder: the dual of l-inf is l-1), so a held-out point
is robust at eps exactly when its *normalised l-inf margin* y (w.x + b) / ||w||_1 exceeds eps
(no input box). The fraction of held-out points with normalised margin > eps is therefore the
robust accuracy any exact attack must find on this model; the robustness lens attacks the handed-on
model without knowing the margins and the protocol compares the two numbers (consistency 6).

``eps`` is fixed before the held-out points are looked at: the ``eps`` setting, or (when 0) the
median normalised margin of the correctly classified TRAINING points.

Independent check of the GD solution: when the data are not separable the logistic loss has a
unique minimiser, found here by Newton's method (a different algorithm); GD's fixed budget is
compared with it (agreement, tolerance fixed in the settings). On separable data Newton does not
converge (no finite minimiser) and that check is not evaluated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from multilens.results import Check, Estimate, Part, Table, check_within, metric_with_interval
from multilens.stats import DETERMINISTIC, clopper_pearson

LENS = "implicit_bias"
NEWTON_MAX_ITER = 100
NEWTON_TOL = 1e-12  # Newton stops when the gradient norm falls below this


@dataclass(frozen=True)
class LinearFit:
    w: np.ndarray
    b: float
    loss: float
    loss0: float
    grad_norm: float
    steps: int


def _sigmoid(t: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * t))


def logistic_loss(w: np.ndarray, b: float, x: np.ndarray, y: np.ndarray) -> float:
    """Mean log(1 + exp(-y (w.x + b)))."""
    return float(np.mean(np.logaddexp(0.0, -y * (x @ w + b))))


def _grad(w: np.ndarray, b: float, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    r = -y * _sigmoid(-y * (x @ w + b))  # d loss_i / d f_i
    return x.T @ r / len(y), float(np.mean(r))


def gd_logistic(x: np.ndarray, y: np.ndarray, *, steps: int, lr_fraction: float) -> LinearFit:
    """Full-batch GD from zero with eta = lr_fraction * 4 / s_max([X, 1])^2 * n (the loss's smoothness is
    s_max^2 / (4 n)); a fixed budget of ``steps`` steps."""
    n, d = x.shape
    xa = np.hstack([x, np.ones((n, 1))])
    smooth = float(np.linalg.norm(xa, 2)) ** 2 / (4.0 * n)
    eta = lr_fraction / smooth
    w, b = np.zeros(d), 0.0
    loss0 = logistic_loss(w, b, x, y)
    for _ in range(steps):
        gw, gb = _grad(w, b, x, y)
        w, b = w - eta * gw, b - eta * gb
    gw, gb = _grad(w, b, x, y)
    return LinearFit(w, float(b), logistic_loss(w, b, x, y), loss0, float(math.hypot(np.linalg.norm(gw), gb)), steps)


def newton_logistic(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float, bool, int]:
    """The minimiser of the mean logistic loss by damped Newton (backtracking); (w, b, converged, n_iter)."""
    n, d = x.shape
    xa = np.hstack([x, np.ones((n, 1))])
    th = np.zeros(d + 1)

    def f(t: np.ndarray) -> float:
        return float(np.mean(np.logaddexp(0.0, -y * (xa @ t))))

    for it in range(1, NEWTON_MAX_ITER + 1):
        z = xa @ th
        p = _sigmoid(-y * z)
        g = xa.T @ (-y * p) / n
        if float(np.linalg.norm(g)) < NEWTON_TOL:
            # a finite minimiser never separates every point (scaling it up would lower the loss): a tiny
            # gradient with every margin positive is a diverging iterate on separable data, not a minimiser
            return th[:d], float(th[d]), bool(np.any(y * z <= 0)), it
        h = (xa * (p * (1 - p))[:, None]).T @ xa / n
        try:
            step = np.linalg.solve(h + 1e-14 * np.eye(d + 1), g)
        except np.linalg.LinAlgError:
            break
        t, f0 = 1.0, f(th)
        while f(th - t * step) > f0 - 1e-4 * t * float(g @ step) and t > 1e-10:
            t *= 0.5
        th = th - t * step
        if not np.all(np.isfinite(th)) or float(np.linalg.norm(th)) > 1e8:  # separable: no finite minimiser
            break
    return th[:d], float(th[d]), False, NEWTON_MAX_ITER


def normalized_margins(w: np.ndarray, b: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """y (w.x + b) / ||w||_1: the l-inf distance to the decision boundary, signed (negative = misclassified)."""
    return y * (x @ w + b) / float(np.abs(w).sum())


def choose_eps(margins_train: np.ndarray, eps_setting: float) -> float:
    """The setting when > 0; else the median normalised margin of the correctly classified training points."""
    if eps_setting > 0:
        return float(eps_setting)
    pos = margins_train[margins_train > 0]
    if pos.size == 0:
        raise ValueError("no training point is correctly classified: no margin-based eps")
    return float(np.median(pos))


def margin_fraction(margins_test: np.ndarray, eps: float, level: float = 0.95) -> Estimate:
    k, n = int(np.sum(margins_test > eps)), int(margins_test.size)
    return clopper_pearson(k, n, level).to_estimate(
        "implicit_bias.margin_fraction_above_eps",
        unit="fraction",
        note=f"held-out points with normalised l-inf margin y(w.x+b)/||w||_1 > eps = {eps:.6g}",
    )


def handoff_part(data: Any, ps: Any, level: float, *, seed: int) -> Part:
    """GD-trained linear classifier on ``data`` (a Separable with held-out points); see the module docstring.

    Deterministic (GD from zero on fixed data): ``seed`` is unused.
    """
    del seed
    x, y, xt, yt = data.x, data.labels, data.x_test, data.labels_test
    fit = gd_logistic(x, y, steps=ps.steps, lr_fraction=ps.lr_fraction)
    m_tr = normalized_margins(fit.w, fit.b, x, y)
    eps = choose_eps(m_tr, ps.eps)
    m_te = normalized_margins(fit.w, fit.b, xt, yt)
    frac = margin_fraction(m_te, eps, level)
    clean = clopper_pearson(int(np.sum(m_te > 0)), len(yt), level).to_estimate(
        "handoff_test_accuracy", unit="fraction", note="held-out accuracy of the GD linear classifier"
    )
    wn, bn, conv, n_it = newton_logistic(x, y)
    rel = float(math.hypot(np.linalg.norm(fit.w - wn), fit.b - bn) / max(1e-12, math.hypot(np.linalg.norm(wn), bn)))
    est = (
        frac,
        clean,
        Estimate("handoff_eps", eps, n=len(y), unit="input units (l-inf)", no_interval_reason=DETERMINISTIC,
                 note="fixed from the training margins (or the setting) before the held-out points are used"),
        Estimate("handoff_train_loss", fit.loss, n=len(y), no_interval_reason=DETERMINISTIC,
                 converged=None, n_iter=fit.steps, note=f"mean logistic loss after {fit.steps} GD steps"),
        Estimate("handoff_gd_vs_newton_relative_distance", rel if conv else None, n=len(y),
                 no_interval_reason=DETERMINISTIC, converged=conv, n_iter=n_it,
                 note="||theta_GD - theta_Newton|| / ||theta_Newton||" if conv
                 else "Newton did not converge (separable data: no finite minimiser)"),
    )  # fmt: skip
    checks: list[Check] = [
        Check(
            "handoff_gd_decreased_loss",
            fit.loss < fit.loss0,
            fit.loss,
            fit.loss0,
            None,
            f"GD's training loss {fit.loss:.6g} vs {fit.loss0:.6g} at w = 0",
            kind="sanity",
            criterion="final training loss < loss at zero (a diverging step size fails this)",
        ),
        check_within(
            "handoff_gd_matches_newton",
            rel if conv else None,
            0.0,
            ps.newton_tol,
            kind="agreement",
            what="GD's fixed budget against the logistic minimiser found by Newton's method (relative distance)",
        ),
    ]
    probs = [0.1, 0.25, 0.5, 0.75, 0.9]
    qs, qs_tr = np.quantile(m_te, probs), np.quantile(m_tr, probs)
    table = Table(
        "handoff_margins",
        "Normalised l-inf margins of the handed-on linear classifier",
        ["split", "n", "eps", "fraction > eps", "q10", "q25", "median", "q75", "q90"],
        [
            ["train", len(y), eps, float(np.mean(m_tr > eps)), *map(float, qs_tr)],
            ["test", len(yt), eps, frac.value, *map(float, qs)],
        ],
        caption="y(w.x + b)/||w||_1 is the l-inf distance to the boundary; robust at eps (no box) iff it exceeds eps",
    )  # fmt: skip
    artifact = {
        "w": [float(v) for v in fit.w],
        "b": float(fit.b),
        "x_test": [[float(v) for v in row] for row in xt],
        "y_test": [float(v) for v in yt],
        "norm": "linf",
        "eps": eps,
    }
    return Part(
        "handoff",
        est,
        tuple(checks),
        tables=(table,),
        metrics=metric_with_interval("implicit_bias.margin_fraction_above_eps", frac),
        outputs={"implicit_bias.linear_classifier": artifact},
        data={"eps_rule": "setting" if ps.eps > 0 else "median normalised margin of correct training points"},
    )
