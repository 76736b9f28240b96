"""Augmentations: exact effects on small images, seeded reproducibility, no in-place change."""

from __future__ import annotations

import torch

from multilens.data.augment import augment, random_crop, random_shift


def test_shift_moves_pixels_exactly():
    x = torch.zeros(1, 64)
    x[0, 3 * 8 + 4] = 1.0
    g = torch.Generator().manual_seed(0)
    y = random_shift(x, 1, g).reshape(8, 8)
    assert float(y.sum()) == 1.0  # an interior pixel survives a 1-pixel shift
    r, c = (y == 1).nonzero()[0].tolist()
    assert abs(r - 3) <= 1 and abs(c - 4) <= 1


def test_shift_zero_is_identity_and_crop_full_is_identity():
    x = torch.randn(5, 64, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)
    assert torch.equal(random_shift(x, 0, g), x)
    assert torch.equal(random_crop(x, 8, g), x)


def test_crop_keeps_a_window():
    x = torch.ones(3, 64)
    y = random_crop(x, 6, torch.Generator().manual_seed(3))
    assert torch.all(y.sum(dim=1) == 36.0)


def test_augment_seeded_and_pure():
    x = torch.randn(4, 64, generator=torch.Generator().manual_seed(4))
    x0 = x.clone()
    a = augment(x, torch.Generator().manual_seed(9))
    b = augment(x, torch.Generator().manual_seed(9))
    assert torch.equal(a, b) and torch.equal(x, x0) and not torch.equal(a, x)
