"""The representation lens on users' own subjects: arrays, a torch model with an embed module."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from multilens.lenses.representation import (
    Checkpoint,
    RepresentationSubject,
    Settings,
    measure,
)
from multilens.lenses.representation.downstream import knn_accuracy, linear_probe, pca_project

SMOKE = Settings.for_profile("smoke")
ARRAYS = dataclasses.replace(SMOKE, ssl=None)  # a user's arrays have no SSL runs


def mixture(n: int, d: int, k: int, sep: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    means = np.eye(d)[:k] * sep
    return means[y] + rng.standard_normal((n, d)), y


def test_measure_on_user_arrays_healthy():
    ztr, ytr = mixture(600, 10, 3, 4.0, 0)
    zte, yte = mixture(300, 10, 3, 4.0, 1)
    dom = (np.arange(600) % 2).astype(int)
    z1 = ztr[:200]
    subj = RepresentationSubject(ztr, ytr, zte, yte, domains_train=dom,
                                 checkpoints=(Checkpoint(0, z1, 0.1), Checkpoint(10, z1.copy(), 0.1)),
                                 events=((5, "warm-up end"),))  # fmt: skip
    r = measure(subj, ARRAYS, seed=0)
    assert r.metrics["representation.complete_collapse"] == 0.0
    assert r.check("main_probe_above_chance").passed is True
    assert r.check("main_rank_above_complete_collapse").passed is True
    assert r.estimate("probe_accuracy").value > 0.9
    # identical checkpoints: the top-subspace alignment is exactly 1
    assert r.estimate("alignment_0_to_10").value == pytest.approx(1.0, abs=1e-12)
    assert {"class_0_participation_ratio", "domain_1_rankme"} <= {e.name for e in r.estimates}
    assert r.check("b13_control_rank1_reaches_bayes").kind == "agreement"


def test_measure_flags_complete_collapse():
    rng = np.random.default_rng(2)
    v = rng.standard_normal(8)
    ztr = np.outer(rng.standard_normal(400), v)  # rank 1, carrying no label information
    zte = np.outer(rng.standard_normal(200), v)
    ytr, yte = rng.integers(0, 4, 400), rng.integers(0, 4, 200)
    r = measure(RepresentationSubject(ztr, ytr, zte, yte), ARRAYS, seed=0)
    assert r.check("main_rank_above_complete_collapse").passed is False
    assert r.check("main_probe_above_chance").passed is False
    assert r.metrics["representation.complete_collapse"] == 1.0
    assert r.estimate("global_rankme").value == pytest.approx(1.0, abs=1e-6)
    assert not r.recommendations and r.dropped_recommendations


def test_from_model_records_embed_output_and_leaves_model_alone():
    g = torch.Generator().manual_seed(0)
    body = nn.Sequential(nn.Linear(5, 7), nn.Tanh())
    model = nn.Sequential(body, nn.Linear(7, 3))
    before = copy.deepcopy(model.state_dict())
    x = torch.randn(40, 5, generator=g)
    y = torch.randint(0, 3, (40,), generator=g)
    subj = RepresentationSubject.from_model(model, body, x, y, x[:20], y[:20])
    with torch.no_grad():
        expected = body(x).double().numpy()
    np.testing.assert_allclose(subj.z_train, expected, atol=1e-7)
    assert subj.z_train.shape == (40, 7) and subj.x_train.shape == (40, 5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    r = measure(subj, ARRAYS, seed=1)
    assert r.estimate("global_participation_ratio").value <= 7


def test_probe_and_knn_exact_on_separable_points():
    ztr = np.array([[0.0], [0.1], [0.2], [10.0], [10.1], [10.2]])
    ytr = np.array([0, 0, 0, 1, 1, 1])
    zte = np.array([[0.05], [10.05], [9.9], [0.3]])
    yte = np.array([0, 1, 1, 0])
    assert linear_probe(ztr, ytr, zte, yte).accuracy.estimate == 1.0
    assert knn_accuracy(ztr, ytr, zte, yte, k=3).estimate == 1.0
    a, b = pca_project(np.c_[ztr, np.zeros(6)], np.c_[zte, np.zeros(4)], 1)
    np.testing.assert_allclose(np.abs(a[:, 0]), np.abs(ztr[:, 0] - ztr.mean()), atol=1e-12)


def test_kmeans_ari_perfect_on_separated_clusters():
    from multilens.lenses.representation.downstream import kmeans_ari

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 30)
    z = np.eye(3)[y] * 100 + rng.standard_normal((90, 3))
    assert kmeans_ari(z, y, seed=0) == pytest.approx(1.0)
    assert abs(kmeans_ari(rng.standard_normal((90, 3)), y, seed=0)) < 0.2  # no structure: ARI near 0


def test_default_policy_gate_stops_on_collapsed_main_subject():
    from multilens.protocol.gates import evaluate_policy, load_policy

    rng = np.random.default_rng(5)
    v = rng.standard_normal(6)
    bad = RepresentationSubject(np.outer(rng.standard_normal(300), v), rng.integers(0, 3, 300),
                                np.outer(rng.standard_normal(150), v), rng.integers(0, 3, 150))  # fmt: skip
    ztr, ytr = mixture(300, 6, 3, 4.0, 6)
    zte, yte = mixture(150, 6, 3, 4.0, 7)
    good = RepresentationSubject(ztr, ytr, zte, yte)
    only = dataclasses.replace(ARRAYS, spectrum=None, groups=None, trajectory=None, collapse_bound=None)
    pol = load_policy()
    for subj, ok in ((bad, False), (good, True)):
        res = evaluate_policy(pol, measure(subj, only, seed=0).metrics, "representation")
        gate = next(g for g in res if g.name == "main representation not completely collapsed")
        assert gate.passed is ok and gate.action == "stop"
