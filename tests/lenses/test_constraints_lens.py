"""The constraints lens on hand-built subjects: a held-out violation fails its check; a user's model via diagnose."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from multilens.data.groups import make_group_task
from multilens.lenses.constraints import ConstrainedSubject, Settings, Task, dp_gap_constraint, measure
from multilens.lenses.constraints.core import QP
from multilens.lenses.constraints.lens import bce, logistic_model
from multilens.subject import Subject


def _only(settings: Settings, *parts: str) -> Settings:
    names = ("held_out", "duality", "rate", "infeasibility", "pareto")
    return dataclasses.replace(settings, **{p: None for p in names if p not in parts})


def test_constraint_met_on_train_and_violated_on_holdout_fails() -> None:
    t = make_group_task(n_train=1500, n_test=10, disparity=1.5, seed=0)
    shifted = make_group_task(n_train=10, n_test=1500, disparity=6.0, seed=1)  # a much larger disparity held out
    task = Task("shifted", logistic_model(t.d_in, 0), bce, t.train(), shifted.test(), (dp_gap_constraint(0.05, 0.3),))
    st = _only(Settings.for_profile("smoke"), "held_out")
    st = dataclasses.replace(st, held_out=dataclasses.replace(st.held_out, steps=600))
    r = measure(ConstrainedSubject((task,)), st, seed=0)
    assert r.check("train_violation.shifted").passed is True
    c = r.check("held_out_violation")
    assert c.passed is False and c.observed > 0.02
    assert r.metrics["constraints.held_out_violation"] > r.metrics["constraints.train_violation"]


def test_duality_and_rate_parts_on_a_user_qp() -> None:
    # min 1/2 |x|^2 - (3, 1) . x  s.t.  x0 <= 1, x1 <= 2: x* = (1, 1), lambda* = (2, 0)
    qp = QP(np.eye(2), np.array([-3.0, -1.0]), np.eye(2), np.array([1.0, 2.0]))
    st = _only(Settings.for_profile("smoke"), "duality", "rate")
    r = measure(ConstrainedSubject(qp=qp), st, seed=0)
    assert r.check("shadow_prices").passed and r.check("duality_gap").passed
    est = {e.name: e.value for e in r.estimates}
    assert est["shadow_price.b0"] == pytest.approx(-2.0, abs=1e-6)
    assert est["shadow_price.b1"] == pytest.approx(0.0, abs=1e-6)
    assert r.check("rate_1_over_sqrt_T").passed is not None


def test_diagnose_on_a_user_model_with_a_group_column(tmp_path) -> None:
    from multilens.diagnosis import diagnose

    t = make_group_task(n_train=600, n_test=600, seed=3)
    model = nn.Sequential(nn.Linear(t.d_in, 1))
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.zero_()
    subj = Subject(model, bce, train=(t.x_train, t.y_train), holdout=(t.x_test, t.y_test), name="user-logreg")
    settings = {
        "constraints": {
            "group_column": t.d_in - 1,
            "held_out": {"steps": 150, "n_boot": 60},
            "infeasibility": {"steps": 200},
        }
    }
    rep = diagnose(subj, lenses=("constraints",), out=tmp_path / "d", profile="smoke", settings=settings)
    phase = next(p for p in rep.summary["phases"] if p["name"] == "constraints")
    assert phase["status"] == "done", phase
    assert "constraints.held_out_violation" in rep.summary["metrics"]
    assert float(model[0].weight.detach().abs().sum()) == 0.0  # the user's model is untouched
    no_group = diagnose(subj, lenses=("constraints",), out=tmp_path / "e", profile="smoke")
    phase = next(p for p in no_group.summary["phases"] if p["name"] == "constraints")
    assert phase["status"] == "skipped" and "group_column" in phase["error"]


def test_history_table_and_figures_with_an_ece_constraint() -> None:
    from multilens.lenses.constraints import ece_constraint

    t = make_group_task(n_train=800, n_test=800, seed=5)
    cons = (dp_gap_constraint(0.05, 0.3), ece_constraint(0.05))
    task = Task("user", logistic_model(t.d_in, 1), bce, t.train(), t.test(), cons)
    st = _only(Settings.for_profile("smoke"), "held_out")  # 150 steps, an evaluation every 30, 20 resamples
    r = measure(ConstrainedSubject((task,)), st, seed=0)
    hist = next(tb for tb in r.tables if tb.key == "constraint_history")
    col = {c: i for i, c in enumerate(hist.columns)}
    gda = [row for row in hist.rows if row[col["method"]] == "gda"]
    assert sorted({row[col["step"]] for row in gda}) == [30, 60, 90, 120, 150]
    assert len(gda) == 5 * 2 and {row[col["constraint"]] for row in gda} == {"dp_gap", "ece"}
    for row in hist.rows:
        for split in ("train", "held-out"):
            for kind in ("proxy", "true"):
                assert row[col[f"{split} {kind} ci low"]] <= row[col[f"{split} {kind} ci high"]]
    # the last gda evaluation's held-out ECE is the one the final estimate reports
    last = next(row for row in gda if row[col["step"]] == 150 and row[col["constraint"]] == "ece")
    est = next(e for e in r.estimates if e.name == "holdout_true.user.gda.ece")
    assert last[col["held-out true"]] == pytest.approx(est.value, abs=1e-12)
    assert r.metrics["constraints.holdout_ece"] == pytest.approx(est.value, abs=1e-12)
    assert {f.key for f in r.figures} >= {"history_user_dp_gap", "history_user_ece"}


def test_pareto_population_through_an_executor_gives_the_same_numbers() -> None:
    from multilens.data.digits import load_digits_split
    from multilens.experiments.executors import LocalExecutor
    from multilens.lenses.constraints.settings import ParetoSettings
    from multilens.lenses.contract import Runtime

    d = load_digits_split(0)
    data = (d.x_train[:400], d.y_train[:400], d.x_test[:200], d.y_test[:200])  # travels in the specs as lists
    ps = ParetoSettings(
        widths=(8, 16), adv_eps=(0.0, 0.3), keep_units=(1.0, 0.5), epochs=1, pgd_steps=2, n_timing=4, n_boot=20
    )
    st = dataclasses.replace(_only(Settings.for_profile("smoke"), "pareto"), pareto=ps)
    subject = ConstrainedSubject(population_data=data)
    serial = measure(subject, st, seed=3)
    ex = LocalExecutor(workers=2)
    try:
        pooled = measure(subject, st, seed=3, runtime=Runtime(executor=ex))
    finally:
        ex.close()

    def reproducible(r):  # everything but the timed latencies
        est = {e.name: (e.value, e.ci_low, e.ci_high) for e in r.estimates if "latency" not in e.name}
        return est, {k: v for k, v in r.metrics.items() if "latency" not in k}

    assert reproducible(serial) == reproducible(pooled)
    est, metrics = reproducible(serial)
    assert len([k for k in est if k.startswith("accuracy.")]) == 2 * 2 * 2
    assert 0.0 < est["accuracy.w16_adv0_keep1"][0] <= 1.0
    assert metrics["constraints.pareto_n_nondominated"] >= 1
    table = next(t for t in serial.tables if t.key == "population")
    assert [row[0] for row in table.rows] == [
        f"w{w}_adv{e:g}_keep{k:g}" for w in (8, 16) for e in (0, 0.3) for k in (1, 0.5)
    ]
