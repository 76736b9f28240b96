"""The scaling-fit report the CLI prints as JSON, and the bridge to multilens Estimate objects.

:func:`scaling_fit_report` fits a user's runs (the Chinchilla form L(N, D) by Hoffmann et al.
2022 Approach 3, or the compute form L(C) = A C^-alpha + L_inf), bootstraps over runs, and
returns plain JSON-safe data: every non-finite number becomes None.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from multilens.errors import ConfigError
from multilens.lenses.scaling.allocation import (
    allocation_constants,
    allocation_regret,
    allocation_with_intervals,
    optimal_allocation,
)
from multilens.lenses.scaling.chinchilla import ChinchillaFit, bootstrap_chinchilla, fit_chinchilla
from multilens.lenses.scaling.compute_law import ComputeLawFit, bootstrap_compute_law, fit_compute_law
from multilens.lenses.scaling.data import ScalingData
from multilens.lenses.scaling.intervals import BootstrapResult, ParamInterval, check_level
from multilens.results import SCHEMA_VERSION, Estimate
from multilens.seeding import SeedLike
from multilens.stats import json_safe
from multilens.validation import check_int

ESTIMATE_METHOD = "bootstrap percentile over runs"


def to_estimates(
    fit: ChinchillaFit | ComputeLawFit, boot: BootstrapResult | None, *, prefix: str = "scaling."
) -> tuple[Estimate, ...]:
    """One :class:`multilens.results.Estimate` per fitted quantity (and allocation exponent).

    Intervals are the bootstrap percentile intervals (``n`` = successful refits, ``n_dropped`` =
    failed ones); without a bootstrap the estimates carry no interval and say why in
    ``no_interval_reason`` (and ``note``).
    """
    if isinstance(fit, ChinchillaFit):
        values = {**fit.params, "a": fit.allocation_exponents[0], "b": fit.allocation_exponents[1]}
    elif isinstance(fit, ComputeLawFit):
        values = dict(fit.params)
    else:
        raise ConfigError(f"`fit` must be a ChinchillaFit or ComputeLawFit; got {type(fit).__name__}.")
    out = []
    for name, value in values.items():
        iv = boot.intervals.get(name) if boot is not None else None
        if iv is None:
            reason = "no bootstrap: point estimate only"
            out.append(Estimate(f"{prefix}{name}", float(value), n=fit.n_points, note=reason,
                                no_interval_reason=reason, converged=fit.converged, n_iter=fit.n_iter))  # fmt: skip
            continue
        out.append(
            iv.to_estimate(
                f"{prefix}{name}", level=boot.level, method=ESTIMATE_METHOD, converged=fit.converged, n_iter=fit.n_iter
            )
        )
    return tuple(out)


def _iv(iv: ParamInterval | None, estimate: float) -> dict[str, float | None]:
    if iv is None:
        return json_safe({"estimate": estimate, "ci_low": None, "ci_high": None, "stderr": None})
    return json_safe(iv.to_dict())


def scaling_fit_report(
    data: ScalingData,
    *,
    bootstrap: int = 200,
    seed: SeedLike = 0,
    form: str = "chinchilla",
    level: float = 0.95,
    budgets: Any = None,
    n_jobs: int = 1,
) -> dict[str, Any]:
    """Fit, bootstrap (``bootstrap`` refits over runs; 0 for none) and summarise as JSON-safe data.

    Keys: ``schema_version``, ``form``, ``law``, ``params`` (each {estimate, ci_low, ci_high,
    stderr}), ``allocation`` (Chinchilla form: exponents a = beta/(alpha+beta), b, constant G,
    and N*, D*, L* at ``budgets`` (default: the largest data budget x 1, 10, 100) with the regret
    of exponent errors of +-0.05 anchored at the largest data budget), ``n_points`` and
    ``diagnostics`` (objective, r2, rmse, converged, n_starts, n_iter, bootstrap n / failed).
    """
    if not isinstance(data, ScalingData):
        raise ConfigError(f"`data` must be a ScalingData (see load_scaling_csv); got {type(data).__name__}.")
    if form not in ("chinchilla", "compute"):
        raise ConfigError(f"`form` must be 'chinchilla' or 'compute'; got {form!r}.")
    check_int("bootstrap", bootstrap, 0)
    level = check_level(level)
    boot: BootstrapResult | None = None
    out: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "form": form, "n_points": data.n_points}
    if form == "chinchilla":
        fit = fit_chinchilla(data)
        if bootstrap:
            boot = bootstrap_chinchilla(data, fit, n_boot=bootstrap, seed=seed, level=level, n_jobs=n_jobs)
        out["law"] = "L(N, D) = E + A / N^alpha + B / D^beta"
        names = ("E", "A", "B", "alpha", "beta")
        objective = fit.objective
        extra = {"objective_kind": "summed Huber (delta=1e-3) of log-loss residuals", "n_polished": fit.n_polished}
    else:
        fit = fit_compute_law(data.compute, data.loss)
        if bootstrap:
            boot = bootstrap_compute_law(data.compute, data.loss, fit, n_boot=bootstrap, seed=seed, level=level)
        out["law"] = "L(C) = A * C^(-alpha) + L_inf, C = 6ND"
        names = ("A", "alpha", "L_inf")
        objective = fit.cost
        extra = {"objective_kind": "0.5 * sum of squared log-loss residuals", "naive_loglog_alpha": fit.naive_alpha}
    params = fit.params
    out["params"] = {k: _iv(boot.intervals[k] if boot else None, params[k]) for k in names}
    if form == "chinchilla":
        out["allocation"] = _allocation(fit, boot, data, budgets, level)
    out["diagnostics"] = json_safe(
        {
            "objective": objective,
            "r2": fit.r2,
            "rmse": fit.rmse,
            "converged": fit.converged,
            "n_starts": fit.n_starts,
            "n_iter": fit.n_iter,
            "bootstrap": {
                "n": bootstrap,
                "failed": boot.n_failed if boot else 0,
                "level": level,
                "method": boot.method if boot else "none",
            },
            "residuals_log_loss": list(fit.residuals),
            **extra,
        }
    )
    return json_safe(out)


def _allocation(
    fit: ChinchillaFit, boot: BootstrapResult | None, data: ScalingData, budgets: Any, level: float
) -> dict:
    c_max = float(data.compute.max())
    c = np.array([c_max, 10 * c_max, 100 * c_max]) if budgets is None else budgets
    a, b = fit.allocation_exponents
    if fit.alpha <= 0 or fit.beta <= 0:
        return json_safe(
            {"a": _iv(None, a), "b": _iv(None, b), "note": "alpha or beta <= 0: no compute-optimal allocation"}
        )
    if boot is None:
        N, D, L = optimal_allocation(fit, c)
        G = allocation_constants(fit)[2]
        return json_safe(
            {
                "a": _iv(None, a),
                "b": _iv(None, b),
                "G": _iv(None, G),
                "budgets": list(np.atleast_1d(c)),
                "N_opt": [_iv(None, v) for v in N],
                "D_opt": [_iv(None, v) for v in D],
                "L_opt": [_iv(None, v) for v in L],
                "regret": {
                    f"{d:+g}": allocation_regret(fit, c, reference_compute=c_max, delta=d).to_dict()
                    for d in (-0.05, 0.05)
                },
            }
        )
    res = allocation_with_intervals(fit, boot, c, reference_compute=c_max, level=level)
    d = res.to_dict()
    d["regret_definition"] = (
        "excess loss L(N', D') - L(N*, D*) when N' = N*(C_ref) (C/C_ref)^(a + delta), D' = C/(6N'), "
        "C_ref = largest data budget"
    )
    return json_safe(d)
