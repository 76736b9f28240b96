"""Scaling-law lens: fits, bootstrap intervals, regimes, compute-optimal allocation, extrapolation.

The lens contract (:mod:`multilens.lenses.contract`):

* ``Settings`` (and ``for_profile``): the bundled iso-FLOP sweep at top level and one nested
  table per part: ``compute_law``, ``chinchilla``, ``regimes``, ``allocation``, ``approach2``.
* ``default_subject(settings, *, seed, runtime)``: runs (or resumes) the sweep through
  ``runtime.executor`` into ``runtime.store`` and returns its table of finished runs.
* ``measure(subject, settings, *, seed, runtime=None)``: the subject is a table of finished runs,
  :class:`Runs` (N, D, loss[, seed, budget, distinct]; e.g. ``Runs.from_csv(path)`` or
  ``load_scaling_csv(path)``), or a :class:`TrainFn` wrapping a user's ``train_fn(config, seed)
  -> {"N", "D", "loss"}`` and the grid of configs to run (see :mod:`.subject`).

The fitters are plain NumPy/SciPy. The Chinchilla form L(N, D) = E + A/N^alpha + B/D^beta
follows Hoffmann et al. 2022 ("Training Compute-Optimal Large Language Models"), Approach 3,
with the summed Huber objective that Besiroglu et al. 2024 showed matters; the compute form
L(C) = A C^-alpha + L_inf estimates the floor instead of fitting a line through log-loss.
"""

from multilens.lenses.scaling.allocation import (
    AllocationResult,
    RegretResult,
    allocation_constants,
    allocation_regret,
    allocation_with_intervals,
    optimal_allocation,
)
from multilens.lenses.scaling.chinchilla import (
    HUBER_DELTA,
    ChinchillaFit,
    allocation_exponents,
    bootstrap_chinchilla,
    fit_chinchilla,
    fit_chinchilla_exhaustive,
    hoffmann_grid,
    predict_chinchilla,
)
from multilens.lenses.scaling.compute_law import (
    ComputeLawFit,
    bootstrap_compute_law,
    fit_compute_law,
    naive_loglog_slope,
    predict_compute,
)
from multilens.lenses.scaling.data import ScalingData, load_scaling_csv
from multilens.lenses.scaling.extrapolation import ExtrapolationResult, extrapolation_check
from multilens.lenses.scaling.handoff import (
    allocation_dict,
    allocation_from_runs,
    approach2_allocation,
    contracted_runs,
    perturbed_allocations,
    width_for_params,
)
from multilens.lenses.scaling.intervals import BootstrapResult, ParamInterval
from multilens.lenses.scaling.lens import approach2_slope, measure  # noqa: E402  (after the fitters it uses)
from multilens.lenses.scaling.regimes import RegimeResult, detect_regimes
from multilens.lenses.scaling.report import scaling_fit_report, to_estimates
from multilens.lenses.scaling.settings import (
    AllocationSettings,
    Approach2Settings,
    ChinchillaSettings,
    ComputeLawSettings,
    InvarianceSettings,
    LrTuningSettings,
    RegimesSettings,
    Settings,
    VariablesSettings,
    for_profile,
)
from multilens.lenses.scaling.subject import Runs, TrainFn, default_subject

__all__ = [
    "InvarianceSettings",
    "LrTuningSettings",
    "VariablesSettings",
    "allocation_dict",
    "allocation_from_runs",
    "approach2_allocation",
    "contracted_runs",
    "perturbed_allocations",
    "width_for_params",
    "HUBER_DELTA",
    "AllocationSettings",
    "Approach2Settings",
    "ChinchillaSettings",
    "ComputeLawSettings",
    "RegimesSettings",
    "Runs",
    "Settings",
    "TrainFn",
    "approach2_slope",
    "default_subject",
    "for_profile",
    "measure",
    "AllocationResult",
    "BootstrapResult",
    "ChinchillaFit",
    "ComputeLawFit",
    "ExtrapolationResult",
    "ParamInterval",
    "RegimeResult",
    "RegretResult",
    "ScalingData",
    "allocation_constants",
    "allocation_exponents",
    "allocation_regret",
    "allocation_with_intervals",
    "bootstrap_chinchilla",
    "bootstrap_compute_law",
    "detect_regimes",
    "extrapolation_check",
    "fit_chinchilla",
    "fit_chinchilla_exhaustive",
    "fit_compute_law",
    "hoffmann_grid",
    "load_scaling_csv",
    "naive_loglog_slope",
    "optimal_allocation",
    "predict_chinchilla",
    "predict_compute",
    "scaling_fit_report",
    "to_estimates",
]
