"""The allocation lens on hand-built allocations (tiny models, seconds), and the main model's round trip."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from multilens.data.family import FamilySpec
from multilens.errors import ConfigError
from multilens.lenses.allocation import (
    Allocation,
    Settings,
    default_subject,
    load_main_model,
    main_subject,
    measure,
)
from multilens.lenses.allocation import train as T
from multilens.lenses.contract import Runtime

FAMILY = FamilySpec(n_val=256, n_test=512, n_bayes=4096).to_dict()
RECIPE = {"optimizer": "adam", "batch_size": 32, "schedule": "cosine", "depth": 1, "activation": "relu"}


def tiny_allocation(pred: float, pred_ci: tuple[float, float], plus: float, minus: float) -> dict:
    """A hand-built allocation of the scaling phase's shape (width 8, d 512)."""

    def point(width: int, d: int, p: float) -> dict:
        return {"width": width, "d": d, "lr": 1e-2, "budget": 6.0 * 154 * d, "predicted_loss": p,
                "predicted_loss_ci": [p - 0.02, p + 0.02]}  # fmt: skip

    return {
        "budget": 6.0 * 154 * 512,
        "n_star": 154.0,
        "d_star": 512.0,
        "width": 8,
        "d": 512,
        "lr": 1e-2,
        "recipe": RECIPE,
        "family": FAMILY,
        "law": {"E": 0.2, "A": 1.0, "B": 2.0, "alpha": 0.3, "beta": 0.3},
        "predicted_loss": pred,
        "predicted_loss_ci": list(pred_ci),
        "plus10": point(8, 563, plus),
        "minus10": point(8, 461, minus),
        "method": "hand-built for a test",
    }


@pytest.fixture(scope="module")
def smoke() -> Settings:
    return Settings.for_profile("smoke")


@pytest.fixture(scope="module")
def result_and_dir(tmp_path_factory: pytest.TempPathFactory, smoke: Settings):
    out = tmp_path_factory.mktemp("alloc")
    alloc = tiny_allocation(0.66, (0.62, 0.70), 0.65, 0.67)
    r = measure(alloc, smoke, seed=0, runtime=Runtime(out_dir=out))
    return r, out, alloc


def test_checks_follow_the_intervals(result_and_dir) -> None:
    r, out, alloc = result_and_dir
    m = r.metrics
    assert m["allocation.predicted_loss"] == 0.66
    assert (m["allocation.predicted_loss_ci_low"], m["allocation.predicted_loss_ci_high"]) == (0.62, 0.70)
    lo, hi = m["allocation.realised_loss_ci_low"], m["allocation.realised_loss_ci_high"]
    c = r.check("law_prediction_at_optimum")
    assert c.kind == "agreement" and c.passed is (lo <= 0.70 and 0.62 <= hi)
    # The predicted change from the two prediction intervals (conservative difference).
    assert m["allocation.loss_change_predicted"] == pytest.approx(0.65 - 0.67)
    assert m["allocation.loss_change_predicted_ci_low"] == pytest.approx((0.65 - 0.02) - (0.67 + 0.02))
    assert m["allocation.loss_change_predicted_ci_high"] == pytest.approx((0.65 + 0.02) - (0.67 - 0.02))
    b = r.check("budget_change_as_predicted")
    mlo, mhi = m["allocation.loss_change_measured_ci_low"], m["allocation.loss_change_measured_ci_high"]
    assert b.passed is (mlo <= m["allocation.loss_change_predicted_ci_high"]
                        and m["allocation.loss_change_predicted_ci_low"] <= mhi)  # fmt: skip
    assert Path(r.outputs["allocation.model_path"]).parent == (out / "main_model").resolve()
    assert r.check("realised_loss_above_bayes_risk").passed is True


