"""The report of ``multilens calibration FILE``: metrics with intervals, optionally a temperature.

JSON keys: ``ece``, ``ece_adaptive``, ``mce``, ``nll``, ``brier`` (and ``classwise_ece``,
``ece_debiased``, ``accuracy``, ``aurc``), each ``{estimate, ci_low, ci_high}``; with
``fit_temperature`` (logits only) ``temperature`` = ``{estimate, ci_low, ci_high, converged,
n_iter}`` fitted on every row (so it can be applied to other predictions); with ``validate=FRAC``
``validation`` holds the metrics before and after scaling on a seeded held-out FRAC of the rows,
with T fitted on the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from multilens.errors import DataError
from multilens.lenses.calibration.api import calibration_metrics, temperature_scale
from multilens.lenses.calibration.io import read_predictions
from multilens.results import Estimate
from multilens.seeding import as_generator, derive_seed
from multilens.stats import json_float
from multilens.validation import check_open_unit

KEYS = ("ece", "ece_adaptive", "mce", "nll", "brier", "classwise_ece", "ece_debiased", "accuracy", "aurc")


def _triple(e: Estimate) -> dict[str, Any]:
    return {"estimate": json_float(e.value), "ci_low": json_float(e.ci_low), "ci_high": json_float(e.ci_high)}


def calibration_report(
    path: str | Path, *, bins: int = 15, fit_temperature: bool = False, validate: float | None = None,
    n_boot: int = 1000, seed: int = 0,
) -> dict[str, Any]:  # fmt: skip
    f = read_predictions(path)
    if validate is not None:
        check_open_unit("--validate", validate)
    if (fit_temperature or validate is not None) and f.logits is None:
        raise DataError(
            f"`{path}`: --fit-temperature/--validate need logits (logit_<class> columns or a `logits` array); "
            "the file has probabilities."
        )
    kw = {"probs": f.probs} if f.logits is None else {"logits": f.logits}
    m = calibration_metrics(f.labels, n_bins=bins, n_boot=n_boot, seed=derive_seed(seed, "metrics"),
                            metrics=KEYS, **kw)  # fmt: skip
    rep: dict[str, Any] = {"file": str(path), "n": f.n, "n_classes": len(f.classes), "bins": bins,
                           "input": "logits" if f.logits is not None else "probs"}  # fmt: skip
    rep.update({k: _triple(m[k]) for k in KEYS})
    if fit_temperature:
        ts = temperature_scale(f.labels, f.logits, n_boot=min(n_boot, 200), seed=derive_seed(seed, "temperature"))
        rep["temperature"] = _triple(ts.temperature) | {
            "converged": ts.temperature.converged, "n_iter": ts.temperature.n_iter,
            "nll_before": json_float(ts.val_nll_before), "nll_after": json_float(ts.val_nll_after),
        }  # fmt: skip
    if validate is not None:
        rng = as_generator(derive_seed(seed, "validate"))
        perm = rng.permutation(f.n)
        n_out = int(round(validate * f.n))
        if n_out < 2 or f.n - n_out < 2:
            raise DataError(
                f"--validate {validate}: {f.n} rows leave fewer than 2 for fitting or for the held-out part."
            )
        held, fit = perm[:n_out], perm[n_out:]
        ts = temperature_scale(
            f.labels[fit], f.logits[fit], test_labels=f.labels[held], test_logits=f.logits[held],
            n_bins=bins, n_boot=min(n_boot, 200), seed=derive_seed(seed, "validate-fit"),
        )  # fmt: skip
        rep["validation"] = {
            "fraction": validate, "n_fit": int(fit.size), "n_heldout": int(held.size),
            "temperature": _triple(ts.temperature) | {"converged": ts.temperature.converged},
            "before": {k: _triple(v) for k, v in ts.test_before.items()},
            "after": {k: _triple(v) for k, v in ts.test.items()},
        }  # fmt: skip
    return rep
