"""The distributed lens as a capstone phase (multilens.protocol.phase.Phase).

Consumes nothing (it builds its own quadratic and trains its own MLP); produces the lens
result's data as the artifact ``distributed_summary`` and gate metrics named
``distributed.<metric>``. Recommendations are the sentences the lens derived from its
measurements.
"""

from __future__ import annotations

from typing import Any

from multilens.lenses.distributed.config import DistributedConfig
from multilens.lenses.distributed.lens import run_distributed
from multilens.protocol.phase import PhaseContext, PhaseOutput, phase_config


class DistributedPhase:
    name = "distributed"
    title = "Distributed training: data-parallel SGD against its convergence theorem"
    consumes: dict[str, type] = {}
    produces: dict[str, type] = {"distributed_summary": dict}

    def run(self, ctx: PhaseContext) -> PhaseOutput:
        cfg = phase_config(ctx, DistributedConfig, "distributed")
        result = run_distributed(cfg, ctx.seed)
        metrics: dict[str, float] = {}
        for key, value in result.data.get("metrics", {}).items():
            if value is not None:
                metrics[f"distributed.{key}"] = float(value)
        summary: dict[str, Any] = {
            k: result.data.get(k)
            for k in (
                "ddp_parity_max_abs_diff",
                "per_workers",
                "noise_floor_ratio",
                "optimal_workers",
                "comm_model",
                "faults",
            )
        }
        return PhaseOutput(
            result=result,
            artifacts={"distributed_summary": summary},
            metrics=metrics,
            recommendations=tuple(result.data.get("recommendations", [])),
        )