def test_numbers_equal_a_direct_training(result_and_dir, smoke: Settings) -> None:
    """The realised loss is the mean of the runs' held-out losses; the gap that of test - own-train loss."""
    r, out, _ = result_and_dir
    spec0 = r.data["main_model"]["train_spec"]
    seeds = [row[0] for row in next(t for t in r.tables if t.key == "allocation.runs").rows]
    assert len(seeds) == smoke.seeds and seeds[0] == spec0["seed"]
    outs = [T.train_one(dict(spec0, seed=s)) for s in seeds]
    assert r.estimate("realised_loss").value == pytest.approx(np.mean([o["test_loss"] for o in outs]), abs=1e-12)
    gaps = [o["population_loss"] - o["train_loss"] for o in outs]
    assert all(o["n_population"] == smoke.generalization.n_population for o in outs)
    assert r.metrics["allocation.gen_gap"] == pytest.approx(np.mean(gaps), abs=1e-12)
    # The gap against the fixed split: t_(k-1) x sqrt(se_seeds^2 + se_split^2), se_split = sd / sqrt(n_test).
    from scipy import stats as sps

    split_gaps = [o["test_loss"] - o["train_loss"] for o in outs]
    k = len(gaps)
    se = math.hypot(
        np.std(split_gaps, ddof=1) / math.sqrt(k), np.mean([o["test_loss_sd"] for o in outs]) / math.sqrt(512)
    )
    half = sps.t.ppf(0.975, k - 1) * se
    e = r.estimate("gen_gap_heldout_split")
    assert e.value == pytest.approx(np.mean(split_gaps), abs=1e-12)
    assert (e.ci_low, e.ci_high) == (pytest.approx(e.value - half, rel=1e-9), pytest.approx(e.value + half, rel=1e-9))
    # The excess over the Bayes predictor: the model's held-out CE minus the teacher's on the same labels.
    fam = FamilySpec.from_dict(FAMILY)
    xt, yt = fam.test()
    bayes = float(torch.nn.functional.cross_entropy(fam.logits(xt).double(), yt))
    assert r.estimate("excess_over_bayes").value == pytest.approx(np.mean([o["test_loss"] for o in outs]) - bayes,
                                                                  abs=1e-6)  # fmt: skip
    c = r.check("realised_loss_above_bayes_risk")
    assert c.kind == "bound" and c.observed == r.estimate("excess_over_bayes").ci_high and c.expected == 0.0


def test_main_model_round_trip_bit_for_bit(result_and_dir) -> None:
    r, out, _ = result_and_dir
    path = r.outputs["allocation.model_path"]
    loaded, spec = load_main_model(path)
    direct, _, (x, y) = T.trained_model(r.data["main_model"]["train_spec"])
    xt = FamilySpec.from_dict(FAMILY).test()[0]
    with torch.no_grad():
        assert torch.equal(loaded(xt), direct(xt))
    assert spec["width"] == 8 and spec["d"] == 512 and spec["recipe"]["depth"] == 1
    subj = main_subject(path, n_train=100, split="val")
    assert torch.equal(subj.train[0], x[:100]) and torch.equal(subj.train[1], y[:100])
    assert torch.equal(subj.holdout[0], FamilySpec.from_dict(FAMILY).val()[0])
    assert subj.input_range == (-1.0, 1.0) and subj.embed == "1"
    full = main_subject(path)
    assert full.train[0].shape[0] == 512
    # A corrupted weights file is detected.
    bad = Path(out) / "bad"
    bad.mkdir()
    for f in ("spec.json", "model.safetensors"):
        (bad / f).write_bytes((Path(path) / f).read_bytes())
    blob = bytearray((bad / "model.safetensors").read_bytes())
    blob[-1] ^= 1
    (bad / "model.safetensors").write_bytes(bytes(blob))
    with pytest.raises(ConfigError, match="sha256"):
        load_main_model(bad)


def test_perturbed_models_are_the_other_runs_bit_for_bit(result_and_dir) -> None:
    """The seed-1 run and the first seed's +-10% models are handed on, each equal to a direct training."""
    r, _, alloc = result_and_dir
    pert = r.outputs["allocation.perturbed_models"]
    assert set(pert) == {"another run seed", "budget x1.1", "budget x0.9"}
    assert len({*pert.values(), r.outputs["allocation.model_path"]}) == 4
    seeds = [row[0] for row in next(t for t in r.tables if t.key == "allocation.runs").rows]
    spec0 = r.data["main_model"]["train_spec"]
    xt = FamilySpec.from_dict(FAMILY).test()[0]
    loaded, spec = load_main_model(pert["another run seed"])
    direct, _, _ = T.trained_model(dict(spec0, seed=seeds[1]))
    with torch.no_grad():
        assert torch.equal(loaded(xt), direct(xt))
    for label, key in (("budget x1.1", "plus10"), ("budget x0.9", "minus10")):
        _, spec = load_main_model(pert[label])
        assert (spec["width"], spec["d"]) == (alloc[key]["width"], alloc[key]["d"])
    assert r.data["perturbed_models"] == pert


def test_wrong_prediction_fails(smoke: Settings, tmp_path: Path) -> None:
    """A prediction far from what the model achieves fails the agreement check (the check can fail)."""
    alloc = tiny_allocation(3.0, (2.9, 3.1), 2.0, 3.0)
    s = replace(smoke, generalization=None)
    r = measure(alloc, s, seed=1, runtime=Runtime(out_dir=tmp_path))
    assert r.check("law_prediction_at_optimum").passed is False
    assert r.check("budget_change_as_predicted").passed is False  # predicted change -1 +- 0.2: far from ~0


