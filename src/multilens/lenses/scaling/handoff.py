"""The scaling phase's hand-offs: the compute-optimal allocation, its fallback, and its perturbations.

Pure functions of a table of finished runs (:class:`~multilens.lenses.scaling.subject.Runs`) and
the lens settings; the protocol's stress tests and recommendation-stability step call them.

* :func:`allocation_from_runs`: fit L(N, D) = E + A/N^alpha + B/D^beta (Approach 3) and its
  bootstrap, and return the ``scaling.allocation`` dict: N*, D* with intervals at a target
  budget, the recipe's integer width closest to N*, the tuned learning rate for that width, the
  law and its prediction interval at (N*, D*), the same at the budget x 1.1 and x 0.9.
* :func:`allocation_dict` / :func:`approach2_allocation`: the same dict from a fit already made
  (Approach 3) or from the iso-FLOP parabola minima (Approach 2, the fallback when the L(N, D)
  fit fails its gate; the prediction still comes from the L(N, D) law).
* :func:`contracted_runs`: the sweep restricted to the budgets that fit in a fraction of its
  compute (budget-contraction stress test).
* :func:`perturbed_allocations`: the allocation under perturbations (bootstrap seed, row
  subsamples, leave-one-seed-out, budget +-10%), each saying whether N* stays inside the
  original N* interval.

``measure`` computes its own allocation from the shared fit seeded ``part_seed(seed, "scaling",
"lnd_fit")``; ``allocation_from_runs(runs, settings, seed=part_seed(seed, "scaling", "lnd_fit"))``
reproduces it on the same (peak-excluded) runs.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from multilens.errors import ConfigError, ConvergenceWarning, DataError
from multilens.lenses.scaling.allocation import optimal_allocation
from multilens.lenses.scaling.chinchilla import (
    ChinchillaFit,
    bootstrap_chinchilla,
    fit_chinchilla,
    hoffmann_grid,
    predict_chinchilla,
)
from multilens.lenses.scaling.data import FLOPS_PER_PARAM_TOKEN
from multilens.lenses.scaling.intervals import BootstrapResult, percentile_interval
from multilens.lenses.scaling.settings import Settings
from multilens.lenses.scaling.subject import Runs, recipe_of
from multilens.models import MLPSpec, n_params
from multilens.seeding import derive_seed

LAW_KEYS = ("E", "A", "B", "alpha", "beta")
RECIPE_KEYS = ("optimizer", "batch_size", "schedule", "depth", "activation")


# ---------------------------------------------------------------- peak exclusion


def peak_mask(runs: Runs, ratio: float | None, band: float) -> np.ndarray:
    """True for runs whose N/D lies in [ratio / band, ratio x band] (all False without a ratio)."""
    if ratio is None:
        return np.zeros(runs.n_runs, dtype=bool)
    if not (math.isfinite(ratio) and ratio > 0):
        raise ConfigError(f"`double_descent.interpolation_ratio` must be a finite number > 0; got {ratio!r}.")
    nd = runs.N / runs.D
    return (nd >= ratio / band) & (nd <= ratio * band)


def excluded_runs(runs: Runs, ratio: float | None, band: float) -> tuple[Runs, np.ndarray]:
    """(the runs the L(N, D) fit uses, the mask of the runs dropped in the peak band)."""
    drop = peak_mask(runs, ratio, band)
    return (runs.subset(~drop) if drop.any() else runs), drop


# ---------------------------------------------------------------- recipe helpers


def width_for_params(n_star: float, recipe: dict[str, Any]) -> int:
    """The integer hidden width of the recipe's MLP whose parameter count is closest to ``n_star``."""
    if not (math.isfinite(n_star) and n_star > 0):
        raise ConfigError(f"`n_star` must be a finite number > 0; got {n_star!r}.")

    def count(w: int) -> int:
        return n_params(MLPSpec(recipe["d_in"], (w,) * recipe["depth"], recipe["d_out"], activation="relu"))

    lo, hi = 1, 2
    while count(hi) < n_star and hi < 1 << 24:
        hi *= 2
    while hi - lo > 1:  # count is increasing in w: bisect for count(lo) < n_star <= count(hi)
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) < n_star else (lo, mid)
    return min((lo, hi), key=lambda w: (abs(count(w) - n_star), w))


def lr_for_width(width: float, runs: Runs, default: float) -> float:
    """The tuned learning rate at ``width``: log-log interpolation between the nearest tuned widths.

    Widths outside the tuned range take the nearest tuned width's rate; without per-run widths and
    learning rates the settings' ``lr`` is returned.
    """
    if runs.width is None or runs.lr is None:
        return float(default)
    pairs = sorted({(float(w), float(lr)) for w, lr in zip(runs.width, runs.lr)})
    ws = np.array([p[0] for p in pairs])
    if len(np.unique(ws)) != len(ws):  # several lrs for one width (a user's table): average in log space
        u = np.unique(ws)
        lrs = np.array([math.exp(np.mean([math.log(p[1]) for p in pairs if p[0] == w])) for w in u])
        ws = u
    else:
        lrs = np.array([p[1] for p in pairs])
    return float(np.exp(np.interp(math.log(width), np.log(ws), np.log(lrs))))


