"""Compression lens: the curvature bound on the truncation loss jump (exact on a quadratic) and the scaling shift."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

from multilens.lenses.compression import CompressionSubject, Settings, measure
from multilens.lenses.compression.jump_bound import JumpBoundSettings, quadratic_jump_bound
from multilens.lenses.compression.scaling_shift import ScalingShiftSettings, fit_power_law
from multilens.lenses.contract import Runtime
from multilens.seeding import torch_generator

PARTS = ("spectra", "tail_energy", "pruning", "curvature", "lora", "scaling_shift", "jump_bound")


def _only(settings: Settings, **keep) -> Settings:
    return dataclasses.replace(settings, **{p: keep.get(p) for p in PARTS})


def _sq_loss(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return ((out - t) ** 2).sum(1).mean()  # on whitened inputs its Hessian in vec(W) is exactly 2 I


def _whitened_problem(n: int = 256, d: int = 6, k: int = 4) -> tuple[nn.Linear, torch.Tensor, torch.Tensor]:
    g = torch_generator(0)
    q, _ = torch.linalg.qr(torch.randn(n, d, generator=g, dtype=torch.float64))
    x = q * math.sqrt(n)  # x^T x / n = I
    y = torch.randn(n, k, generator=g, dtype=torch.float64)
    lin = nn.Linear(d, k, bias=False, device="meta", dtype=torch.float64).to_empty(device="cpu")
    with torch.no_grad():
        lin.weight.copy_(torch.randn(k, d, generator=g, dtype=torch.float64))
    return lin, x, y


def test_quadratic_jump_bound_is_attained_on_whitened_least_squares() -> None:
    lin, x, y = _whitened_problem()
    w = lin.weight.detach().clone()
    jb = quadratic_jump_bound(lin, _sq_loss, (x, y), {"": 2}, batch_size=64, tol=1e-8)
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    delta = (u[:, :2] * s[:2]) @ vh[:2] - w
    tail = float((s[2:] ** 2).sum())
    grad = 2.0 * (w - y.T @ x / x.shape[0])  # gradient of the mean squared error when x^T x / n = I
    assert torch.equal(lin.weight.detach(), w)  # the input model is not modified
    assert jb.tail_energy == pytest.approx(tail, rel=1e-12)
    assert jb.delta_norm_sq == pytest.approx(tail, rel=1e-10)
    assert jb.grad_term == pytest.approx(float((grad * delta).sum()), rel=1e-10)
    assert jb.lambda_max == pytest.approx(2.0, rel=1e-6)
    assert jb.curvature_term == pytest.approx(2.0 * tail, rel=1e-10)
    # a quadratic loss: the jump IS g.delta + 1/2 delta^T H delta = g.delta + ||delta||^2, and H = 2 I attains the bound
    assert jb.jump == pytest.approx(jb.grad_term + tail, rel=1e-10)
    assert jb.bound == pytest.approx(jb.jump, rel=1e-6)
    assert np.mean(jb.batch_jumps) == pytest.approx(jb.jump, rel=1e-12)  # equal batches: the mean is the full jump


def test_jump_bound_part_uses_the_handed_on_lambda_max_and_can_fail() -> None:
    lin, x, y = _whitened_problem()
    subject = CompressionSubject((("lin", lin),), _sq_loss, (x, y), (x, y))
    st = _only(Settings.for_profile("smoke"), jump_bound=JumpBoundSettings(batch_size=64))
    r = measure(subject, st, seed=0, runtime=Runtime(inputs={"curvature.lambda_max": 2.0}))
    c = r.check("loss_jump_quadratic_bound")
    assert c.kind == "bound" and c.passed is True
    assert c.bound_ratio == pytest.approx(1.0, rel=1e-9)
    m = r.metrics
    assert m["compression.quadratic_bound"] == pytest.approx(m["compression.grad_term"] + m["compression.tail_energy"])
    assert m["compression.loss_jump_ci_low"] <= m["compression.loss_jump"] <= m["compression.loss_jump_ci_high"]
    assert m["compression.jump_lambda_max"] == 2.0
    # a curvature below the true one (1.0 < 2) understates the jump: the bound check fails
    low = measure(subject, st, seed=0, runtime=Runtime(inputs={"curvature.lambda_max": 1.0}))
    assert low.check("loss_jump_quadratic_bound").passed is False
    # without the hand-off the lens computes lambda_max itself (Lanczos: 2)
    own = measure(subject, st, seed=0)
    assert own.metrics["compression.jump_lambda_max"] == pytest.approx(2.0, rel=1e-4)


def test_power_law_fit_exact() -> None:
    n = np.array([100.0, 400.0, 1600.0])
    alpha, off = fit_power_law(n, 3.0 * n**-0.5, n_ref=400.0)
    assert alpha == pytest.approx(0.5, abs=1e-12)
    assert off == pytest.approx(math.log(3.0 * 400.0**-0.5), abs=1e-12)


def test_scaling_shift_on_a_user_family_of_models() -> None:
    g = torch_generator(1)
    x = torch.randn(300, 8, generator=g)
    y = (x[:, 0] + x[:, 1] * x[:, 2] > 0).long()
    models = []
    for w in (4, 8, 16):
        m = nn.Sequential(nn.Linear(8, w), nn.ReLU(), nn.Linear(w, 2))
        opt = torch.optim.Adam(m.parameters(), lr=1e-2)
        for _ in range(60):
            opt.zero_grad()
            nn.functional.cross_entropy(m(x[:200]), y[:200]).backward()
            opt.step()
        models.append((f"w{w}", m.eval()))
    subject = CompressionSubject(tuple(models), nn.functional.cross_entropy, (x[:200], y[:200]), (x[200:], y[200:]))
    ps = ScalingShiftSettings(keep_fraction=0.5, retrain_steps=10, n_seeds=2, n_boot=60)
    r = measure(subject, _only(Settings.for_profile("smoke"), scaling_shift=ps), seed=0)
    table = next(t for t in r.tables if t.key == "scaling_shift")
    dense = [row for row in table.rows if row[0] == "dense"]
    n = np.array([8 * w + w * 2 for w in (4, 8, 16)], float)  # stored weight entries of the dense models
    assert [row[2] for row in dense] == n.tolist()
    with torch.no_grad():
        held = np.array([float(nn.functional.cross_entropy(m(x[200:]), y[200:])) for _, m in models])
    assert [row[3] for row in dense] == pytest.approx(held.tolist(), rel=1e-6)
    slope = np.polyfit(np.log(n), np.log(held), 1)[0]
    assert r.metrics["compression.alpha_dense"] == pytest.approx(-slope, rel=1e-5)
    for fam in ("svd", "magnitude"):
        assert {f"compression.alpha_{fam}_ci_low", f"compression.alpha_{fam}_ci_high"} <= set(r.metrics)
        c = r.check(f"scaling_exponent_overlap.{fam}")
        assert c.kind == "agreement" and c.passed is not None
        lo, hi = r.metrics[f"compression.alpha_{fam}_ci_low"], r.metrics[f"compression.alpha_{fam}_ci_high"]
        dlo, dhi = r.metrics["compression.alpha_dense_ci_low"], r.metrics["compression.alpha_dense_ci_high"]
        assert c.passed == (lo <= dhi and dlo <= hi)


def test_jump_bound_batches_shrink_to_fit_small_data() -> None:
    lin, x, y = _whitened_problem()  # 256 rows: a batch of 512 becomes two batches of 128
    subject = CompressionSubject((("lin", lin),), _sq_loss, (x, y), (x, y))
    st = _only(Settings.for_profile("smoke"), jump_bound=JumpBoundSettings(batch_size=512))
    r = measure(subject, st, seed=0, runtime=Runtime(inputs={"curvature.lambda_max": 2.0}))
    assert any("2 batches of 128" in n for n in r.notes)
    est = next(e for e in r.estimates if e.name == "loss_jump")
    assert est.n == 2 and r.check("loss_jump_quadratic_bound").bound_ratio == pytest.approx(1.0, rel=1e-9)
