"""Tabular classification tasks with a group attribute and a known disparity (for the constraints lens).

:func:`make_group_task`: ``g ~ Bernoulli(group_fraction)``, ``x ~ N(mu_g, I_d)`` with
``mu_g = disparity (g - 1/2) e_0``, label ``y = 1[w . x + noise eps > 0]`` (``eps ~ N(0, 1)``), and
the group appended as the last feature. The population base-rate gap is exact:
``P(y=1 | g=1) - P(y=1 | g=0) = Phi(a) - Phi(-a)`` with ``a = w_0 disparity / 2 / sqrt(|w|^2 + noise^2)``.

:func:`digits_group_task`: scikit-learn digits, label "digit >= 5", and a synthetic group "the
left half of the image is brighter than the median" (thresholds from the training part only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import norm

from multilens.seeding import torch_generator
from multilens.validation import check_int, check_open_unit, check_positive


@dataclass(frozen=True)
class GroupTask:
    x_train: torch.Tensor  # (n, d) float32, the group is the last column
    y_train: torch.Tensor  # (n,) float32 in {0, 1}
    g_train: torch.Tensor  # (n,) int64 in {0, 1}
    x_test: torch.Tensor
    y_test: torch.Tensor
    g_test: torch.Tensor
    base_rate_gap: float  # P(y=1|g=1) - P(y=1|g=0): exact for generated tasks, empirical (all rows) for digits
    name: str

    @property
    def d_in(self) -> int:
        return int(self.x_train.shape[1])

    def train(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.x_train, self.y_train, self.g_train

    def test(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.x_test, self.y_test, self.g_test


def _weights(d: int) -> torch.Tensor:
    w = torch.ones(d, dtype=torch.float64) / math.sqrt(d)
    w[0] = 1.0
    return w


def exact_base_rate_gap(d: int, disparity: float, noise: float) -> float:
    w = _weights(d)
    a = float(w[0]) * disparity / 2.0 / math.sqrt(float(w @ w) + noise**2)
    return float(norm.cdf(a) - norm.cdf(-a))


def make_group_task(
    n_train: int = 2000,
    n_test: int = 2000,
    d: int = 8,
    disparity: float = 1.5,
    group_fraction: float = 0.3,
    noise: float = 0.5,
    seed: int = 0,
) -> GroupTask:
    check_int("n_train", n_train, 4)
    check_int("n_test", n_test, 4)
    check_int("d", d, 1)
    check_positive("disparity", disparity)
    check_open_unit("group_fraction", group_fraction)
    check_positive("noise", noise)
    gen = torch_generator(seed)
    n = n_train + n_test
    g = (torch.rand(n, generator=gen, dtype=torch.float64) < group_fraction).long()
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    x[:, 0] += disparity * (g.double() - 0.5)
    y = ((x @ _weights(d) + noise * torch.randn(n, generator=gen, dtype=torch.float64)) > 0).float()
    feats = torch.cat([x, g.double()[:, None]], 1).float()
    gap = exact_base_rate_gap(d, disparity, noise)
    return GroupTask(
        feats[:n_train],
        y[:n_train],
        g[:n_train],
        feats[n_train:],
        y[n_train:],
        g[n_train:],
        gap,
        f"generated tabular (d={d}, disparity={disparity:g})",
    )


def digits_group_task(seed: int = 0) -> GroupTask:
    from multilens.data.digits import load_digits_split

    d = load_digits_split(seed)
    left = lambda x: x.view(-1, 8, 8)[:, :, :4].mean((1, 2))  # noqa: E731
    thr = float(left(d.x_train).median())
    gtr, gte = (left(d.x_train) > thr).long(), (left(d.x_test) > thr).long()
    ytr, yte = (d.y_train >= 5).float(), (d.y_test >= 5).float()
    y_all, g_all = torch.cat([ytr, yte]).numpy(), torch.cat([gtr, gte]).numpy()
    gap = float(np.mean(y_all[g_all == 1]) - np.mean(y_all[g_all == 0]))
    xtr = torch.cat([d.x_train, gtr.float()[:, None]], 1)
    xte = torch.cat([d.x_test, gte.float()[:, None]], 1)
    return GroupTask(xtr, ytr, gtr, xte, yte, gte, gap, "digits >= 5, synthetic group (left half brightness)")
