"""The scikit-learn digits set (1,797 real 8x8 handwritten digits, shipped inside scikit-learn).

Split into train/test with a seeded stratified shuffle; features are standardized with
statistics of the training part only, so nothing about the test set leaks into training.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from multilens.errors import ConfigError


@dataclass(frozen=True)
class DigitsSplit:
    x_train: torch.Tensor  # (n_train, 64) float32
    y_train: torch.Tensor  # (n_train,) int64
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    checksum: str  # sha256 of the raw data, so a manifest can pin it

    @property
    def d_in(self) -> int:
        return int(self.x_train.shape[1])


def digits_checksum() -> str:
    d = load_digits()
    h = hashlib.sha256(np.ascontiguousarray(d.data, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(d.target, dtype=np.int64).tobytes())
    return h.hexdigest()


def load_digits_split(seed: int, test_fraction: float = 0.25, n_train: int | None = None) -> DigitsSplit:
    """Seeded stratified split; ``n_train`` optionally subsamples the training part."""
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"`test_fraction` must be in (0, 1); got {test_fraction}.")
    d = load_digits()
    x = d.data.astype(np.float64)
    y = d.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, random_state=int(seed), stratify=y)
    if n_train is not None:
        if not 1 <= n_train <= len(y_tr):
            raise ConfigError(f"`n_train` must be in [1, {len(y_tr)}]; got {n_train}.")
        x_tr, y_tr = x_tr[:n_train], y_tr[:n_train]
    mu = x_tr.mean(axis=0)
    sd = x_tr.std(axis=0)
    sd[sd == 0] = 1.0  # constant border pixels
    f = lambda a: torch.as_tensor((a - mu) / sd, dtype=torch.float32)  # noqa: E731
    return DigitsSplit(f(x_tr), torch.as_tensor(y_tr), f(x_te), torch.as_tensor(y_te), 10, digits_checksum())
