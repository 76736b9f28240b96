"""Part ``scaling_shift``: does the scaling fit of held-out loss in parameter count shift for compressed families?

Families over the subject's models (the widths of the default subject): ``dense`` (the trained models
as they are), ``svd`` and ``magnitude`` (each model compressed at the same kept fraction, the
pruning part's matched counts, then retrained ``retrain_steps`` steps for each of ``n_seeds``
example orders). N is the number of stored weight-matrix entries (``ops.count_weights``: r (m + n)
per truncated layer, the mask's count per pruned layer, m n per dense layer).

Form: log L = log A - alpha log N, a least-squares line in log-log (two parameters). With three or four
widths the three-parameter L = E + A N^-alpha is not identifiable (three points fit it exactly), so the
simplest honest form is the pure power law; with two widths it passes through both points (no
residual degrees of freedom), and the table says so. The offset is the fitted log L at N_ref, the
geometric mean of the dense family's N (nearly uncorrelated with the slope), so the offset shift is
the log-loss gap at equal parameter count.

Intervals: a paired percentile bootstrap; each replicate resamples the held-out examples (the same rows
for every family) and, per width, the retraining seeds of the compressed families. The dense family
has one training seed per width (the subject's models), so its interval covers held-out sampling
only. ``scaling_exponent_overlap.<family>`` (agreement, severity info: a finding, not a failed theorem)
asks whether the compressed family's exponent interval overlaps the dense one's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from multilens import plots
from multilens.lenses.compression.ops import count_weights, magnitude_prune, matched_keep, svd_truncate
from multilens.results import Check, Estimate, Part, Table, metric_with_interval
from multilens.validation import check_int, check_open_unit

FAMILIES = ("dense", "svd", "magnitude")


@dataclass(frozen=True)
class ScalingShiftSettings:
    """``keep_fraction`` of each layer's weights kept (as the pruning part); ``retrain_steps`` retraining steps
    (batch and learning rate of the pruning part's defaults) for ``n_seeds`` example orders; ``n_boot``
    bootstrap replicates."""

    keep_fraction: float = 0.25
    retrain_steps: int = 400
    n_seeds: int = 3
    n_boot: int = 500

    def __post_init__(self) -> None:
        check_open_unit("keep_fraction", self.keep_fraction)
        check_int("retrain_steps", self.retrain_steps, 0)
        check_int("n_seeds", self.n_seeds, 1)
        check_int("n_boot", self.n_boot, 50)


def _iv(e: Estimate) -> str:
    return f"[{e.ci_low:.3g}, {e.ci_high:.3g}]" if e.ci_low is not None and e.ci_high is not None else "[no interval]"


def per_example_losses(model: torch.nn.Module, loss_fn: Any, data: tuple[torch.Tensor, torch.Tensor]) -> np.ndarray:
    """``loss_fn`` (a mean loss) on each held-out row alone, in eval mode, without gradients."""
    x, y = data
    model = model.eval()
    with torch.no_grad():
        out = model(x)
        return np.array([float(loss_fn(out[i : i + 1], y[i : i + 1])) for i in range(x.shape[0])])


def fit_power_law(n: np.ndarray, loss: np.ndarray, n_ref: float) -> tuple[float, float]:
    """(alpha, log L at n_ref) of the least-squares line log L = log A - alpha log N."""
    slope, icpt = np.polyfit(np.log(n), np.log(loss), 1)
    return float(-slope), float(icpt + slope * math.log(n_ref))


def scaling_shift_part(subject: Any, ps: ScalingShiftSettings, *, seed: int, level: float) -> Part:
    from multilens.lenses.compression.lens import LENS, PruningSettings, _budget_ranks, _retrain
    from multilens.lenses.contract import part_seed

    n_dense = [count_weights(m) for _, m in subject.models]
    if len(set(n_dense)) < 2:
        return Part(
            "scaling_shift",
            notes=("scaling_shift: needs at least two models of different size; not measured",),
        )
    rps = PruningSettings(keep_fraction=ps.keep_fraction, retrain_steps=ps.retrain_steps, n_seeds=ps.n_seeds)
    seeds = [part_seed(seed, LENS, f"scaling_shift.{i}") for i in range(ps.n_seeds)]
    # losses[family][width index]: (n_seeds or 1, n_test) per-example held-out losses; counts[family][width]
    losses: dict[str, list[np.ndarray]] = {f: [] for f in FAMILIES}
    counts: dict[str, list[int]] = {f: [] for f in FAMILIES}
    for (_, model), nd in zip(subject.models, n_dense):
        losses["dense"].append(per_example_losses(model, subject.loss_fn, subject.holdout)[None, :])
        counts["dense"].append(nd)
        ranks = _budget_ranks(model, ps.keep_fraction)
        built = {
            "svd": svd_truncate(model, rank=ranks),
            "magnitude": magnitude_prune(model, keep=matched_keep(model, ranks)),
        }
        for fam, cm in built.items():
            counts[fam].append(count_weights(cm))
            rows = [
                per_example_losses(
                    _retrain(cm, subject.loss_fn, subject.train, rps, s), subject.loss_fn, subject.holdout
                )
                for s in seeds
            ]
            losses[fam].append(np.stack(rows))
    n_ref = float(np.exp(np.mean(np.log(n_dense))))
    fits = {
        f: fit_power_law(np.array(counts[f], float), np.array([v.mean() for v in losses[f]]), n_ref) for f in FAMILIES
    }
    rng = np.random.default_rng(part_seed(seed, LENS, "scaling_shift.boot"))
    n_test = losses["dense"][0].shape[1]
    reps = np.full((ps.n_boot, len(FAMILIES), 2), np.nan)
    for b in range(ps.n_boot):
        rows = rng.integers(0, n_test, n_test)
        for k, f in enumerate(FAMILIES):
            means = []
            for v in losses[f]:
                sel = rng.integers(0, v.shape[0], v.shape[0]) if v.shape[0] > 1 else np.zeros(1, int)
                means.append(v[sel][:, rows].mean())
            means = np.array(means)
            if np.all(means > 0) and np.all(np.isfinite(means)):
                reps[b, k] = fit_power_law(np.array(counts[f], float), means, n_ref)
    q = [(1 - level) / 2, (1 + level) / 2]

    def interval(name: str, point: float, v: np.ndarray, note: str) -> Estimate:
        fin = v[np.isfinite(v)]
        dropped = int(v.size - fin.size)
        if fin.size < 2:
            reason = "too few finite bootstrap replicates"
            return Estimate(name, point, method="paired bootstrap", no_interval_reason=reason, n_dropped=dropped)
        lo, hi = np.quantile(fin, q)
        return Estimate(
            name,
            point,
            ci_low=float(lo),
            ci_high=float(hi),
            stderr=float(fin.std(ddof=1)),
            level=level,
            n=int(fin.size),
            n_dropped=dropped,
            method=f"paired percentile bootstrap over held-out rows and retraining seeds ({fin.size} replicates)",
            note=note,
        )

    dof = len(n_dense) - 2
    fit_note = f"log L = log A - alpha log N over {len(n_dense)} sizes ({dof} residual degrees of freedom)"
    ests, metrics, checks = [], {}, []
    alpha_est = {}
    for k, f in enumerate(FAMILIES):
        note = fit_note + ("; one training seed per size: held-out sampling only" if f == "dense" else "")
        ea = interval(f"alpha.{f}", fits[f][0], reps[:, k, 0], note)
        eo = interval(f"log_loss_at_n_ref.{f}", fits[f][1], reps[:, k, 1], f"fitted log L at N_ref = {n_ref:.4g}")
        ests += [ea, eo]
        alpha_est[f] = ea
        metrics |= metric_with_interval(f"compression.alpha_{f}", ea)
    for k, f in enumerate(FAMILIES[1:], start=1):
        es = interval(
            f"alpha_shift.{f}", fits[f][0] - fits["dense"][0], reps[:, k, 0] - reps[:, 0, 0], "alpha - alpha_dense"
        )
        eo = interval(
            f"offset_shift.{f}",
            fits[f][1] - fits["dense"][1],
            reps[:, k, 1] - reps[:, 0, 1],
            f"log L_{f}(N_ref) - log L_dense(N_ref), N_ref = {n_ref:.4g}",
        )
        ests += [es, eo]
        metrics |= metric_with_interval(f"compression.alpha_shift_{f}", es)
        metrics |= metric_with_interval(f"compression.offset_shift_{f}", eo)
        a, d = alpha_est[f], alpha_est["dense"]
        ok = None
        if None not in (a.ci_low, a.ci_high, d.ci_low, d.ci_high):
            ok = bool(a.ci_low <= d.ci_high and d.ci_low <= a.ci_high)
        checks.append(
            Check(
                f"scaling_exponent_overlap.{f}",
                ok,
                a.value,
                d.value,
                None,
                f"{f} family (kept fraction {ps.keep_fraction:g}, {ps.retrain_steps} retraining steps): alpha "
                f"{a.value:.3g} {_iv(a)} vs dense {d.value:.3g} {_iv(d)}"
                + ("" if ok is not None else " (an interval is missing: not evaluated)"),
                "info",
                kind="agreement",
                criterion="the compressed family's exponent interval overlaps the dense family's",
            )
        )
    rows = []
    for f in FAMILIES:
        for (mname, _), nc, v in zip(subject.models, counts[f], losses[f]):
            fitted = math.exp(fits[f][1] - fits[f][0] * (math.log(nc) - math.log(n_ref)))
            rows.append([f, mname, nc, float(v.mean()), int(v.shape[0]), fitted])
    table = Table(
        "scaling_shift",
        f"Held-out loss vs stored weights, dense and compressed (f = {ps.keep_fraction:g}) families; {fit_note}",
        ["family", "model", "N (stored weights)", "held-out loss", "seeds", "fitted L"],
        rows,
    )
    traces = []
    for i, f in enumerate(FAMILIES):
        color = plots.PALETTE[i]
        ns = np.array(counts[f], float)
        traces.append(plots.line_trace(ns, [float(v.mean()) for v in losses[f]], f, markers=True, color=color))
        grid = np.exp(np.linspace(np.log(ns.min()), np.log(ns.max()), 20))
        fitted = np.exp(fits[f][1] - fits[f][0] * (np.log(grid) - math.log(n_ref)))
        traces.append(plots.curve_trace(grid, fitted, f"{f} fit (alpha {fits[f][0]:.3g})", color=color))
    fig = plots.figure(
        "scaling_shift",
        "Held-out loss against stored weights: dense vs compressed families",
        traces,
        xlabel="N (stored weight entries)",
        ylabel="held-out loss",
        xlog=True,
        ylog=True,
    )
    return Part(
        "scaling_shift",
        estimates=tuple(ests),
        checks=tuple(checks),
        tables=(table,),
        figures=(fig,),
        metrics=metrics,
        notes=(f"scaling_shift: {fit_note}; N_ref = {n_ref:.4g}",),
    )
