"""The lens registry: name -> config class, run function and protocol phase.

The CLI (`multilens lens NAME`) and the capstone protocol read lenses from here; adding a lens
means adding one entry. Entries are import paths so that importing the registry stays cheap.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from multilens.errors import ConfigError


@dataclass(frozen=True)
class LensEntry:
    name: str  # CLI name, e.g. "double-descent"
    section: str  # config table name in run TOML files, e.g. "double_descent"
    config: str  # "module:Class"
    run: str  # "module:function", run(config, seed) -> LensResult
    phase: str  # "module:Class"
    summary: str

    def load(self, what: str) -> Any:
        mod, _, attr = getattr(self, what).partition(":")
        return getattr(importlib.import_module(mod), attr)


LENSES: tuple[LensEntry, ...] = (
    LensEntry(
        "scaling",
        "scaling",
        "multilens.lenses.scaling.study:ScalingConfig",
        "multilens.lenses.scaling.phase:run_scaling_lens",
        "multilens.lenses.scaling.phase:ScalingPhase",
        "scaling laws L(C) and L(N, D), regimes, compute-optimal allocation, extrapolation",
    ),
    LensEntry(
        "curvature",
        "curvature",
        "multilens.lenses.curvature.config:CurvatureConfig",
        "multilens.lenses.curvature.lens:run_curvature",
        "multilens.lenses.curvature.phase:CurvaturePhase",
        "Hessian spectra, trace, density, sharpness, invariances, landscape slices, edge of stability",
    ),
    LensEntry(
        "distributed",
        "distributed",
        "multilens.lenses.distributed.config:DistributedConfig",
        "multilens.lenses.distributed.lens:run_distributed",
        "multilens.lenses.distributed.phase:DistributedPhase",
        "data-parallel SGD with torch.distributed: parity, noise floor vs workers, local SGD, staleness, faults",
    ),
    LensEntry(
        "double-descent",
        "double_descent",
        "multilens.lenses.double_descent.config:DoubleDescentConfig",
        "multilens.lenses.double_descent.lens:run_double_descent",
        "multilens.lenses.double_descent.phase:DoubleDescentPhase",
        "min-norm least squares risk against exact finite-sample and asymptotic theory; random features and MLP widths",
    ),
    LensEntry(
        "implicit-bias",
        "implicit_bias",
        "multilens.lenses.implicit_bias.config:ImplicitBiasConfig",
        "multilens.lenses.implicit_bias.lens:run_implicit_bias",
        "multilens.lenses.implicit_bias.phase:ImplicitBiasPhase",
        "GD to the pseudoinverse and to the max-margin SVM; optimizers compared at matched budgets",
    ),
    LensEntry(
        "spectral-bias",
        "spectral_bias",
        "multilens.lenses.spectral_bias.config:SpectralBiasConfig",
        "multilens.lenses.spectral_bias.lens:run_spectral_bias",
        "multilens.lenses.spectral_bias.phase:SpectralBiasPhase",
        "kernel gradient flow modes and an MLP's per-frequency fitting times against the NTK",
    ),
    LensEntry(
        "filters",
        "filters",
        "multilens.lenses.filters.config:FiltersConfig",
        "multilens.lenses.filters.lens:run_filters",
        "multilens.lenses.filters.phase:FiltersPhase",
        "per-mode spectral filters of early-stopped GD and ridge on an ill-posed inverse problem",
    ),
)


def get_lens(name: str) -> LensEntry:
    for e in LENSES:
        if name in (e.name, e.section):
            return e
    raise ConfigError(f"unknown lens `{name}`; choose one of: {', '.join(e.name for e in LENSES)}.")


def by_section(section: str) -> LensEntry | None:
    return next((e for e in LENSES if e.section == section), None)
