"""The phase interface of the capstone protocol, and the one generic phase built from a lens entry.

A phase is one lens run inside the protocol. It declares, before it runs, what it consumes from
earlier phases and what it produces (name -> JSON type). The runner checks at construction that
every consumed artifact is produced by an earlier phase with the right type, and at run time that
each phase produced what it declared. :class:`LensPhase` is the only phase class: its name, title,
consumes and produces come from the registry entry, and it runs the lens through
:func:`multilens.lenses.contract.run_lens` with the consumed artifacts as ``runtime.inputs``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

from multilens.results import LensResult


@dataclass(frozen=True)
class PhaseContext:
    """What a phase receives: the profile, seed, output folder, store, executor and artifacts."""

    profile: str
    seed: int
    out_dir: Path
    config: Mapping[str, Any]  # this phase's raw config table (validated by the phase)
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


@runtime_checkable
class Phase(Protocol):
    """A protocol phase: a name, a title, declared hand-offs and ``run``."""

    name: str
    title: str
    consumes: Mapping[str, type]
    uses: Mapping[str, type]
    produces: Mapping[str, type]
    key_checks: tuple[str, ...]

    def run(self, ctx: PhaseContext) -> PhaseOutput: ...


def phase_config(ctx: PhaseContext, cls: type, section: str) -> Any:
    """The phase's frozen settings: its profile's defaults updated by this run's table, strictly."""
    from multilens.config import from_dict

    return from_dict(cls, dict(ctx.config), where=section, base=cls.for_profile(ctx.profile))


class LensPhase:
    """The generic protocol phase of one registry entry."""

    def __init__(self, entry: Any) -> None:
        self.entry = entry
        self.name = entry.section
        self.title = entry.title
        self.consumes = dict(entry.consumes)
        self.uses = dict(entry.uses)
        self.produces = dict(entry.produces)
        self.key_checks = tuple(entry.key_checks)

    def run(self, ctx: PhaseContext) -> PhaseOutput:
        from multilens.lenses.contract import Runtime, run_lens

        settings = phase_config(ctx, self.entry.load("Settings"), self.name)
        runtime = Runtime(ctx.executor, ctx.store, ctx.progress, ctx.out_dir, dict(ctx.artifacts))
        result = run_lens(self.entry, settings, ctx.seed, runtime)
        missing = [k for k in self.produces if k not in result.outputs]
        if missing:
            raise TypeError(f"lens `{self.entry.name}` did not produce {missing} (declared in its registry entry)")
        return PhaseOutput(result, {k: result.outputs[k] for k in self.produces}, dict(result.metrics))
