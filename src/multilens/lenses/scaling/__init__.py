"""Scaling-law lens: fits, bootstrap intervals, regimes, compute-optimal allocation, extrapolation.

Pure NumPy/SciPy. The Chinchilla form L(N, D) = E + A/N^alpha + B/D^beta follows Hoffmann et al.
2022 ("Training Compute-Optimal Large Language Models"), Approach 3, with the summed Huber
objective that Besiroglu et al. 2024 showed matters; the compute form L(C) = A C^-alpha + L_inf
estimates the floor instead of fitting a line through log-loss.
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
from multilens.lenses.scaling.intervals import BootstrapResult, ParamInterval
from multilens.lenses.scaling.regimes import RegimeResult, detect_regimes
from multilens.lenses.scaling.report import scaling_fit_report, to_estimates

__all__ = [
    "HUBER_DELTA",
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
