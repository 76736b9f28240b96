"""The capstone phase of the curvature lens: curvature at the trained checkpoint, for the geometry gate.

It runs :func:`~multilens.lenses.curvature.lens.run_curvature` and hands the protocol the two
inputs of the geometry gate ``s = m / (1 + kappa)`` (chapter EX-CONCRETE-2): ``m`` is the
normalized margin of :mod:`~multilens.lenses.curvature.margin` and ``kappa`` is the top
eigenvalue of the Hessian of the mean training cross-entropy (a sharpness proxy, not a
condition number). Recommendations are derived from the measurements.
"""

from __future__ import annotations

import math
from typing import Any

from multilens.lenses.curvature.config import CurvatureConfig
from multilens.lenses.curvature.lens import KAPPA_PROXY, run_curvature
from multilens.protocol.phase import PhaseContext, PhaseOutput, phase_config
from multilens.results import LensResult

__all__ = ["KAPPA_PROXY", "CurvaturePhase", "metrics_of", "recommendations_of"]


def metrics_of(result: LensResult) -> dict[str, float]:
    """The gate metrics, from the lens result (missing ones are left out, never faked)."""
    d = result.data
    out: dict[str, float] = {}
    gate = d.get("geometry_gate", {})
    for key, name in (("m", "curvature.margin"), ("kappa", "curvature.kappa")):
        v = gate.get(key)
        if v is not None and math.isfinite(v):
            out[name] = float(v)
    eig = d.get("eigenvalues", {}).get("eigenvalues") or []
    if eig:
        out["curvature.top_eigenvalue"] = float(eig[0])
        out["curvature.lanczos_converged"] = 1.0 if d["eigenvalues"].get("converged") else 0.0
    tr = d.get("trace", {}).get("hutch++", {}).get("estimate")
    if tr is not None:
        out["curvature.trace"] = float(tr)
    return out


def recommendations_of(result: LensResult) -> tuple[str, ...]:
    """Advice computed from the measurements (every number in a sentence was measured)."""
    d = result.data
    recs: list[str] = []
    gate = d.get("geometry_gate", {})
    m, kappa = gate.get("m"), gate.get("kappa")
    if m is not None and kappa is not None:
        recs.append(
            f"Geometry score s = m/(1+kappa) = {m:.3g}/(1+{kappa:.3g}) = {m / (1 + kappa):.3g}, with kappa the "
            f"top Hessian eigenvalue; compare it only between checkpoints of the same architecture and scale "
            f"(kappa changes under function-preserving rescaling)."
        )
    if d.get("eigenvalues", {}).get("converged") is False:
        recs.append("The top eigenvalues did not converge: raise `max_iter` before trusting kappa.")
    for run in d.get("along_training", {}).get("runs", []):
        # Step 0 is the initialization, not a GD iterate: it is left out (see along_training.max_ratio).
        ratios = [
            c["ratio_to_threshold"] for c in run["checkpoints"] if c["step"] > 0 and c["ratio_to_threshold"] is not None
        ]
        if ratios and max(ratios) >= 0.9:
            recs.append(
                f"Under the {run['schedule']} schedule lambda_max reached {max(ratios):.2f} x 2/eta: full-batch GD "
                f"at lr {d['along_training']['lr']:g} trains at the edge of stability; a smaller step would leave room."
            )
    sam = d.get("sharpness", {}).get("sam", [])
    if any(not s["converged"] for s in sam):
        recs.append(
            "Some SAM ascents were still improving at the step cap; their sharpness values are loose lower bounds."
        )
    inv = [r for r in d.get("invariance", {}).get("rows", []) if r["metric"] == "top Hessian eigenvalue"]
    if inv:
        worst = max(r["rel_change"] or 0.0 for r in inv)
        recs.append(
            f"A function-preserving rescaling changed the top eigenvalue by up to {worst:.1%}: use the adaptive "
            "(ASAM) sharpness, which stayed invariant, when comparing flatness across parameterizations."
        )
    return tuple(recs)


class CurvaturePhase:
    """Capstone phase: the curvature lens on a trained digits classifier, feeding the geometry gate."""

    name = "curvature"
    title = "Curvature: Hessian spectrum, sharpness, slices and the geometry gate's inputs"
    consumes: dict[str, type] = {}
    produces: dict[str, type] = {"curvature.margin": float, "curvature.kappa": float}

    def run(self, ctx: PhaseContext) -> PhaseOutput:
        cfg = phase_config(ctx, CurvatureConfig, "curvature")
        result = run_curvature(cfg, ctx.seed)
        metrics = metrics_of(result)
        artifacts: dict[str, Any] = {
            "curvature.margin": metrics.get("curvature.margin", math.nan),
            "curvature.kappa": metrics.get("curvature.kappa", math.nan),
        }
        return PhaseOutput(result, artifacts, metrics, recommendations_of(result))
