"""Synthetic scaling data from a known law, for tests, benchmarks and coverage studies.

Losses follow the law exactly, times multiplicative log-normal noise exp(sigma * z), z ~ N(0, 1),
which is additive Gaussian noise on log L: the noise model the log-space fits assume.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from multilens.errors import ConfigError
from multilens.lenses.scaling.chinchilla import predict_chinchilla
from multilens.lenses.scaling.compute_law import predict_compute
from multilens.lenses.scaling.data import ScalingData
from multilens.seeding import SeedLike, as_generator

# Hoffmann et al. 2022, Approach 3 estimates (their Eq. 10): a realistic "truth" for tests.
CHINCHILLA_PARAMS = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}


def _noise(n: int, sigma: float, seed: SeedLike) -> np.ndarray:
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not (0 <= sigma < np.inf):
        raise ConfigError(f"`noise` must be a finite number >= 0; got {sigma!r}.")
    return np.exp(sigma * as_generator(seed).standard_normal(n))


def chinchilla_grid_data(
    params: dict[str, float] | None = None,
    *,
    N: Any = None,
    D: Any = None,
    noise: float = 0.01,
    seed: SeedLike = 0,
) -> ScalingData:
    """Runs on the full grid N x D (default 16 x 15 = 240 runs, N 1e7..3e9, D 1e8..1e11)."""
    p = CHINCHILLA_PARAMS if params is None else params
    Ng = np.geomspace(1e7, 3e9, 16) if N is None else np.asarray(N, dtype=float)
    Dg = np.geomspace(1e8, 1e11, 15) if D is None else np.asarray(D, dtype=float)
    NN, DD = (m.ravel() for m in np.meshgrid(Ng, Dg, indexing="ij"))
    loss = predict_chinchilla(p, NN, DD) * _noise(NN.size, noise, seed)
    return ScalingData(NN, DD, loss, source="synthetic chinchilla grid")


def compute_law_data(
    A: float, alpha: float, L_inf: float, C: Any, *, noise: float = 0.01, seed: SeedLike = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(C, loss) with loss = (A C^-alpha + L_inf) * exp(noise * z)."""
    C = np.asarray(C, dtype=float)
    return C, predict_compute({"A": A, "alpha": alpha, "L_inf": L_inf}, C) * _noise(C.size, noise, seed)
