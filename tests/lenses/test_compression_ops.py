"""Compression operators and estimators against exact answers (dense SVD, closed forms)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from multilens.compression import (
    LowRankLinear,
    count_weights,
    layer_spectra,
    magnitude_prune,
    matched_keep,
    random_prune,
    svd_truncate,
)
from multilens.errors import ConfigError
from multilens.lenses.compression.lens import high_rank_noise_case, whitened_linear_problem, whitened_loss_increase
from multilens.models.mlp import MLPSpec, build_mlp
from multilens.subject import model_fingerprint, same_fingerprint


def _model() -> nn.Sequential:
    return build_mlp(MLPSpec(12, (10,), 4), 0)


def test_svd_truncation_is_eckart_young_and_leaves_the_input() -> None:
    m = _model()
    before = model_fingerprint(m)
    t = svd_truncate(m, rank=3)
    assert same_fingerprint(before, model_fingerprint(m))
    assert isinstance(t[0], LowRankLinear) and t[0].rank == 3
    w = m[0].weight.detach().double()
    s = np.linalg.svd(w.numpy(), compute_uv=False)
    err2 = float(((t[0].weight.detach().double() - w) ** 2).sum())
    assert err2 == pytest.approx(float(np.sum(s[3:] ** 2)), rel=1e-5)
    assert count_weights(t) == 3 * (12 + 10) + 3 * (10 + 4)
    x = torch.randn(5, 12, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(svd_truncate(m, rank=10)(x), m(x), atol=1e-5, rtol=1e-5)  # full rank: same function


def test_energy_threshold_rank_and_spectra() -> None:
    m = _model()
    sp = layer_spectra(m)[0]
    s = sp.singular_values
    r = sp.rank_for_energy(0.8)
    c = np.cumsum(s**2) / np.sum(s**2)
    assert c[r - 1] >= 0.8 - 1e-12 and (r == 1 or c[r - 2] < 0.8)
    assert sp.stable_rank == pytest.approx(np.sum(s**2) / s[0] ** 2)
    assert sp.condition_number == pytest.approx(s[0] / s[-1])
    assert svd_truncate(m, energy=0.8)[0].rank == r
    with pytest.raises(ConfigError, match="exactly one"):
        svd_truncate(m, rank=2, energy=0.5)


def test_pruning_keeps_the_right_weights_and_counts() -> None:
    m = _model()
    before = model_fingerprint(m)
    keep = matched_keep(m, 2)
    assert keep == {"0": 2 * 22, "2": 2 * 14}
    p = magnitude_prune(m, keep=keep)
    assert same_fingerprint(before, model_fingerprint(m))
    w, pw = m[0].weight.detach().abs().flatten(), p[0].weight.detach().flatten()
    thr = torch.sort(w, descending=True).values[keep["0"] - 1]
    assert int((pw != 0).sum()) == keep["0"] and bool((w[pw != 0] >= thr).all())
    r1, r2 = random_prune(m, keep=keep, seed=3), random_prune(m, keep=keep, seed=3)
    assert torch.equal(r1[0].weight, r2[0].weight) and count_weights(r1) == count_weights(p) == 44 + 28
    assert not torch.equal(random_prune(m, keep=keep, seed=4)[0].prune_mask, r1[0].prune_mask)


def test_whitened_loss_increase_equals_tail_energy() -> None:
    x, y = whitened_linear_problem(200, 8, 5, seed=0)
    torch.testing.assert_close(x.T @ x / 200, torch.eye(8, dtype=torch.float64), atol=1e-12, rtol=0)
    for r in (1, 2, 4):
        inc, tail = whitened_loss_increase(x, y, r)
        assert inc == pytest.approx(tail, rel=1e-9)


def test_high_rank_noise_case_svd_loses() -> None:
    e_svd, e_mag, sr = high_rank_noise_case(32, seed=0)
    assert e_svd > 10 * e_mag and sr > 4


def test_gradient_noise_against_per_batch_gradients() -> None:
    from multilens.lenses.compression.lens import gradient_noise

    m = _model().double()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 12, generator=g, dtype=torch.float64), torch.randint(0, 4, (8,), generator=g)
    got = gradient_noise(m, nn.functional.cross_entropy, (x, y), 4)

    def flat(xb, yb):
        m.zero_grad()
        nn.functional.cross_entropy(m(xb), yb).backward()
        return torch.cat([p.grad.reshape(-1) for p in m.parameters()]).clone()

    full, g1, g2 = flat(x, y), flat(x[:4], y[:4]), flat(x[4:], y[4:])
    torch.testing.assert_close(full, (g1 + g2) / 2)
    assert got == pytest.approx([float(((g1 - full) ** 2).sum()), float(((g2 - full) ** 2).sum())], rel=1e-10)


def test_spectra_of_a_factored_layer_stop_at_its_rank() -> None:
    t = svd_truncate(_model(), rank=3)
    sp = layer_spectra(t)
    assert [s.name for s in sp] == ["0", "2"] and all(len(s.singular_values) == 3 for s in sp)
    full = np.linalg.svd(_model()[0].weight.detach().double().numpy(), compute_uv=False)
    np.testing.assert_allclose(sp[0].singular_values, full[:3], rtol=1e-5)
    assert np.isfinite(sp[0].condition_number)
