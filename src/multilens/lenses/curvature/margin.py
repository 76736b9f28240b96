"""The normalized classification margin ``m`` of the geometry gate ``s = m / (1 + kappa)``.

The chapter (EX-CONCRETE-2) asks for a "normalized margin" without defining the normalization.
Ours: for a training example with logits ``z`` and label ``y``,

    m_i = (z_y - max_{j != y} z_j) / ||z||_2,

and ``m`` is its ``q``-quantile over the training points (default q = 0.1: 90% of the training
points have at least this margin). Dividing by the logit norm makes ``m`` dimensionless and
unchanged when the logits are multiplied by a positive constant (so it is invariant under the
ReLU and normalization rescalings of :mod:`.invariance`, unlike the curvature proxy);
``|m_i| <= sqrt(2)``, and ``m_i > 0`` exactly when example i is classified correctly. A
percentile bootstrap over examples gives its interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from multilens.errors import ConfigError
from multilens.lenses.curvature.functional import FlatModel
from multilens.seeding import SeedLike, as_generator


@dataclass(frozen=True)
class MarginResult:
    value: float
    ci_low: float
    ci_high: float
    stderr: float
    level: float
    quantile: float
    n: int
    n_bootstrap: int
    fraction_positive: float
    definition: str

    def to_dict(self) -> dict[str, Any]:
        return {k: (float(v) if isinstance(v, float) and math.isfinite(v) else v) for k, v in self.__dict__.items()}


def per_example_margins(logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """(z_y - max_{j != y} z_j) / ||z||_2 for each row of ``logits`` (n, c)."""
    z = logits.to(torch.float64)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ConfigError(f"`logits` must have shape (n, c) with c >= 2; got {tuple(z.shape)}.")
    true = z.gather(1, y.view(-1, 1)).squeeze(1)
    other = z.clone()
    other.scatter_(1, y.view(-1, 1), -math.inf)
    gap = true - other.max(dim=1).values
    return (gap / z.norm(dim=1).clamp_min(1e-300)).numpy()


def normalized_margin(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    quantile: float,
    n_bootstrap: int,
    seed: SeedLike,
    level: float = 0.95,
) -> MarginResult:
    """The ``quantile`` of the per-example normalized margins, with a percentile-bootstrap interval."""
    flat = FlatModel(model, nn.functional.cross_entropy, (x, y), dtype=torch.float64)
    m = per_example_margins(flat.outputs(None, x), y)
    value = float(np.quantile(m, quantile))
    idx = as_generator(seed).integers(0, m.size, size=(n_bootstrap, m.size))  # (n_bootstrap, n) resamples
    boots = np.quantile(m[idx], quantile, axis=1)
    a = (1.0 - level) / 2.0
    return MarginResult(
        value=value,
        ci_low=float(np.quantile(boots, a)),
        ci_high=float(np.quantile(boots, 1.0 - a)),
        stderr=float(boots.std(ddof=1)),
        level=level,
        quantile=quantile,
        n=int(m.size),
        n_bootstrap=int(n_bootstrap),
        fraction_positive=float((m > 0).mean()),
        definition=f"{quantile:g}-quantile over training points of (z_y - max_(j != y) z_j) / ||z||_2 "
        "(logits z, eval mode)",
    )