# ---------------------------------------------------------------- allocation dicts


def _interval(point: float, samples: np.ndarray, level: float) -> list[float | None]:
    iv = percentile_interval(point, samples, level)
    return [iv.ci_low, iv.ci_high]


def _law_samples(boot: BootstrapResult) -> list[dict[str, float]]:
    cols = {k: boot.column(k) for k in LAW_KEYS}
    out = []
    for r in range(boot.n_boot):
        p = {k: float(v[r]) for k, v in cols.items()}
        out.append(p if all(math.isfinite(v) for v in p.values()) else {})
    return out


def _prediction(fit: ChinchillaFit, laws: list[dict[str, float]], n: float, d: float, level: float) -> tuple:
    point = float(predict_chinchilla(fit.params, n, d))
    s = np.array([float(predict_chinchilla(p, n, d)) if p else np.nan for p in laws])
    return point, _interval(point, s, level)


def _fields(
    n_star: float, n_samples: np.ndarray, budget: float, fit: ChinchillaFit, laws: list, runs: Runs, settings: Settings,
    level: float,
) -> dict[str, Any]:  # fmt: skip
    recipe = runs.recipe or recipe_of(settings)
    d_star = budget / (FLOPS_PER_PARAM_TOKEN * n_star)
    width = width_for_params(n_star, recipe)
    n_width = n_params(MLPSpec(recipe["d_in"], (width,) * recipe["depth"], recipe["d_out"], activation="relu"))
    d_int = max(1, int(round(d_star)))
    pred, pred_ci = _prediction(fit, laws, n_star, d_star, level)
    pred_w, pred_w_ci = _prediction(fit, laws, n_width, d_int, level)
    return {
        "budget": float(budget),
        "n_star": float(n_star),
        "n_star_ci": _interval(n_star, n_samples, level),
        "d_star": float(d_star),
        "d_star_ci": _interval(d_star, budget / (FLOPS_PER_PARAM_TOKEN * n_samples), level),
        "width": int(width),
        "n_params_width": int(n_width),
        "d": d_int,
        "lr": lr_for_width(width, runs, recipe.get("lr", settings.lr)),
        "predicted_loss": pred,
        "predicted_loss_ci": pred_ci,
        "predicted_loss_at_recipe": pred_w,  # at the integer width's N and the rounded D actually trained
        "predicted_loss_at_recipe_ci": pred_w_ci,
    }


def _base(fit: ChinchillaFit, boot: BootstrapResult, runs: Runs, settings: Settings, method: str) -> dict[str, Any]:
    recipe = runs.recipe or recipe_of(settings)
    return {
        "method": method,
        "recipe": {k: recipe[k] for k in RECIPE_KEYS},
        "family": runs.family,
        "law": {k: float(fit.params[k]) for k in LAW_KEYS},
        "level": settings.ci_level,
        "n_boot": int(boot.n_boot),
        "n_runs": int(runs.n_runs),
    }


def _failed(fit: ChinchillaFit | None, boot: Any, runs: Runs, settings: Settings, method: str, why: str) -> dict:
    out = _base(fit, boot, runs, settings, method) if fit is not None and boot is not None else {"method": method}
    keys = ("budget", "n_star", "n_star_ci", "d_star", "d_star_ci", "width", "d", "lr", "predicted_loss",
            "predicted_loss_ci", "plus10", "minus10")  # fmt: skip
    return out | {k: None for k in keys} | {"ok": False, "note": why}


def target_of(runs: Runs, settings: Settings, target_budget: float | None) -> float:
    if target_budget is not None:
        return float(target_budget)
    if settings.target_budget is not None:
        return float(settings.target_budget)
    return float(np.max(runs.budget))


