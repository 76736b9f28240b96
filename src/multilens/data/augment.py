"""Seeded augmentations of 8x8 digit images (flattened, 64 features): noise, shift and crop.

They make the two "views" of a self-supervised pair. All randomness comes from a local
``torch.Generator``; inputs are never modified in place. Images may be standardized features:
pixels moved in from outside the frame are filled with 0 (the training mean after standardizing).
"""

from __future__ import annotations

import torch

from multilens.validation import check_int, check_nonnegative

SIDE = 8


def _as_images(x: torch.Tensor) -> torch.Tensor:
    if x.ndim != 2 or x.shape[1] != SIDE * SIDE:
        raise ValueError(f"`x` must have shape (n, {SIDE * SIDE}); got {tuple(x.shape)}.")
    return x.reshape(-1, SIDE, SIDE)


def add_noise(x: torch.Tensor, sigma: float, g: torch.Generator) -> torch.Tensor:
    """x + sigma * N(0, 1) per pixel."""
    check_nonnegative("sigma", sigma)
    return x + sigma * torch.randn(x.shape, generator=g, dtype=x.dtype)


def random_shift(x: torch.Tensor, max_shift: int, g: torch.Generator) -> torch.Tensor:
    """Translate each image by an integer (dy, dx) in [-max_shift, max_shift]^2, zero fill."""
    check_int("max_shift", max_shift, 0, SIDE - 1)
    img = _as_images(x)
    n = img.shape[0]
    pad = torch.nn.functional.pad(img, (max_shift,) * 4)
    d = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=g)
    rows = d[:, 0, None] + torch.arange(SIDE)[None, :]  # (n, 8) row indices into the padded image
    cols = d[:, 1, None] + torch.arange(SIDE)[None, :]
    out = pad[torch.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]  # (n, 8, 8)
    return out.reshape(n, SIDE * SIDE)


def random_crop(x: torch.Tensor, size: int, g: torch.Generator) -> torch.Tensor:
    """Keep a random size x size window of each image and zero the rest (a crop without resizing)."""
    check_int("size", size, 1, SIDE)
    img = _as_images(x)
    n = img.shape[0]
    off = torch.randint(0, SIDE - size + 1, (n, 2), generator=g)
    r = torch.arange(SIDE)[None, :]
    mrow = (r >= off[:, :1]) & (r < off[:, :1] + size)  # (n, 8)
    mcol = (r >= off[:, 1:]) & (r < off[:, 1:] + size)
    mask = (mrow[:, :, None] & mcol[:, None, :]).to(x.dtype)
    return (img * mask).reshape(n, SIDE * SIDE)


def augment(x: torch.Tensor, g: torch.Generator, *, sigma: float = 0.3, max_shift: int = 1, crop: int = 7):
    """One random view: crop, then shift, then noise."""
    return add_noise(random_shift(random_crop(x, crop, g), max_shift, g), sigma, g)
