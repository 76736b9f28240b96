"""The phase interface of the capstone protocol.

A phase is one lens run inside the protocol. It declares, before it runs, what it consumes from
earlier phases and what it produces (name -> Python type), the assumptions it relies on, and the
gate metrics it feeds. The runner checks at construction that every consumed artifact is produced
by an earlier phase with the right type, and at run time that each phase produced what it
declared.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from multilens.results import LensResult


@dataclass(frozen=True)
class PhaseContext:
    """What a phase receives: the profile, seed, output folder, store, executor and artifacts."""

    profile: str
    seed: int
    out_dir: Path
    config: Mapping[str, Any]  # this phase's raw config table (already validated by the phase)
    artifacts: Mapping[str, Any]  # produced by earlier phases, by name
    store: Any = None  # multilens.experiments.store.Store
    executor: Any = None  # multilens.experiments.executors.Executor
    progress: Callable[[str, int, int], None] | None = None  # (label, done, total)


@dataclass(frozen=True)
class PhaseOutput:
    """What a phase returns: its lens result, typed artifacts for later phases, gate metrics."""

    result: LensResult
    artifacts: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)  # feeds policy gates, e.g. "scaling.r2"
    recommendations: tuple[str, ...] = ()  # derived from measurements, never written in


@runtime_checkable
class Phase(Protocol):
    """A protocol phase. Implementations are small classes with these attributes."""

    name: str
    title: str
    consumes: Mapping[str, type]
    produces: Mapping[str, type]

    def run(self, ctx: PhaseContext) -> PhaseOutput: ...


def phase_config(ctx: PhaseContext, cls: type, section: str) -> Any:
    """The phase's frozen config: its profile's defaults updated by this run's table, strictly."""
    from multilens.config import from_dict

    return from_dict(cls, dict(ctx.config), where=section, base=cls.for_profile(ctx.profile))


def finite_metrics(values: Mapping[str, Any]) -> dict[str, float]:
    """Gate metrics as plain floats; unmeasured (None) and non-finite values are left out."""
    import math

    return {k: float(v) for k, v in values.items() if v is not None and math.isfinite(float(v))}
