"""The training loop: explicit seeds, no global RNG, a learning-rate schedule and callbacks.

Determinism: batch order comes from a local torch.Generator; with a fixed thread count (the
executors set one thread per worker) the same config and seed give bit-identical losses.
Divergence (a non-finite loss) stops training and is reported in the result, never hidden.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from multilens.errors import ConfigError
from multilens.seeding import torch_generator
from multilens.validation import check_int, check_positive


@dataclass(frozen=True)
class TrainConfig:
    optimizer: Literal["sgd", "adam"] = "adam"
    lr: float = 1e-3
    batch_size: int = 64
    epochs: int = 1
    weight_decay: float = 0.0
    momentum: float = 0.0
    schedule: Literal["constant", "cosine", "step"] = "constant"
    step_gamma: float = 0.1  # factor at each third of training for "step"
    loss: Literal["mse", "ce"] = "mse"
    n_curve_points: int = 20  # training-loss curve resolution

    def __post_init__(self) -> None:
        check_positive("lr", self.lr)
        check_int("batch_size", self.batch_size, 1)
        check_int("epochs", self.epochs, 1)
        if self.weight_decay < 0:
            raise ConfigError(f"`weight_decay` must be >= 0; got {self.weight_decay}.")
        if self.optimizer not in ("sgd", "adam"):
            raise ConfigError(f"`optimizer` must be 'sgd' or 'adam'; got {self.optimizer!r}.")
        if self.schedule not in ("constant", "cosine", "step"):
            raise ConfigError(f"`schedule` must be constant, cosine or step; got {self.schedule!r}.")
        if self.loss not in ("mse", "ce"):
            raise ConfigError(f"`loss` must be 'mse' or 'ce'; got {self.loss!r}.")


@dataclass(frozen=True)
class TrainResult:
    final_train_loss: float
    steps: int
    examples_seen: int
    diverged: bool
    wall_time_s: float
    curve_steps: tuple[int, ...] = ()
    curve_loss: tuple[float, ...] = ()
    lrs: tuple[float, ...] = field(default=(), repr=False)


def loss_function(kind: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return nn.functional.mse_loss if kind == "mse" else nn.functional.cross_entropy


def lr_at(cfg: TrainConfig, step: int, total: int) -> float:
    """Learning rate at ``step`` of ``total`` under the configured schedule."""
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "cosine":
        return 0.5 * cfg.lr * (1.0 + math.cos(math.pi * step / max(total, 1)))
    return cfg.lr * cfg.step_gamma ** int(3 * step / max(total, 1))


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def train_model(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    seed: int,
    callback: Callable[[int, nn.Module], None] | None = None,
    callback_every: int = 0,
) -> TrainResult:
    """Train ``model`` in place on (x, y) for ``cfg.epochs`` epochs of shuffled mini-batches.

    ``callback(step, model)`` runs every ``callback_every`` steps (and at the end) when given,
    e.g. to measure curvature along training.
    """
    n = int(x.shape[0])
    if n == 0:
        raise ConfigError("`x` is empty; training needs at least one example.")
    if int(y.shape[0]) != n:
        raise ConfigError(f"`y` has {y.shape[0]} rows but `x` has {n}; they must match.")
    g = torch_generator(seed)
    loss_fn = loss_function(cfg.loss)
    opt = _optimizer(model, cfg)
    bs = min(cfg.batch_size, n)
    per_epoch = math.ceil(n / bs)
    total = per_epoch * cfg.epochs
    every = max(1, total // max(cfg.n_curve_points, 1))
    curve_s: list[int] = []
    curve_l: list[float] = []
    lrs: list[float] = []
    t0 = time.perf_counter()
    step = 0
    seen = 0
    diverged = False
    last = float("nan")
    model.train()
    for _ in range(cfg.epochs):
        perm = torch.randperm(n, generator=g)
        for b in range(per_epoch):
            idx = perm[b * bs : (b + 1) * bs]
            lr = lr_at(cfg, step, total)
            for group in opt.param_groups:
                group["lr"] = lr
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            if not torch.isfinite(loss):
                diverged = True
                break
            loss.backward()
            opt.step()
            step += 1
            seen += int(idx.numel())
            last = float(loss.detach())
            if step % every == 0 or step == total:
                curve_s.append(step)
                curve_l.append(last)
                lrs.append(lr)
            if callback is not None and callback_every and step % callback_every == 0:
                callback(step, model)
        if diverged:
            break
    if callback is not None and callback_every and step % callback_every != 0:
        callback(step, model)
    return TrainResult(last, step, seen, diverged, time.perf_counter() - t0, tuple(curve_s), tuple(curve_l), tuple(lrs))


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str, batch: int = 4096) -> dict[str, float]:
    """Mean loss (and accuracy for classification) over (x, y) in eval mode."""
    model.eval()
    fn = loss_function(loss)
    total, correct, n = 0.0, 0, int(x.shape[0])
    for i in range(0, n, batch):
        out = model(x[i : i + batch])
        total += float(fn(out, y[i : i + batch], reduction="sum"))
        if loss == "ce":
            correct += int((out.argmax(dim=1) == y[i : i + batch]).sum())
    model.train()
    # mse_loss(reduction="sum") sums over every output coordinate; the mean is per coordinate.
    res = {"loss": total / (n if loss == "ce" else int(y.numel()))}
    if loss == "ce":
        res["accuracy"] = correct / n
    return res
