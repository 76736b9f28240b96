"""Calibration of anyone's predictions (labels + probabilities or logits), with intervals.

    >>> from multilens import calibration
    >>> e = calibration.ece(labels, probs=p)             # Estimate: value, ci_low, ci_high
    >>> ts = calibration.temperature_scale(y_val, z_val, test_labels=y_test, test_logits=z_test)
    >>> ts.temperature.value, ts.temperature.converged, ts.test["ece"].value
    >>> calibration.calibration_metrics(labels, logits=z)  # every metric, each with its interval

Definitions and the binning convention (a confidence of exactly 1.0 falls in the last bin) are
in :mod:`multilens.lenses.calibration.metrics`; the lens itself (the C.15 study along a training
trajectory) is :mod:`multilens.lenses.calibration`.
"""

from multilens.lenses.calibration.api import (
    TemperatureScaling,
    calibration_metrics,
    ece,
    metric_interval,
    temperature_scale,
)
from multilens.lenses.calibration.io import read_predictions
from multilens.lenses.calibration.metrics import (
    as_probs,
    brier,
    classwise_ece,
    debiased_sq_ce,
    ece_adaptive,
    ece_debiased,
    margins,
    mce,
    nll,
    reliability,
    risk_coverage,
)
from multilens.lenses.calibration.temperature import AffineScaler, TemperatureFit, TemperatureScaler, fit_temperature

__all__ = [
    "AffineScaler",
    "TemperatureFit",
    "TemperatureScaler",
    "TemperatureScaling",
    "as_probs",
    "brier",
    "calibration_metrics",
    "classwise_ece",
    "debiased_sq_ce",
    "ece",
    "ece_adaptive",
    "ece_debiased",
    "fit_temperature",
    "margins",
    "mce",
    "metric_interval",
    "nll",
    "read_predictions",
    "reliability",
    "risk_coverage",
    "temperature_scale",
]
