"""The compression lens on a user's own models and through diagnose()."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from multilens.lenses.compression import CompressionSubject, Settings, measure
from multilens.subject import Subject


def _data(seed: int, n: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 10, generator=g)
    y = (x[:, :3].sum(1) > 0).long() + (x[:, 3] > 1).long()
    return x, y


def _user_model() -> nn.Module:
    torch_gen = torch.Generator().manual_seed(0)
    m = nn.Sequential(nn.Linear(10, 24), nn.LayerNorm(24), nn.Tanh(), nn.Linear(24, 3))
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=torch_gen) * 0.3)
    return m


def test_measure_on_a_user_subject() -> None:
    model = _user_model().train()
    before = [p.detach().clone() for p in model.parameters()]
    st = dataclasses.replace(Settings.for_profile("smoke"), curvature=None, lora=None)
    subj = CompressionSubject((("user", model),), nn.functional.cross_entropy, _data(0), _data(1))
    r = measure(subj, st, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters())) and model.training
    assert r.check("eckart_young.user.0").passed and r.check("eckart_young.user.3").passed
    assert r.check("eckart_young_whitened").passed
    spectra = next(t for t in r.tables if t.key == "layer_spectra")
    assert any("not nn.Linear" in str(row[2]) and "1" in str(row[1]) for row in spectra.rows)  # LayerNorm named
    assert r.metrics["compression.retained_accuracy"] > 0.0
    # keep 1/4: rank max(1, floor(0.25 m n / (m + n))) per layer -> 1 x (10 + 24) and 1 x (24 + 3) of 240 + 72 weights
    assert r.metrics["compression.weight_fraction"] == (34 + 27) / (240 + 72)


def test_diagnose_runs_the_compression_lens(tmp_path) -> None:
    from multilens.diagnosis import diagnose

    model = _user_model()
    subj = Subject(model, nn.functional.cross_entropy, train=_data(0), holdout=_data(1), name="user-mlp")
    rep = diagnose(
        subj,
        lenses=("compression",),
        out=tmp_path / "d",
        profile="smoke",
        settings={"compression": {"curvature": False, "tail_energy": False}},
    )
    phase = next(p for p in rep.summary["phases"] if p["name"] == "compression")
    assert phase["status"] == "done", phase
    assert "compression.retained_accuracy" in rep.summary["metrics"]


def test_lora_part_on_a_user_shifted_task() -> None:
    from multilens.lenses.compression import LoraSettings

    model = _user_model()
    x, y = _data(0)
    xs, ys = _data(2)
    shifted = ((xs.flip(1), ys), (_data(3)[0].flip(1), _data(3)[1]))  # features reversed: a covariate shift
    subj = CompressionSubject((("user", model),), nn.functional.cross_entropy, (x, y), _data(1), shifted=shifted)
    base = Settings.for_profile("smoke")
    st = dataclasses.replace(
        base,
        spectra=None,
        tail_energy=None,
        pruning=None,
        curvature=None,
        lora=LoraSettings(ranks=(1, 3, 10), steps=40, n_seeds=2, n_boot=60),
    )
    r = measure(subj, st, seed=0)
    rows = next(t for t in r.tables if t.key == "lora").rows
    # at rank 10 >= min(m, n) of both layers (24 x 10 and 3 x 24) the full update has no neglected tail: exactly 0
    assert all(row[2] == 0.0 for row in rows if row[1] == 10)
    assert r.check("lora_excess_tracks_tail_energy").passed is not None
    assert len(rows) == 2 * 3
