"""The double-descent phase of the capstone protocol."""

from __future__ import annotations

from typing import Any

from multilens.lenses.double_descent.config import DoubleDescentConfig
from multilens.lenses.double_descent.lens import run_double_descent
from multilens.protocol.phase import PhaseContext, PhaseOutput, finite_metrics, phase_config
from multilens.results import LensResult


class DoubleDescentPhase:
    """Min-norm risk vs gamma against exact theory; random features and MLP widths on digits."""

    name = "double_descent"
    title = "Double descent: the interpolation peak, measured against exact risk"
    consumes: dict[str, type] = {}
    produces: dict[str, type] = {"double_descent.curve": dict}

    def run(self, ctx: PhaseContext) -> PhaseOutput:
        cfg = phase_config(ctx, DoubleDescentConfig, self.name)
        result = run_double_descent(cfg, ctx.seed)
        metrics = finite_metrics(result.data["metrics"])
        return PhaseOutput(result, {"double_descent.curve": _artifact(result)}, metrics, recommendations(result))


def _artifact(result: LensResult) -> dict[str, Any]:
    """The measured curve for later phases: gamma, risk with CI and the exact prediction."""
    keys = ("gamma", "d", "test_risk", "ci_low", "ci_high", "predicted_risk", "ridge_risk", "cond_median")
    return {
        "n": result.data["n"],
        "sigma2": result.data["sigma2"],
        "r2": result.data["r2"],
        "points": [{k: p[k] for k in keys} for p in result.data["points"]],
        "peak": result.data["peak"],
    }


def recommendations(result: LensResult) -> tuple[str, ...]:
    """Sentences built from the measured numbers (none are written in advance)."""
    d = result.data
    out: list[str] = []
    pk, ridge = d["peak"], d["ridge"]
    out.append(
        f"Min-norm least squares peaked at gamma = d/n = {pk['gamma']:.3g} with risk {pk['risk']:.3g}, "
        f"{ridge['peak_suppression']:.3g}x the worst optimal-ridge risk ({ridge['max_risk']:.3g}); near d ~ n, "
        f"fit with a ridge penalty of about sigma2*gamma/r2 (or stop gradient descent early) instead of interpolating."
    )
    rf = d.get("neural", {}).get("random_features")
    if rf:
        for c in rf["curves"]:
            if c["variant"] != "min-norm":
                continue
            best = min(
                (r for r in rf["curves"] if r["label_noise"] == c["label_noise"]), key=lambda r: r["peak"]["height"]
            )
            if c["peak"]["significant"]:
                out.append(
                    f"Random features on digits (label noise {c['label_noise']:.0%}): ridgeless test MSE peaked at "
                    f"p/n = {c['peak']['x']:.3g} (geometric mean {c['peak']['height']:.3g}); {best['variant']} kept "
                    f"the worst point at {best['peak']['height']:.3g}: avoid p ~ n without regularization."
                )
    mlp = d.get("neural", {}).get("mlp")
    if mlp:
        sig = [c for c in mlp["curves"] if c["peak"] and c["peak"]["significant"]]
        for c in sig[:2]:
            last, top = c["test_mse"][-1], c["test_mse"][c["peak"]["index"]]
            recovered = last is not None and top is not None and last < top
            out.append(
                f"MLP widths on digits (label noise {c['label_noise']:.0%}, weight decay {c['weight_decay']:g}, "
                f"{c['horizon']} steps): test MSE peaked at {c['peak']['x']:.3g} x n*K parameters"
                + (
                    f" and the widest model recovered to {last:.3g} (from {top:.3g}); read the whole width curve "
                    "before choosing a size."
                    if recovered
                    else "; the widest model did not recover, so prefer a width below the peak or regularize."
                )
            )
    return tuple(out)
