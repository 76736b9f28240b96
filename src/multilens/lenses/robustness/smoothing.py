"""Randomized smoothing certificates (Cohen, Rosenfeld & Kolter 2019, Algorithm CERTIFY).

The smoothed classifier g(x) = argmax_c P(f(x + N(0, sigma^2 I)) = c). CERTIFY draws n0 noisy
copies to guess the top class c_A, then n fresh ones to count k hits of c_A, takes the one-sided
Clopper-Pearson lower bound p_A at level 1 - alpha, and abstains unless p_A > 1/2; otherwise g is
certified constant on the l-2 ball of radius sigma * Phi^-1(p_A) (Cohen et al., Theorem 1), with
probability at least 1 - alpha over the noise. The noise is added without clipping to the input
box (the theorem is about the Gaussian-smoothed base classifier on R^d).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats as sps
from torch import nn

from multilens.errors import ConfigError
from multilens.lenses.robustness.attacks import frozen_eval
from multilens.seeding import torch_generator
from multilens.stats import clopper_pearson


@dataclass(frozen=True)
class SmoothingResult:
    sigma: float
    prediction: np.ndarray  # -1: abstained
    radius: np.ndarray  # 0 where abstained
    p_lower: np.ndarray
    correct: np.ndarray  # certified prediction == label (False when abstained)
    n0: int
    n: int
    alpha: float

    @property
    def abstain_rate(self) -> float:
        return float((self.prediction < 0).mean())

    def certified_count(self, r: float) -> int:
        """Examples certified correct at l-2 radius >= r."""
        return int((self.correct & (self.radius >= r)).sum())


def _counts(m: nn.Module, x: torch.Tensor, sigma: float, num: int, n_classes: int, g: torch.Generator,
            batch: int) -> np.ndarray:  # fmt: skip
    out = np.zeros((x.shape[0], n_classes), dtype=np.int64)
    with torch.no_grad():
        for i in range(x.shape[0]):
            left = num
            while left > 0:
                b = min(batch, left)
                xb = x[i : i + 1].expand(b, *x.shape[1:])
                noisy = xb + sigma * torch.randn(xb.shape, generator=g, dtype=x.dtype)
                pred = m(noisy).argmax(1)
                out[i] += np.bincount(pred.numpy(), minlength=n_classes)
                left -= b
    return out


def smoothing_certify(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    sigma: float,
    n0: int = 100,
    n: int = 1000,
    alpha: float = 0.001,
    seed: int = 0,
    batch: int = 1000,
) -> SmoothingResult:
    """CERTIFY for every row of x (see the module docstring); returns predictions, radii and p_A lower bounds."""
    if not sigma > 0:
        raise ConfigError(f"`sigma` must be > 0; got {sigma!r}.")
    if not 0 < alpha < 0.5:
        raise ConfigError(f"`alpha` must be in (0, 0.5); got {alpha!r}.")
    if n0 < 1 or n < 1:
        raise ConfigError(f"`n0` and `n` must be ints >= 1; got {n0}, {n}.")
    m = frozen_eval(model)
    with torch.no_grad():
        k_classes = int(m(x[:1]).shape[1])
    g = torch_generator(seed)
    c0 = _counts(m, x, sigma, n0, k_classes, g, batch)
    ca = c0.argmax(1)
    c1 = _counts(m, x, sigma, n, k_classes, g, batch)
    k = c1[np.arange(x.shape[0]), ca]
    pl = np.array([clopper_pearson(int(ki), n, level=1 - 2 * alpha).low for ki in k])
    ok = pl > 0.5
    radius = np.where(ok, sigma * sps.norm.ppf(np.clip(pl, 0.5, 1.0)), 0.0)
    pred = np.where(ok, ca, -1)
    correct = ok & (pred == y.numpy())
    return SmoothingResult(float(sigma), pred, radius, pl, correct, n0, n, alpha)
