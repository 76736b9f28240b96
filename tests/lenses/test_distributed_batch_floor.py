"""Consistency 9: m workers at batch b against one process at batch m*b (the exact floor and the real launch)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from multilens.errors import ConfigError
from multilens.lenses import distributed as D
from multilens.lenses.distributed.batch_floor import exact_floor, make_regression, shard_slices


def test_global_sampling_m_workers_equal_one_big_batch_exactly() -> None:
    prob = make_regression(64, 4, 4.0, 0.5, 1)
    eta = prob.eta(0.3)
    a = exact_floor(prob, eta, 2, 4, "global", 200, 50)
    b = exact_floor(prob, eta, 1, 8, "global", 200, 50)
    np.testing.assert_allclose(a.curve, b.curve, rtol=1e-12)
    assert a.floor == pytest.approx(b.floor, rel=1e-12)
    # the floor at a quarter of the global batch is larger (noise ~ 1/(m b))
    assert exact_floor(prob, eta, 1, 2, "global", 200, 50).floor > 2.0 * a.floor


def test_noise_free_limit_has_no_floor() -> None:
    """Interpolating data (no label noise, n > d): residuals vanish, the floor is 0 and the curve decays."""
    prob = make_regression(64, 4, 4.0, 1e-12, 2)
    ex = exact_floor(prob, prob.eta(0.3), 2, 4, "shards", 400, 100)
    assert ex.floor < 1e-20
    assert ex.curve[-1] < 1e-6 * ex.curve[0]


@pytest.mark.parametrize(("m", "b", "sampler"), [(2, 3, "shards"), (1, 6, "global"), (3, 2, "global")])
def test_exact_curve_against_monte_carlo(m: int, b: int, sampler: str) -> None:
    """An independent numpy simulation of averaged SGD: the mean excess loss within 4 standard errors."""
    prob = make_regression(48, 3, 3.0, 0.7, 5)
    eta = prob.eta(0.4)
    steps = 60
    ex = exact_floor(prob, eta, m, b, sampler, steps, 10)
    rng = np.random.default_rng(11)
    reps = 20000
    th = np.zeros((reps, 3))
    x, y = prob.x, prob.y
    for t in range(steps):
        g = np.zeros_like(th)
        for lo, hi in shard_slices(48, m, sampler):
            idx = rng.integers(lo, hi, (reps, b))
            xb = x[idx]
            g += np.einsum("rbd,rb->rd", xb, np.einsum("rbd,rd->rb", xb, th) - y[idx]) / b
        th -= eta * g / m
        if t + 1 in (1, 5, 20, steps):
            e = th - prob.theta_hat
            loss = 0.5 * np.einsum("rd,de,re->r", e, prob.hessian, e)
            se = loss.std(ddof=1) / np.sqrt(reps)
            assert abs(loss.mean() - ex.curve[t + 1]) <= 4 * se, (t + 1, loss.mean(), ex.curve[t + 1], se)


def test_bad_settings_name_the_key() -> None:
    with pytest.raises(ConfigError, match="batch_floor.n_rows"):
        D.BatchFloorSettings(workers=3, n_rows=512)
    with pytest.raises(ConfigError, match="batch_floor.sampler"):
        D.BatchFloorSettings(sampler="random")
    with pytest.raises(ConfigError, match="batch_floor.workers"):
        D.BatchFloorSettings(workers=1)


def test_real_launch_smoke() -> None:
    s = D.Settings.for_profile("smoke")
    off = {p: None for p in ("parity", "noise_floor", "local_sgd", "staleness", "timing", "modes", "faults")}
    s = dataclasses.replace(s, **off)
    r = D.measure(D.default_subject(s, seed=0), s, seed=0)
    assert r.parts == ("batch_floor",)
    for key in ("distributed.floor_workers", "distributed.floor_single_big_batch"):
        lo, v, hi = r.metrics[f"{key}_ci_low"], r.metrics[key], r.metrics[f"{key}_ci_high"]
        assert 0 < lo < v < hi
    checks = {c.name: c for c in r.checks}
    assert checks["batch_floor_stationary_workers"].passed is True
    assert checks["batch_floor_exact_workers"].kind == "agreement"
    assert checks["batch_floor_exact_workers"].passed is not None
    row = r.tables[0].rows
    assert [(x[1], x[2], x[3]) for x in row] == [(2, 4, 8), (1, 8, 8)]
