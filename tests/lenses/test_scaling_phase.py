"""The scaling phase's own analysis: Approach 2 against the closed form, boundary floors, no optimum."""

from __future__ import annotations

import json

import numpy as np
import pytest

import multilens.lenses.scaling.phase as phase
from multilens.errors import ConfigError
from multilens.lenses.scaling.allocation import allocation_constants
from multilens.lenses.scaling.study import ScalingConfig

TRUE = {"E": 0.5, "A": 40.0, "B": 60.0, "alpha": 0.5, "beta": 0.4}


def law_rows(noise: float = 0.0, seed: int = 0) -> list[dict]:
    """Iso-FLOP runs from a known L(N, D), N on a fine grid around each budget's optimum."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in np.geomspace(1e8, 1e11, 6):
        for n in np.geomspace(2e2, 2e5, 25):
            d = c / (6 * n)
            loss = TRUE["E"] + TRUE["A"] / n ** TRUE["alpha"] + TRUE["B"] / d ** TRUE["beta"]
            rows.append(
                {
                    "N": float(n),
                    "D": float(d),
                    "C": float(c),
                    "budget": float(c),
                    "width": int(n),
                    "seed": 0,
                    "test_loss": loss * float(np.exp(rng.normal(0, noise))),
                    "train_loss": loss,
                    "steps": 1,
                }
            )
    return rows


def test_approach2_recovers_the_closed_form_exponent():
    a_true = allocation_constants(TRUE)[0]
    assert a_true == pytest.approx(TRUE["beta"] / (TRUE["alpha"] + TRUE["beta"]))
    est = phase.approach2_exponent(law_rows())
    assert est["n_budgets"] >= 3
    # A parabola in log N is only a local model of the profile, so allow its bias, bounded here.
    assert abs(est["slope"] - a_true) < 0.03


def test_floor_at_boundary_is_not_identified():
    assert phase.floor_identified(0.01, [0.05, 0.2])
    assert not phase.floor_identified(1e-30, [0.05, 0.2])


def test_no_optimum_is_reported_not_raised(monkeypatch):
    def no_optimum(*a, **k):
        raise ConfigError("allocation needs A, B, alpha, beta > 0; got alpha=-0.66.")

    monkeypatch.setattr(phase, "allocation_with_intervals", no_optimum)
    cfg = ScalingConfig.for_profile("smoke")
    rows = law_rows(noise=0.01)
    res, metrics, recs = phase.analyse(cfg, 0, rows, 0, len(rows))
    check = next(c for c in res.checks if c.name.startswith("Approach 2"))
    assert check.passed is None and "no compute-optimal allocation" in check.reason
    assert metrics["scaling.a"] is None
    assert "cannot plan compute" in recs[0]
    json.dumps(res.to_dict())  # the report can still be written
