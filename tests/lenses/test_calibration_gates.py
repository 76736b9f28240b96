"""The default policy's calibration and shift gates read metrics the two lenses produce."""

from __future__ import annotations

import pytest

from multilens.lenses.contract import run_lens
from multilens.lenses.registry import get_lens
from multilens.protocol.gates import evaluate_policy, load_policy


@pytest.mark.parametrize("name", ["calibration", "shift"])
def test_default_gates_are_evaluated_on_the_main_subject(name: str) -> None:
    pol = load_policy()
    gates = pol.for_phase(name)
    assert len(gates) >= 2
    entry = get_lens(name)
    r = run_lens(entry, entry.settings_for("smoke"), 0)
    for g in gates:
        assert all(m in r.metrics for m in g.metrics), (g.name, g.metrics)
        assert "control" not in " ".join(g.metrics) and "worst_group" not in " ".join(g.metrics)
        assert g.action == "warn" and "Warn" in g.description
    results = evaluate_policy(pol, r.metrics, phase=name)
    assert all(res.passed is not None for res in results)


def test_gate_fails_on_a_miscalibrated_value() -> None:
    pol = load_policy()
    res = evaluate_policy(pol, {"calibration.ece_after_temperature_ci_high": 0.2}, phase="calibration")
    assert [r.passed for r in res if r.name == "calibrated after temperature scaling"] == [False]
