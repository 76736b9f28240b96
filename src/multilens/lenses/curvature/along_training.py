"""Curvature along training: top eigenvalues and trace per checkpoint against 2/eta (edge of stability).

The chapter's C.9, done on a real network so that the Hessian really changes: a ReLU MLP is
trained on the digits by full-batch gradient descent (the setting of the stability theory:
with mini-batches the 2/eta threshold is not sharp) on the squared loss to one-hot targets
(Cohen, Kaur, Li, Kolter & Talwalkar, "Gradient Descent on Neural Networks Typically Occurs at
the Edge of Stability", ICLR 2021, use the squared loss for the same reason: with
cross-entropy the curvature collapses as the margins grow). Each schedule (constant, step,
cosine) starts from the same initialization with the same peak learning rate and number of
steps. At evenly spaced checkpoints the Hessian of the full-batch training loss (the very
objective GD descends) is measured: top-k eigenvalues by Lanczos, the trace by Hutch++ with an
interval. Beside each, the linear-stability threshold ``2 / eta`` of the learning rate of the
step just taken (theory: :func:`multilens.theory.curvature.eos_threshold`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from multilens.data import load_digits_split
from multilens.lenses.curvature.functional import FlatModel
from multilens.lenses.curvature.hvp import CurvatureOperator
from multilens.linalg import hutchpp, lanczos
from multilens.models import MLPSpec, build_mlp
from multilens.seeding import derive_seed
from multilens.theory.curvature import eos_threshold
from multilens.train import TrainConfig, train_model
from multilens.train.loop import lr_at


@dataclass(frozen=True)
class Checkpoint:
    step: int
    lr: float  # learning rate of the step that produced this iterate (step 0: the first step's)
    threshold: float  # 2 / lr
    train_loss: float
    top: tuple[float, ...]
    residuals: tuple[float, ...]
    converged: bool
    n_matvec: int
    trace: float
    trace_stderr: float
    trace_ci_low: float
    trace_ci_high: float

    @property
    def ratio(self) -> float:
        """lambda_max / (2 / eta): 1 is the edge of stability."""
        return self.top[0] / self.threshold if math.isfinite(self.threshold) else math.nan

    def to_dict(self) -> dict[str, Any]:
        f = lambda x: float(x) if math.isfinite(x) else None  # noqa: E731
        return {
            "step": self.step,
            "lr": f(self.lr),
            "two_over_lr": f(self.threshold),
            "ratio_to_threshold": f(self.ratio),
            "train_loss": f(self.train_loss),
            "top_eigenvalues": [f(v) for v in self.top],
            "residuals": [f(v) for v in self.residuals],
            "converged": self.converged,
            "n_matvec": self.n_matvec,
            "trace": f(self.trace),
            "trace_stderr": f(self.trace_stderr),
            "trace_ci_low": f(self.trace_ci_low),
            "trace_ci_high": f(self.trace_ci_high),
        }


@dataclass(frozen=True)
class ScheduleRun:
    schedule: str
    checkpoints: tuple[Checkpoint, ...]
    diverged: bool
    final_loss: float
    steps: int
    wall_time_s: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "schedule": self.schedule,
            "diverged": self.diverged,
            "final_loss": self.final_loss if math.isfinite(self.final_loss) else None,
            "steps": self.steps,
            "wall_time_s": self.wall_time_s,
            "checkpoints": [c.to_dict() for c in self.checkpoints],
        }


def measure_checkpoint(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, k: int, tol: float, trace_matvecs: int, seed: int
) -> tuple[tuple[float, ...], tuple[float, ...], bool, int, Any, float]:
    """Top-k eigenvalues and Hutch++ trace of the full-batch squared-loss Hessian at ``model``."""
    flat = FlatModel(model, nn.functional.mse_loss, (x, y), dtype=torch.float64)
    op = CurvatureOperator(flat, "hessian")
    eig = lanczos(op, op.dim, k, "LA", tol=tol, seed=derive_seed(seed, "eig"), return_eigenvectors=False)
    tr = hutchpp(op, op.dim, trace_matvecs, seed=derive_seed(seed, "trace"))
    return (
        tuple(float(v) for v in eig.eigenvalues),
        tuple(float(r) for r in eig.residuals),
        eig.converged,
        eig.n_matvec,
        tr,
        flat.loss0,
    )


def run_schedule(
    schedule: str,
    *,
    widths: tuple[int, ...],
    activation: str,
    n_train: int,
    lr: float,
    steps: int,
    n_checkpoints: int,
    step_gamma: float,
    k: int,
    tol: float,
    trace_matvecs: int,
    seed: int,
) -> ScheduleRun:
    """Train one schedule by full-batch GD and measure the Hessian at ``n_checkpoints + 1`` points."""
    data = load_digits_split(seed, n_train=n_train)
    x = data.x_train
    y = nn.functional.one_hot(data.y_train, data.n_classes).to(torch.float32)  # (n, 10) targets
    model = build_mlp(
        MLPSpec(data.d_in, widths, data.n_classes, activation), seed=derive_seed(seed, "along-training-init")
    )
    cfg = TrainConfig(
        optimizer="sgd",
        lr=lr,
        batch_size=int(x.shape[0]),
        epochs=steps,
        schedule=schedule,
        step_gamma=step_gamma,
        loss="mse",
    )
    every = max(1, steps // n_checkpoints)
    cps: list[Checkpoint] = []

    def record(step: int, m: nn.Module) -> None:
        top, res, ok, nmv, tr, loss = measure_checkpoint(
            m, x, y, k=k, tol=tol, trace_matvecs=trace_matvecs, seed=derive_seed(seed, schedule, step)
        )
        eta = lr_at(cfg, max(step - 1, 0), steps)
        thr = eos_threshold(eta) if eta > 0 else math.inf
        cps.append(
            Checkpoint(
                step, eta, thr, loss, top, res, ok, nmv + tr.n_matvec, tr.estimate, tr.stderr, tr.ci_low, tr.ci_high
            )
        )

    t0 = time.perf_counter()
    record(0, model)
    res = train_model(
        model, x, y, cfg, seed=derive_seed(seed, "along-training-order"), callback=record, callback_every=every
    )
    return ScheduleRun(schedule, tuple(cps), res.diverged, res.final_train_loss, res.steps, time.perf_counter() - t0)


def max_ratio(run: ScheduleRun) -> float:
    """Largest lambda_max / (2/eta) over the GD iterates (step >= 1; step 0 is the initialization).

    The initialization was not produced by GD at that step size: when it is sharper than 2/eta
    GD is unstable at first and the sharpness drops (the "catapult", Lewkowycz et al. 2020);
    :func:`init_ratio` reports it separately.
    """
    ratios = [c.ratio for c in run.checkpoints if c.step > 0 and math.isfinite(c.ratio)]
    return max(ratios) if ratios else math.nan


def init_ratio(run: ScheduleRun) -> float:
    first = run.checkpoints[0]
    return first.ratio if first.step == 0 else math.nan


def relative_change(run: ScheduleRun) -> float:
    """max/min of lambda_max over the checkpoints, minus 1: how much the Hessian really moved."""
    tops = np.array([c.top[0] for c in run.checkpoints])
    return float(tops.max() / max(tops.min(), 1e-300) - 1.0)
