"""The implicit-bias phase of the capstone protocol."""

from __future__ import annotations

from typing import Any

from multilens.lenses.implicit_bias.config import ImplicitBiasConfig
from multilens.lenses.implicit_bias.lens import run_implicit_bias
from multilens.protocol.phase import PhaseContext, PhaseOutput, finite_metrics, phase_config
from multilens.results import LensResult


class ImplicitBiasPhase:
    """Least squares -> X^+ y, separable logistic -> SVM direction, optimizers at matched budgets."""

    name = "implicit_bias"
    title = "Implicit bias: which solution gradient methods pick"
    consumes: dict[str, type] = {}
    produces: dict[str, type] = {"implicit_bias.metrics": dict}

    def run(self, ctx: PhaseContext) -> PhaseOutput:
        cfg = phase_config(ctx, ImplicitBiasConfig, self.name)
        result = run_implicit_bias(cfg, ctx.seed)
        metrics = finite_metrics(result.data["metrics"])
        return PhaseOutput(result, {"implicit_bias.metrics": metrics}, metrics, _recommendations(result))


def _recommendations(result: LensResult) -> tuple[str, ...]:
    """Sentences built from the measured numbers (none are written in advance)."""
    out: list[str] = []
    lg: dict[str, Any] = result.data["logistic"]
    per = lg["per_seed"]
    if per:
        gd = sum(p["gap_gd_final"] for p in per) / len(per)
        ngd = sum(p["gap_ngd_final"] for p in per) / len(per)
        steps = lg["steps"][-1]
        out.append(
            f"After {steps} GD steps on separable logistic regression the direction is still {gd:.3g} from the "
            f"SVM direction (loss-normalised GD: {ngd:.3g}); if the max-margin direction itself matters, "
            f"normalise the step or solve the SVM rather than waiting on GD's 1/log t."
        )
    opt = result.data["optimizers"]
    base = opt["conditions"][0]["label"]
    rows = [r for r in opt["table"] if r["condition"] == base]
    if rows:
        worst = max(rows, key=lambda r: r["disagree_l2"]["mean"] or 0.0)
        out.append(
            f"At zero training error the optimizer still changes the function: {worst['optimizer']} disagrees with "
            f"the l2-SVM on {100 * (worst['disagree_l2']['mean'] or 0.0):.1f}% of held-out points after "
            f"{opt['epochs']} epochs; compare optimizers on held-out behaviour, not only on training loss."
        )
    ls = result.data["least_squares"]["risk_vs_init"]
    if len(ls) > 1 and ls[-1]["risk_increase"] is not None:
        out.append(
            f"Initialising least squares at scale {ls[-1]['scale']:g} instead of 0 added "
            f"{ls[-1]['risk_increase']:.3g} held-out MSE (the null-space component GD never removes); "
            f"initialise at or near zero when the min-norm solution is wanted."
        )
    return tuple(out)