def allocation_dict(
    fit: ChinchillaFit, boot: BootstrapResult, runs: Runs, settings: Settings, target_budget: float | None = None
) -> dict[str, Any]:
    """``scaling.allocation`` from a fit of L(N, D) and its bootstrap (Approach 3: the closed-form optimum)."""
    budget = target_of(runs, settings, target_budget)
    level = settings.ci_level
    p = fit.params
    if not (p["alpha"] > 0 and p["beta"] > 0 and p["A"] > 0 and p["B"] > 0):
        why = f"no compute-optimal allocation: alpha = {p['alpha']:.3g}, beta = {p['beta']:.3g} (both must be > 0)"
        return _failed(fit, boot, runs, settings, "approach3", why)
    laws = _law_samples(boot)
    out = _base(fit, boot, runs, settings, "approach3") | {"ok": True, "note": ""}
    for key, c in (("", budget), ("plus10", budget * 1.1), ("minus10", budget * 0.9)):
        n_hat = float(optimal_allocation(p, c)[0][0])
        ns = np.array([float(optimal_allocation(q, c)[0][0]) if q and q["alpha"] > 0 and q["beta"] > 0 and q["A"] > 0
                       and q["B"] > 0 else np.nan for q in laws])  # fmt: skip
        f = _fields(n_hat, ns, c, fit, laws, runs, settings, level)
        if key:
            out[key] = f
        else:
            out |= f
    return out


def approach2_fit(runs: Runs, w: np.ndarray | None = None, min_budgets: int = 3) -> tuple[float, float, int]:
    """(slope, intercept, n_budgets) of ln N_opt = intercept + slope ln C over the iso-FLOP parabola minima.

    Per budget a weighted parabola of ln L in ln N; a budget counts when the parabola is convex and
    its minimum lies inside the sampled sizes. NaN slope with fewer than ``min_budgets`` budgets.
    """
    w = np.ones(runs.n_runs) if w is None else np.asarray(w, dtype=float)
    pts = []
    for b in np.unique(runs.budget):
        at = (runs.budget == b) & (w > 0)
        x, y = np.log(runs.N[at]), np.log(runs.loss[at])
        if len(np.unique(x)) < 3:
            continue
        c2, c1, _ = np.polyfit(x, y, 2, w=np.sqrt(w[at]))
        if c2 <= 0:
            continue
        xm = -c1 / (2 * c2)
        if x.min() <= xm <= x.max():
            pts.append((math.log(b), xm))
    if len(pts) < min_budgets:
        return float("nan"), float("nan"), len(pts)
    X, Y = np.array(pts).T
    slope, icpt = np.polyfit(X, Y, 1)
    return float(slope), float(icpt), len(pts)


def approach2_allocation(
    fit: ChinchillaFit,
    boot: BootstrapResult,
    runs: Runs,
    settings: Settings,
    target_budget: float | None = None,
    min_budgets: int = 3,
) -> dict[str, Any]:
    """``scaling.allocation_approach2``: N* from the iso-FLOP minima's line, the prediction from the L(N, D) law.

    Intervals come from the same bootstrap resamples of runs as the L(N, D) fit (``boot.weights``).
    """
    budget = target_of(runs, settings, target_budget)
    level = settings.ci_level
    slope, icpt, nb = approach2_fit(runs, None, min_budgets)
    if not math.isfinite(slope):
        why = f"only {nb} budgets have an interior convex iso-FLOP minimum; Approach 2 needs {min_budgets}"
        return _failed(fit, boot, runs, settings, "approach2", why)
    W = boot.weights if boot.weights is not None else np.ones((0, runs.n_runs))
    reps = [approach2_fit(runs, W[r], min_budgets) for r in range(W.shape[0])]
    laws = _law_samples(boot)
    out = _base(fit, boot, runs, settings, "approach2") | {"ok": True, "note": "", "a": slope, "n_budgets": nb}
    for key, c in (("", budget), ("plus10", budget * 1.1), ("minus10", budget * 0.9)):
        n_hat = math.exp(icpt + slope * math.log(c))
        ns = np.array([math.exp(i + s * math.log(c)) if math.isfinite(s) else np.nan for s, i, _ in reps])
        f = _fields(n_hat, ns, c, fit, laws, runs, settings, level)
        if key:
            out[key] = f
        else:
            out |= f
    return out


def fit_with_bootstrap(
    runs: Runs, settings: Settings, seed: int, *, grid_stride: int = 1
) -> tuple[ChinchillaFit, BootstrapResult, list[str]]:
    """The L(N, D) fit of ``runs`` and its ``settings.bootstrap`` refits (convergence warnings as notes).

    ``grid_stride`` > 1 screens every ``grid_stride``-th of Hoffmann et al.'s 4500 starts (a stride
    coprime to 5 keeps every value of each coordinate): the cheaper fit of the comparison variants.
    """
    starts = None if grid_stride == 1 else hoffmann_grid()[::grid_stride]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        fit = fit_chinchilla(runs.data, starts=starts)
        boot = bootstrap_chinchilla(runs.data, fit, n_boot=settings.bootstrap, seed=seed, level=settings.ci_level)
    return fit, boot, [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]


