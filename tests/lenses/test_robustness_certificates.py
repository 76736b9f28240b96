"""Randomized smoothing and the FNR certificate against closed forms."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from scipy import stats
from torch import nn

from multilens.lenses.robustness.certificate import fnr_upper
from multilens.robustness import make_certificate, smoothing_certify, verify_certificate


def binary_linear(seed: int = 0, d: int = 5) -> nn.Linear:
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(d, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(2, d, generator=g))
        lin.bias.copy_(torch.randn(2, generator=g))
    return lin


def test_smoothing_radius_of_a_linear_classifier_approaches_its_distance() -> None:
    """For f = sign(a.x + c), p_A = Phi(dist / sigma): the certified radius sigma Phi^-1(p_A lower) <= dist,
    and with many samples it is close to dist: at n = 20000 and alpha = 1e-6 the lower bound sits about 4.8
    standard errors of p_hat below p_A, i.e. at most ~0.03 in radius for dist < 1.2 sigma; tolerance 0.05."""
    lin = binary_linear()
    x = torch.randn(12, 5, generator=torch.Generator().manual_seed(1)) * 0.3
    a = (lin.weight[0] - lin.weight[1]).detach().double()
    side = x.double() @ a + float((lin.bias[0] - lin.bias[1]).detach())
    dist = side.abs() / a.norm()
    y = (side < 0).long()
    sigma = 0.5
    r = smoothing_certify(lin, x, y, sigma=sigma, n0=50, n=20000, alpha=1e-6, seed=0)
    ok = torch.from_numpy(r.prediction >= 0)
    assert bool((torch.from_numpy(r.radius)[ok] <= dist[ok] + 1e-12).all())
    far = ok & (dist < 1.2 * sigma)  # away from the p_A ~ 1 saturation where n caps the radius
    assert int(far.sum()) >= 3
    assert torch.allclose(torch.from_numpy(r.radius)[far], dist[far], rtol=0, atol=0.05)
    assert bool((torch.from_numpy(r.prediction)[ok] == y[ok]).all())


def test_smoothing_p_lower_is_the_beta_quantile() -> None:
    """The one-sided lower bound of k hits in n at level 1 - alpha is the Beta(alpha; k, n - k + 1) quantile."""
    lin = binary_linear(2)
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(5))
    y = lin(x).argmax(1).detach()
    r = smoothing_certify(lin, x, y, sigma=0.25, n0=10, n=200, alpha=0.01, seed=3)
    for p in r.p_lower:
        hits = [k for k in range(201) if abs(stats.beta.ppf(0.01, k, 200 - k + 1) - p) < 1e-9] if p > 0 else [0]
        assert len(hits) == 1
    ok = r.p_lower > 0.5
    assert r.radius[ok] == pytest.approx(0.25 * stats.norm.ppf(r.p_lower[ok]), rel=1e-12)


def test_fnr_upper_closed_form_with_no_failures() -> None:
    # k = 0: the one-sided bound solves (1 - u)^n = delta
    for n in (10, 45, 300):
        assert fnr_upper(0, n, 0.05) == pytest.approx(1 - 0.05 ** (1 / n), rel=1e-9)
    assert fnr_upper(5, 5, 0.05) == 1.0


def classifier_and_data():
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    for p in net.parameters():
        with torch.no_grad():
            p.copy_(torch.randn(p.shape, generator=g))
    x = torch.randn(90, 4, generator=g)
    y = torch.randint(0, 3, (90,), generator=g)
    return net, x, y


def test_certificate_round_trip_and_tampering() -> None:
    net, x, y = classifier_and_data()
    cert = make_certificate(net, x, y, cls=1, delta=0.05)
    pred = net(x).argmax(1)
    sel = y == 1
    assert cert["n"] == int(sel.sum()) and cert["k"] == int((pred[sel] != 1).sum())
    assert cert["u"] == pytest.approx(fnr_upper(cert["k"], cert["n"], 0.05))
    ok, problems = verify_certificate(json.loads(json.dumps(cert)), model=net, x=x, y=y)
    assert ok, problems
    bad = copy.deepcopy(cert)
    bad["u"] = 0.001
    ok, problems = verify_certificate(bad)
    assert not ok and any("u recomputed" in p for p in problems)
    bad = copy.deepcopy(cert)
    bad["outcomes"][0] = 1 - bad["outcomes"][0]
    ok, problems = verify_certificate(bad)
    assert not ok
    other = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    ok, problems = verify_certificate(cert, model=other)
    assert not ok and any("model" in p for p in problems)
    with pytest.raises(ValueError):
        verify_certificate({"kind": "something else"})