def test_default_subject_reads_the_hand_off(smoke: Settings) -> None:
    alloc = tiny_allocation(0.66, (0.62, 0.70), 0.65, 0.67)
    got = default_subject(smoke, seed=0, runtime=Runtime(inputs={"scaling.allocation": alloc}))
    assert isinstance(got, Allocation) and got.main.predicted_loss == 0.66 and got.plus.d == 563
    own = default_subject(smoke, seed=0, runtime=Runtime())
    assert own.main.predicted_loss is None and own.source == "settings"
    assert own.plus.d == round(smoke.d * 1.1) and own.minus.d == round(smoke.d * 0.9)


def test_executor_gives_the_same_numbers(smoke: Settings, tmp_path: Path) -> None:
    from multilens.experiments.executors import LocalExecutor

    alloc = tiny_allocation(0.66, (0.62, 0.70), 0.65, 0.67)
    s = replace(smoke, seeds=2, generalization=None, budget_response=None)
    ex = LocalExecutor(workers=1)
    try:
        a = measure(alloc, s, seed=3, runtime=Runtime(executor=ex, out_dir=tmp_path / "a"))
    finally:
        ex.close()
    b = measure(alloc, s, seed=3, runtime=Runtime(out_dir=tmp_path / "b"))
    assert a.metrics == b.metrics
    pa, pb = Path(a.outputs["allocation.model_path"]), Path(b.outputs["allocation.model_path"])
    assert pa.name == pb.name and pa.parent.parent == (tmp_path / "a").resolve()
    assert (pa / "model.safetensors").read_bytes() == (pb / "model.safetensors").read_bytes()


@pytest.mark.parametrize(
    "patch, key",
    [
        ({"width": 0}, "scaling.allocation.width"),
        ({"recipe": {"optimizer": "adam"}}, "scaling.allocation.recipe.batch_size"),
        ({"predicted_loss_ci": [1.0]}, "scaling.allocation.predicted_loss_ci"),
        ({"plus10": {"d": 10}}, "scaling.allocation.plus10.width"),
    ],
)
def test_bad_allocation_names_the_key(patch: dict, key: str) -> None:
    alloc = tiny_allocation(0.66, (0.62, 0.70), 0.65, 0.67) | patch
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        Allocation.from_dict(alloc)


def test_law_at_trained_size_is_the_law() -> None:
    a = Allocation.from_dict(tiny_allocation(0.66, (0.62, 0.70), 0.65, 0.67))
    n = a.n_params(a.main)
    assert n == 16 * 8 + 8 + 8 * 2 + 2
    assert a.law_at(a.main) == pytest.approx(0.2 + 1.0 / n**0.3 + 2.0 / 512**0.3, rel=1e-15)
    assert math.isfinite(a.law_at(a.plus))


def test_prediction_at_the_trained_size_is_compared_when_handed_on(smoke: Settings, tmp_path: Path) -> None:
    """With predicted_loss_at_recipe (the law at the integer width and rounded D) the check uses it, not N*, D*."""
    alloc = tiny_allocation(3.0, (2.9, 3.1), 0.65, 0.67) | {
        "predicted_loss_at_recipe": 0.66,
        "predicted_loss_at_recipe_ci": [0.0, 5.0],  # wide enough to overlap any realised interval
    }
    s = replace(smoke, generalization=None, budget_response=None)
    r = measure(alloc, s, seed=2, runtime=Runtime(out_dir=tmp_path))
    c = r.check("law_prediction_at_optimum")
    assert c.passed is True and "predicted_loss_at_recipe" in c.reason and c.expected == 2.5
    assert r.metrics["allocation.predicted_loss"] == 3.0 and r.metrics["allocation.predicted_loss_at_recipe"] == 0.66


def test_a_failed_hand_off_falls_back_to_the_settings(smoke: Settings) -> None:
    failed = {"method": "approach3", "ok": False, "note": "no compute-optimal allocation: alpha < 0", "width": None,
              "d": None, "lr": None, "predicted_loss": None}  # fmt: skip
    got = default_subject(smoke, seed=0, runtime=Runtime(inputs={"scaling.allocation": failed}))
    assert got.main.width == smoke.width and got.main.predicted_loss is None and "alpha < 0" in got.source
    other = tiny_allocation(0.66, (0.62, 0.70), 0.65, 0.67) | {"family": None}
    got = default_subject(smoke, seed=0, runtime=Runtime(inputs={"scaling.allocation": other}))
    assert got.main.width == 8 and got.main.predicted_loss is None and got.plus is None and got.law is None
