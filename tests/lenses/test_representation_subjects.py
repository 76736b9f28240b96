"""Bundled subjects of the representation lens: schedule, VICReg terms, hooks, seeded SSL training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from multilens.lenses.representation.subjects import embed_with, schedule, train_ssl, vicreg_terms


def test_schedule_warmup_and_decays_exact():
    lr, total, warm = 0.1, 100, 10
    assert schedule(0, total, lr, warm, (0.5, 0.75), 0.2) == pytest.approx(0.01)
    assert schedule(9, total, lr, warm, (0.5, 0.75), 0.2) == pytest.approx(0.1)
    assert schedule(49, total, lr, warm, (0.5, 0.75), 0.2) == pytest.approx(0.1)
    assert schedule(50, total, lr, warm, (0.5, 0.75), 0.2) == pytest.approx(0.02)
    assert schedule(80, total, lr, warm, (0.5, 0.75), 0.2) == pytest.approx(0.004)


def test_vicreg_terms_closed_form():
    z = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    var, cov = vicreg_terms(z)
    # per-column variance 2 (ddof 1): std > 1, no hinge; covariance off-diagonal 2: (2^2 + 2^2) / d = 4
    assert float(var) == 0.0 and float(cov) == pytest.approx(4.0)
    z0 = torch.zeros(5, 3)  # a collapsed batch pays the full variance hinge 1 - sqrt(1e-4)
    var0, cov0 = vicreg_terms(z0)
    assert float(var0) == pytest.approx(1 - 1e-2) and float(cov0) == 0.0


def test_embed_with_restores_mode_and_removes_hook():
    body = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5))
    model = nn.Sequential(body, nn.Linear(4, 2))
    model.train()
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    z = embed_with(model, body, x)
    assert model.training and not body._forward_hooks
    with torch.no_grad():
        model.eval()
        np.testing.assert_allclose(z, body(x).double().numpy(), atol=1e-7)  # eval mode: dropout off


def test_train_ssl_seeded_and_shapes():
    a = train_ssl("align", seed=3, epochs=1, width=16, embed_dim=4)
    b = train_ssl("align", seed=3, epochs=1, width=16, embed_dim=4)
    assert a.z_train.shape[1] == 4 and a.z_init_train.shape == a.z_train.shape
    np.testing.assert_array_equal(a.z_train, b.z_train)
    c = train_ssl("stopgrad", seed=3, max_steps=3, width=16, embed_dim=4)
    assert c.steps == 3 and len(c.loss_curve) == 1
    with pytest.raises(ValueError, match="objective"):
        train_ssl("nope", seed=0, max_steps=1)
