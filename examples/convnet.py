"""A small conv net with BatchNorm and dropout on the 8x8 scikit-learn digits (shared by the examples)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from multilens.data import load_digits_split


class ConvNet(nn.Module):
    def __init__(self, channels: int = 8, classes: int = 10, p_drop: float = 0.2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 8x8 -> 4x4
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),  # -> 2x2
            nn.Flatten(),
        )
        self.dropout = nn.Dropout(p_drop)
        self.head = nn.Linear(4 * channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(-1, 1, 8, 8)  # (batch, 64) -> (batch, 1, 8, 8)
        return self.head(self.dropout(self.features(x)))


def digits_loaders(batch_size: int = 64, seed: int = 0, n_train: int | None = None) -> tuple[DataLoader, DataLoader]:
    """Shuffling training loader (its own generator) and an ordered held-out loader."""
    d = load_digits_split(seed, n_train=n_train)
    g = torch.Generator().manual_seed(seed)
    train = DataLoader(TensorDataset(d.x_train, d.y_train), batch_size=batch_size, shuffle=True, generator=g)
    holdout = DataLoader(TensorDataset(d.x_test, d.y_test), batch_size=256)
    return train, holdout
