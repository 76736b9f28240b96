"""Recommendation stability and the budget-contraction stress test on runs from an exact L(N, D) law."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lenses"))
from test_scaling_handoff import SETTINGS, exact_runs, true_n_star  # noqa: E402

from multilens.lenses.contract import part_seed  # noqa: E402
from multilens.protocol.perturb import allocation_for, allocation_stability  # noqa: E402
from multilens.protocol.stress import StressRule, budget_stress  # noqa: E402


class Cfg(SimpleNamespace):
    def lens_config(self, section):
        assert section == "scaling"
        return SETTINGS


@pytest.fixture(scope="module")
def handed():
    runs = exact_runs()
    cfg = Cfg(seed=0, phases=("scaling",))
    target = 1e8
    alloc = allocation_for("approach3", runs, SETTINGS, part_seed(0, "scaling", "lnd_fit"), target, None)
    rows = [dict(N=float(n), D=float(d), loss=float(l), seed=int(s), budget=float(b))
            for n, d, l, s, b in zip(runs.N, runs.D, runs.loss, runs.seed, runs.budget)]  # fmt: skip
    return cfg, alloc, {"scaling.runs": rows, "scaling.allocation": alloc}


def test_the_exact_law_gives_the_true_optimum_and_it_holds_under_every_perturbation(handed):
    cfg, alloc, artifacts = handed
    assert alloc["n_star"] == pytest.approx(true_n_star(1e8), rel=1e-3)
    # an exact fit has a zero-width interval; give it +-0.1% so rounding differences count as the same N*
    alloc = dict(alloc, n_star_ci=[alloc["n_star"] * 0.999, alloc["n_star"] * 1.001])
    st = allocation_stability(dict(artifacts, **{"scaling.allocation": alloc}), cfg, seed=1)
    names = st["perturbations"]
    assert "bootstrap seed" in names and "budget x1.1" in names and sum("subsample" in n for n in names) == 3
    # exact data: every refit finds the same optimum, so every perturbation of the data holds; the budget
    # moved by 10% moves N* by 1.1^a (+4.3%), outside that interval: it does not hold
    by = {i["perturbation"]: i for i in st["items"]}
    assert all(by[n]["holds"] for n in names if not n.startswith("budget")), st["items"]
    assert by["budget x1.1"]["n_star"] == pytest.approx(true_n_star(1.1e8), rel=1e-3)
    assert by["budget x1.1"]["holds"] is False and st["held"] == st["total"] - 2


def test_budget_contraction_on_the_exact_law_stays_inside(handed):
    cfg, alloc, artifacts = handed
    alloc = dict(alloc, n_star_ci=[alloc["n_star"] * 0.999, alloc["n_star"] * 1.001])
    rule = StressRule("budget", "budget", expected="inside", fraction=0.5)
    r = budget_stress(rule, dict(artifacts, **{"scaling.allocation": alloc}), cfg, seed=0)
    assert r["passed"] is True, r["verdict"]
    assert r["measurements"]["budgets_kept"] and max(r["measurements"]["budgets_kept"]) < 1e8
    # a perturbed law: the same check fails when the contracted fit moves N* out of the interval
    far = dict(alloc, n_star_ci=[alloc["n_star"] * 2, alloc["n_star"] * 3])
    assert budget_stress(rule, dict(artifacts, **{"scaling.allocation": far}), cfg, seed=0)["passed"] is False
    assert np.isfinite(r["measurements"]["n_star_contracted"])


def test_regularisation_decision_is_re_read_under_the_allocations_perturbations(handed):
    from multilens.protocol.perturb import in_peak_band, regularisation_stability

    cfg, alloc, artifacts = handed
    alloc = dict(alloc, n_star_ci=[alloc["n_star"] * 0.999, alloc["n_star"] * 1.001])
    arts = dict(artifacts, **{"scaling.allocation": alloc})
    st = allocation_stability(arts, cfg, seed=1)
    nd = alloc["n_star"] / alloc["d_star"]
    assert in_peak_band(alloc["n_star"], alloc["d_star"], nd) is True
    inside = regularisation_stability(st, dict(arts, **{"double_descent.interpolation_ratio": nd}))
    assert inside["held"] == inside["total"] == st["total"]  # every perturbation keeps N*/D* within a factor 2
    # a threshold at 2.05 x N*/D*: the base is just outside the band; the x1.1 budget moves N*/D* by
    # 1.1^(a - (1 - a)) < 1, further out, so it holds; nothing crosses into the band
    edge = regularisation_stability(st, dict(arts, **{"double_descent.interpolation_ratio": 2.05 * nd}))
    assert all(i["in_peak_band"] is False for i in edge["items"]) and edge["held"] == edge["total"]


def test_release_decision_is_recomputed_with_the_release_phases_rerun_under_other_seeds():
    from multilens.lenses.contract import run_lens
    from multilens.lenses.registry import get_lens
    from multilens.protocol.config import run_config_from_dict
    from multilens.protocol.gates import policy_from_dict
    from multilens.protocol.perturb import release_stability

    cfg = run_config_from_dict({"profile": "smoke", "phases": ["calibration"]})
    metrics = run_lens(get_lens("calibration"), cfg.lens_config("calibration"), 0).metrics
    gate = {"name": "t", "kind": "threshold", "inputs": {"value": "metric:calibration.temperature_converged"},
            "op": ">=", "action": "stop", "phase": "calibration"}  # fmt: skip
    go = release_stability(policy_from_dict({"gate": [gate | {"threshold": 1.0}]}), {}, metrics, cfg)
    assert go["total"] == 2 and go["held"] == 2 and all(i["go"] for i in go["items"])
    no_go = release_stability(policy_from_dict({"gate": [gate | {"threshold": 2.0}]}), {}, metrics, cfg)
    assert (
        no_go["held"] == 2 and not any(i["go"] for i in no_go["items"]) and no_go["items"][0]["failed_gates"] == ["t"]
    )
    assert release_stability(policy_from_dict({"gate": []}), {}, metrics, cfg) is None


def test_release_decision_is_recomputed_on_each_perturbed_model_the_allocation_handed_on(tmp_path):
    """Reruns on the model of another run seed and on the +-10% models read their own model: the gate's
    value on each equals the phase run directly on that model, and differs from the main model's."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lenses"))
    from test_allocation_lens import tiny_allocation

    from multilens.lenses.allocation import Settings, measure
    from multilens.lenses.contract import Runtime, run_lens
    from multilens.lenses.registry import get_lens
    from multilens.protocol.config import run_config_from_dict
    from multilens.protocol.gates import policy_from_dict
    from multilens.protocol.perturb import release_stability

    alloc = measure(tiny_allocation(0.66, (0.62, 0.70), 0.65, 0.67), Settings.for_profile("smoke"), seed=0,
                    runtime=Runtime(out_dir=tmp_path))  # fmt: skip
    artifacts = dict(alloc.outputs)
    cfg = run_config_from_dict({"profile": "smoke", "phases": ["calibration"]})
    lens, settings = get_lens("calibration"), cfg.lens_config("calibration")

    def ece(path):
        return run_lens(lens, settings, cfg.seed, Runtime(inputs={"allocation.model_path": path})).metrics

    metrics = ece(artifacts["allocation.model_path"])
    key = "calibration.ece_after_temperature"
    assert key in metrics
    gate = {"name": "t", "kind": "threshold", "inputs": {"value": f"metric:{key}"}, "op": "<=", "threshold": 1.0,
            "action": "stop", "phase": "calibration"}  # fmt: skip
    r = release_stability(policy_from_dict({"gate": [gate]}), artifacts, metrics, cfg)
    assert r["total"] == 5 and r["held"] == 5
    by = {i["perturbation"]: i["gate_values"]["t"] for i in r["items"]}
    for label, path in artifacts["allocation.perturbed_models"].items():
        v = by[f"main model replaced by {label}"]
        assert v == pytest.approx(ece(path)[key], abs=1e-12) and v != metrics[key]