def allocation_from_runs(
    runs: Runs,
    settings: Settings,
    *,
    seed: int,
    target_budget: float | None = None,
    interpolation_ratio: float | None = None,
) -> dict[str, Any]:
    """``scaling.allocation`` (Approach 3) recomputed from a table of runs (module docstring).

    ``interpolation_ratio`` (the double-descent phase's N/D at the interpolation threshold) drops
    the runs in the peak band (``settings.peak_band``) before fitting, as ``measure`` does.
    """
    if not isinstance(runs, Runs):
        raise ConfigError(f"`runs` must be a scaling Runs table; got {type(runs).__name__}.")
    fit_runs, drop = excluded_runs(runs, interpolation_ratio, settings.peak_band)
    fit, boot, notes = fit_with_bootstrap(fit_runs, settings, seed)
    out = allocation_dict(fit, boot, fit_runs, settings, target_of(runs, settings, target_budget))
    return out | {"n_excluded": int(drop.sum()), "fit_notes": notes}


def contracted_runs(runs: Runs, fraction: float = 0.5) -> Runs:
    """The runs of the budgets that fit in ``fraction`` of the sweep's total compute (largest budgets dropped first).

    Budgets are kept smallest first while the cumulative compute (sum of 6ND over their runs) stays
    within ``fraction`` x the total compute of all runs.
    """
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"`fraction` must be in (0, 1]; got {fraction!r}.")
    total = float(runs.compute.sum())
    keep = np.zeros(runs.n_runs, dtype=bool)
    spent = 0.0
    for b in np.unique(runs.budget):  # ascending
        at = runs.budget == b
        cost = float(runs.compute[at].sum())
        if spent + cost > fraction * total * (1 + 1e-12):
            break
        spent += cost
        keep |= at
    if keep.sum() == 0:
        raise DataError(f"no budget fits in {fraction:g} of the sweep's compute ({total:.3g} FLOPs).")
    return runs.subset(keep)


def _inside(n: float | None, ci: list[float | None]) -> bool | None:
    if n is None or ci[0] is None or ci[1] is None:
        return None
    return bool(ci[0] <= n <= ci[1])


def perturbed_allocations(
    runs: Runs,
    settings: Settings,
    *,
    seed: int,
    n_subsample: int = 3,
    frac: float = 0.8,
    target_budget: float | None = None,
    interpolation_ratio: float | None = None,
) -> list[dict[str, Any]]:
    """The allocation recomputed under perturbations; each item says whether N* stays in the original interval.

    Perturbations: a different bootstrap seed; ``n_subsample`` subsamples of ``frac`` of the runs
    (without replacement); leaving out each run seed in turn (when there are several); the target
    budget x 1.1 and x 0.9 (same fit). The original is :func:`allocation_from_runs` with ``seed``.
    """
    if not 0.0 < frac < 1.0:
        raise ConfigError(f"`frac` must be in (0, 1); got {frac!r}.")
    target = target_of(runs, settings, target_budget)
    kw = {"target_budget": target, "interpolation_ratio": interpolation_ratio}
    fit_runs, _ = excluded_runs(runs, interpolation_ratio, settings.peak_band)
    fit, boot, _ = fit_with_bootstrap(fit_runs, settings, seed)
    base = allocation_dict(fit, boot, fit_runs, settings, target)  # = allocation_from_runs(runs, settings, seed=seed)
    ci = base["n_star_ci"] or [None, None]
    items: list[dict[str, Any]] = []

    def add(name: str, alloc: dict[str, Any] | None, error: str = "") -> None:
        n = None if alloc is None else alloc.get("n_star")
        items.append(
            {
                "perturbation": name,
                "n_star": n,
                "original_n_star": base["n_star"],
                "original_n_star_ci": ci,
                "inside": _inside(n, ci),
                "note": error,
                "allocation": alloc,
            }
        )

    def attempt(name: str, sub: Any, s: int) -> None:
        try:
            add(name, allocation_from_runs(sub() if callable(sub) else sub, settings, seed=s, **kw))
        except (DataError, ConfigError) as e:
            add(name, None, str(e))

    attempt("bootstrap_seed", runs, derive_seed(seed, "perturb-bootstrap"))
    n_keep = max(1, int(round(frac * runs.n_runs)))
    for k in range(n_subsample):
        rng = np.random.default_rng(derive_seed(seed, "perturb-subsample", k))
        mask = np.zeros(runs.n_runs, dtype=bool)
        mask[rng.choice(runs.n_runs, size=n_keep, replace=False)] = True
        attempt(f"subsample_{k}_frac_{frac:g}", lambda m=mask: runs.subset(m), seed)
    seeds = np.unique(runs.seed)
    if len(seeds) > 1:
        for s in seeds:
            attempt(f"leave_out_seed_{int(s)}", lambda s=s: runs.subset(runs.seed != s), seed)
    for name, m in (("budget_x1.1", 1.1), ("budget_x0.9", 0.9)):
        add(name, allocation_dict(fit, boot, fit_runs, settings, target * m))
    return items
