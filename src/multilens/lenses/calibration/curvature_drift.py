"""Curvature growth against calibration drift past interpolation (C.15's hint; protocol consistency 7).

At each checkpoint of the trajectory from the first one with zero training error on, the top
eigenvalue lambda_max of the Hessian of the training loss (Lanczos, computed when the checkpoint
was taken, with the curvature lens's :func:`multilens.curvature.hessian_eigenvalues`) and the test
ECE. The statistic is Spearman's rank correlation between lambda_max(t) and ECE(t) over those
checkpoints; its interval is a percentile bootstrap over TEST EXAMPLES (the same resampled examples
at every checkpoint, so the ECE curve is resampled as a whole; lambda_max is held fixed: it is
a property of the training loss, not of the test sample, and its Lanczos error is far below its
change between checkpoints). A replicate whose ECE curve is constant has no rank correlation and is
dropped (counted in ``n_dropped``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats as sps

from multilens.lenses.calibration import metrics as M
from multilens.results import Check, Estimate, Table, metric_with_interval
from multilens.stats import Interval, bootstrap_ci

METRIC = "calibration.curvature_drift_spearman"
MIN_CHECKPOINTS = 3


def spearman(a: Any, b: Any) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN when either side is constant."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(sps.spearmanr(a, b).statistic)


def past_interpolation(traj: tuple[Any, ...]) -> list[int]:
    """Indices of the checkpoints from the first with zero training error on (one per step: a step that
    matched several risk levels is one checkpoint)."""
    first = next((i for i, c in enumerate(traj) if c.train_error == 0.0), None)
    if first is None:
        return []
    out: list[int] = []
    for i in range(first, len(traj)):
        if not out or traj[i].step != traj[out[-1]].step:
            out.append(i)
    return out


def curvature_drift_interval(
    lam: list[float], labels: np.ndarray, probs: np.ndarray, n_bins: int, *, n_boot: int, level: float, seed: int
) -> Interval:
    """Spearman(lam, ECE_k) with ECE_k = ECE(labels, probs[:, k]); bootstrap over the rows (test examples).

    ``probs`` is (n_examples, n_checkpoints, n_classes).
    """
    lam_a = np.asarray(lam, np.float64)

    def stat(y: np.ndarray, p: np.ndarray) -> float:
        return spearman(lam_a, [M.ece(y, p[:, k], n_bins) for k in range(p.shape[1])])

    return bootstrap_ci(stat, labels, probs, n_boot=n_boot, level=level, seed=seed, unit="test examples")


def curvature_drift(traj: tuple[Any, ...], probs_of: Any, s: Any, *, seed: int) -> dict[str, Any]:
    """Estimates, checks, metrics, a table and notes of the curvature-drift correlation (see the module docstring)."""
    idx = past_interpolation(traj)
    if len(idx) < MIN_CHECKPOINTS:
        return {"notes": (f"curvature-drift correlation not evaluated: {len(idx)} checkpoint(s) past interpolation "
                          f"(needs {MIN_CHECKPOINTS})",)}  # fmt: skip
    lam = [traj[i].top_hessian for i in idx]
    if any(v is None for v in lam):
        return {
            "notes": ("curvature-drift correlation not evaluated: the checkpoints carry no top Hessian eigenvalue",)
        }
    labels = None
    cols = []
    for i in idx:
        y, p = probs_of(traj[i].test)
        if labels is not None and not np.array_equal(y, labels):
            return {"notes": ("curvature-drift correlation not evaluated: the checkpoints' test labels differ",)}
        labels = y
        cols.append(p)
    probs = np.stack(cols, axis=1)
    ci = curvature_drift_interval(lam, labels, probs, s.n_bins, n_boot=s.n_boot, level=s.level, seed=seed)
    eces = [M.ece(labels, probs[:, k], s.n_bins) for k in range(len(idx))]
    est = ci.to_estimate(
        METRIC,
        note=f"Spearman rank correlation of lambda_max(t) and test ECE(t) over {len(idx)} checkpoints past "
        "interpolation; bootstrap over test examples (lambda_max held fixed)",
    )
    if not ci.ok:
        est = Estimate(METRIC, est.value, n=len(idx), note=est.note, n_dropped=ci.n_dropped,
                       no_interval_reason=ci.reason or "bootstrap interval unavailable")  # fmt: skip
    conv = [traj[i].top_hessian_converged for i in idx]
    checks = []
    if all(c is not None for c in conv):
        n_ok = sum(bool(c) for c in conv)
        checks.append(
            Check(
                "curvature_lanczos_converged_past_interpolation",
                n_ok == len(conv),
                float(n_ok),
                float(len(conv)),
                0.0,
                f"Lanczos converged at {n_ok} of {len(conv)} checkpoints past interpolation",
                kind="sanity",
                criterion="the top Hessian eigenvalue converged at every checkpoint used",
            )
        )
    table = Table(
        "curvature_drift",
        "Top Hessian eigenvalue and test ECE past interpolation (C.15)",
        ["step", "reason", "lambda_max", "lanczos converged", "test ECE"],
        [[traj[i].step, traj[i].reason, float(lam[k]), conv[k], float(eces[k])] for k, i in enumerate(idx)],
        caption="the protocol compares the rank correlation of these two columns (consistency 7)",
    )
    return {
        "estimates": (est,),
        "checks": tuple(checks),
        "metrics": metric_with_interval(METRIC, est),
        "tables": (table,),
        "notes": (),
    }
