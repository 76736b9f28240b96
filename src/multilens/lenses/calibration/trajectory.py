"""The bundled subject of the calibration lens (C.15): a digits MLP trained far past zero training error.

A one-hidden-layer ReLU MLP is trained on scikit-learn digits by full-batch Adam on the
cross-entropy, long after every training example is classified correctly. The training risk is
evaluated every ``eval_every`` steps; a checkpoint is kept the first time it falls below each of
the ``risk_levels`` (checkpoints at matched training risk, so two trajectories, optimisers or
seeds are compared at the same training risk rather than the same step count), plus the first
step with zero training error. At each checkpoint the logits of the training, validation, test
and shifted-test inputs are stored (the shift is additive Gaussian pixel noise on the test
inputs, in standardized units), together with the top eigenvalue of the Hessian of the
training loss (Lanczos, via :func:`multilens.curvature.hessian_eigenvalues`), so calibration
drift and curvature are seen along the same trajectory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from multilens.data import load_digits_split
from multilens.data.shift import gaussian_corruption
from multilens.models import MLPSpec, build_mlp
from multilens.seeding import as_generator, derive_seed


@dataclass(frozen=True)
class Predictions:
    """Labels and logits (or probabilities) of one split; ``groups`` are optional subgroup ids."""

    labels: np.ndarray
    logits: np.ndarray | None = None
    probs: np.ndarray | None = None
    groups: np.ndarray | None = None


@dataclass(frozen=True)
class Checkpoint:
    step: int
    target_risk: float | None  # the training-risk level this checkpoint matched (None: other reason)
    reason: str  # "risk <= 0.01", "zero training error", "last"
    train_loss: float
    train_error: float
    train: Predictions
    val: Predictions
    test: Predictions
    shifted: Predictions | None = None
    top_hessian: float | None = None
    top_hessian_converged: bool | None = None


def _logits(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(x).double().numpy()


def train_past_interpolation(
    *, width: int, lr: float, max_steps: int, eval_every: int, risk_levels: tuple[float, ...], n_val: int,
    shift_noise: float, hessian: bool, seed: int, optimizer: str = "adam",
) -> tuple[tuple[Checkpoint, ...], dict[str, object]]:  # fmt: skip
    """Train once and return the checkpoints (in step order) and a description of the run.

    ``optimizer``: "adam" (full-batch Adam at ``lr``) or "sgd" (full-batch SGD, momentum 0.9, at
    ``lr``). The split, the initialisation and the shift noise depend on ``seed`` only, so two
    optimizers with the same seed start from the same network on the same data.
    """
    split = load_digits_split(derive_seed(seed, "split"), test_fraction=0.5)
    rng = as_generator(derive_seed(seed, "val-test"))
    perm = rng.permutation(int(split.x_test.shape[0]))
    vi, ti = perm[:n_val], perm[n_val:]
    x_tr, y_tr = split.x_train, split.y_train
    x_va, y_va = split.x_test[vi], split.y_test[vi]
    x_te, y_te = split.x_test[ti], split.y_test[ti]
    x_sh = torch.as_tensor(
        gaussian_corruption(x_te.numpy(), shift_noise, derive_seed(seed, "shift")), dtype=torch.float32
    )
    # Subgroups for subgroup calibration: tertiles of the mean standardized pixel value ("ink").
    ink_tr = x_tr.numpy().mean(1)
    cuts = np.quantile(ink_tr, [1 / 3, 2 / 3])
    grp = lambda x: np.searchsorted(cuts, x.numpy().mean(1))  # noqa: E731
    model = build_mlp(MLPSpec(split.d_in, (width,), split.n_classes), derive_seed(seed, "init"))
    if optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    else:
        raise ValueError(f"`optimizer` must be 'adam' or 'sgd'; got {optimizer!r}.")
    loss_fn = nn.functional.cross_entropy
    levels = sorted(risk_levels, reverse=True)
    next_level = 0
    seen_zero = False
    ckpts: list[Checkpoint] = []
    y_np = {k: v.numpy().astype(np.int64) for k, v in (("tr", y_tr), ("va", y_va), ("te", y_te))}

    def snapshot(step: int, target: float | None, reason: str, loss: float, err: float) -> None:
        top, conv = None, None
        if hessian:
            from multilens.curvature import hessian_eigenvalues

            eig = hessian_eigenvalues(model, loss_fn, (x_tr, y_tr), k=1, tol=1e-6, seed=derive_seed(seed, "hess", step))
            top, conv = float(eig.eigenvalues[0]), bool(eig.converged)
        ckpts.append(
            Checkpoint(
                step, target, reason, loss, err,
                Predictions(y_np["tr"], _logits(model, x_tr)),
                Predictions(y_np["va"], _logits(model, x_va), groups=grp(x_va)),
                Predictions(y_np["te"], _logits(model, x_te), groups=grp(x_te)),
                Predictions(y_np["te"], _logits(model, x_sh), groups=grp(x_te)),
                top, conv,
            )
        )  # fmt: skip

    step = 0
    loss_val, err = math.nan, math.nan
    model.train()
    while step < max_steps:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x_tr), y_tr)
        loss.backward()
        opt.step()
        step += 1
        if step % eval_every == 0 or step == max_steps:
            with torch.no_grad():
                out = model(x_tr)
                loss_val = float(loss_fn(out, y_tr))
                err = float((out.argmax(1) != y_tr).double().mean())
            if not seen_zero and err == 0.0:
                seen_zero = True
                snapshot(step, None, "zero training error", loss_val, err)
            while next_level < len(levels) and loss_val <= levels[next_level]:
                snapshot(step, levels[next_level], f"training risk <= {levels[next_level]:g}", loss_val, err)
                next_level += 1
            if next_level == len(levels) and seen_zero:
                break
    if not ckpts or ckpts[-1].step != step:
        snapshot(step, None, "last", loss_val, err)
    info = {
        "n_train": int(x_tr.shape[0]), "n_val": int(x_va.shape[0]), "n_test": int(x_te.shape[0]),
        "optimizer": optimizer, "width": width, "lr": lr, "steps": step, "max_steps": max_steps,
        "levels_reached": next_level, "levels": list(levels), "shift": f"Gaussian pixel noise, std {shift_noise:g}",
        "digits_checksum": split.checksum,
    }  # fmt: skip
    return tuple(ckpts), info
