"""Robustness of your own classifier: attacks, robust accuracy with intervals, Lipschitz bounds, certificates.

    >>> import multilens.robustness as mr
    >>> est = mr.robust_accuracy(model, x_test, y_test, eps=8 / 255, norm="linf", seed=0, input_range=(0.0, 1.0))
    >>> est.value, est.ci_low, est.ci_high      # Clopper-Pearson over examples
    >>> mr.lipschitz_bounds(model, x_test).stages   # per-stage upper (power iteration) and lower (attack) bounds
    >>> mr.smoothing_certify(model, x_test, y_test, sigma=0.25, seed=0).radius

Every function works on a deep copy of ``model`` in eval mode (your model, its gradients and the
global RNG states are left as they were), takes ``seed``, and accepts any valid input box
``input_range=(low, high)`` (floats, or tensors broadcastable to x; inputs need not lie in
[0, 1]). The whole lens (sanity checks, exact linear reference, gates) is
``multilens.diagnose(Subject(model, loss, train=..., holdout=..., input_range=...), lenses=("robustness",))``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from multilens.lenses.robustness.attacks import (
    AttackResult,
    budget_violation,
    exact_linear_robust,
    fgsm,
    margins,
    pgd,
    square_attack,
)
from multilens.lenses.robustness.certificate import (
    load_certificate,
    make_certificate,
    verify_certificate,
    write_certificate,
)
from multilens.lenses.robustness.lipschitz import LipschitzReport, StageBounds, lipschitz_bounds
from multilens.lenses.robustness.smoothing import SmoothingResult, smoothing_certify
from multilens.results import Estimate
from multilens.stats import clopper_pearson

__all__ = [
    "AttackResult",
    "LipschitzReport",
    "SmoothingResult",
    "StageBounds",
    "budget_violation",
    "exact_linear_robust",
    "fgsm",
    "lipschitz_bounds",
    "load_certificate",
    "make_certificate",
    "margins",
    "pgd",
    "robust_accuracy",
    "smoothing_certify",
    "square_attack",
    "verify_certificate",
    "write_certificate",
]


def robust_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    norm: str = "linf",
    seed: int,
    input_range: Any = None,
    steps: int = 20,
    restarts: int = 1,
    targeted: int = 3,
    step_size: float = 0.25,
    schedule: str = "constant",
    loss: str = "ce",
    level: float = 0.95,
) -> Estimate:
    """PGD robust accuracy (clean-correct and not fooled) with a Clopper-Pearson interval over examples.

    An upper bound on the true robust accuracy (an attack can only miss adversarial examples); the
    interval covers sampling over examples, not the attack's weakness. Restart 0 starts at x, the
    others at random points of the ball; ``targeted`` restarts aim at the most likely wrong classes.
    """
    r = pgd(model, x, y, eps=eps, norm=norm, steps=steps, restarts=restarts, targeted=targeted, step_size=step_size,
            schedule=schedule, loss=loss, random_start=False, input_range=input_range, seed=seed)  # fmt: skip
    n = int(x.shape[0])
    return clopper_pearson(int(r.robust.sum()), n, level).to_estimate(
        f"robust_accuracy_{norm}_eps{eps:g}",
        unit="fraction",
        note=f"PGD-{norm}, {steps} steps, {restarts} restart(s) ({loss} loss) + {targeted} targeted",
    )
