"""Exact parameter/FLOP counts, seeded init that leaves the global RNG alone, deterministic training."""

from __future__ import annotations

import pytest
import torch

from multilens.data import TeacherStudentTask
from multilens.errors import ConfigError
from multilens.models import MLPSpec, build_mlp, forward_flops, n_params
from multilens.train import TrainConfig, train_model


def test_parameter_count_matches_torch():
    for spec in (MLPSpec(16, (32,), 1), MLPSpec(64, (128, 64), 10, "tanh"), MLPSpec(3, (), 2, bias=False)):
        assert n_params(spec) == sum(p.numel() for p in build_mlp(spec, 0).parameters())


def test_forward_flops_by_hand():
    # 16->32: 2*16*32 + 32 bias + 32 relu; 32->1: 2*32 + 1 bias
    assert forward_flops(MLPSpec(16, (32,), 1)) == 2 * 16 * 32 + 32 + 32 + 2 * 32 + 1


def test_init_is_seeded_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a, b = build_mlp(MLPSpec(8, (16,), 2), 3), build_mlp(MLPSpec(8, (16,), 2), 3)
    c = build_mlp(MLPSpec(8, (16,), 2), 4)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


def test_training_is_deterministic_and_learns():
    task = TeacherStudentTask(d_in=8, teacher_width=16)
    x, y = task.sample(512, seed=1)
    runs = []
    for _ in range(2):
        m = build_mlp(MLPSpec(8, (32,), 1), 0)
        runs.append(train_model(m, x, y, TrainConfig(epochs=5, lr=1e-2), seed=2))
    assert runs[0].curve_loss == runs[1].curve_loss
    assert runs[0].curve_loss[-1] < 0.5 * runs[0].curve_loss[0]


def test_divergence_is_reported_not_hidden():
    x, y = TeacherStudentTask(d_in=4, teacher_width=4).sample(64, seed=0)
    m = build_mlp(MLPSpec(4, (8,), 1), 0)
    r = train_model(m, x, y, TrainConfig(optimizer="sgd", lr=1e6, epochs=20), seed=0)
    assert r.diverged


def test_bad_config_errors():
    with pytest.raises(ConfigError, match="`lr`"):
        TrainConfig(lr=0)
    with pytest.raises(ConfigError, match=r"`widths\[0\]`"):
        MLPSpec(4, (0,), 1)
