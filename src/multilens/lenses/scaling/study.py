"""The scaling study: an iso-FLOP sweep design and the single training run it is made of.

Design (Hoffmann et al. 2022, Approach 2 grids, fitted by Approach 3): for each compute budget C,
every model width whose token count D = C / (6 N) falls inside [min_examples, max_examples] is
trained once per seed for one pass over D examples. For the teacher-student task these are D
fresh draws (D distinct examples); for digits they are drawn from the ~1.4k training images, so
examples repeat: each run records how many distinct examples it saw (``distinct_examples``), and
the lens checks the repeat count D / distinct against the assumption that D counts fresh data.
N and D therefore vary jointly and independently across the grid rather than being tied to
each other. Training FLOPs are counted as C = 6 N D; the exact forward count
from multilens.models.forward_flops is recorded beside it.

The teacher-student task has a known Bayes risk (noise_std**2), which the fitted loss floor is
checked against.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from multilens.data import TeacherStudentTask, load_digits_split
from multilens.errors import ConfigError
from multilens.lenses.scaling.settings import Settings
from multilens.models import MLPSpec, build_mlp, forward_flops, n_params
from multilens.seeding import derive_seed, torch_generator
from multilens.train import TrainConfig, evaluate, train_model

TASK = "multilens.lenses.scaling.study:scaling_run"


# The sweep is configured by the lens settings; the old name is kept for callers of the sweep.
ScalingConfig = Settings


def design(cfg: Settings) -> list[dict[str, Any]]:
    """The iso-FLOP grid: one run config per (budget, width) with D = C/(6N) in range."""
    d_in, d_out = cfg.data_shape
    runs = []
    for c in cfg.budgets:
        for w in cfg.widths:
            spec = cfg.model_spec(w, d_in, d_out)
            n = n_params(spec)
            d = int(round(c / (6 * n)))
            if cfg.min_examples <= d <= cfg.max_examples:
                runs.append(
                    {
                        "task": cfg.task,
                        "budget": float(c),
                        "width": w,
                        "depth": cfg.depth,
                        "N": n,
                        "D": d,
                        "d_in": cfg.d_in,
                        "teacher_width": cfg.teacher_width,
                        "teacher_decay": cfg.teacher_decay,
                        "teacher_input_scale": cfg.teacher_input_scale,
                        "noise_std": cfg.noise_std,
                        "n_test": cfg.n_test,
                        "train": {
                            "optimizer": cfg.optimizer,
                            "lr": cfg.lr,
                            "batch_size": cfg.batch_size,
                            "schedule": cfg.schedule,
                        },
                    }
                )
    per_budget = {c: sum(1 for r in runs if r["budget"] == c) for c in cfg.budgets}
    thin = [c for c, k in per_budget.items() if k < 2]
    if thin:
        raise ConfigError(
            f"`scaling.budgets` {thin} admit fewer than 2 widths with D in "
            f"[{cfg.min_examples}, {cfg.max_examples}]; widen `scaling.widths` or the example range."
        )
    return runs


def distinct_rows(x: torch.Tensor) -> int:
    """Number of distinct rows of ``x``, exactly (rows compared as raw bytes; ~10x faster than torch.unique)."""
    a = np.ascontiguousarray(x.detach().cpu().numpy().reshape(len(x), -1))
    return int(np.unique(a.view(np.dtype((np.void, a.dtype.itemsize * a.shape[1]))).ravel()).size)


def scaling_run(spec: dict[str, Any]) -> dict[str, Any]:
    """Train one model of the grid and measure its held-out loss. Pure function of ``spec``."""
    seed = int(spec["seed"])
    tcfg = TrainConfig(loss="mse" if spec["task"] == "teacher_student" else "ce", epochs=1, **spec["train"])
    t0 = time.perf_counter()
    if spec["task"] == "teacher_student":
        task = TeacherStudentTask(
            spec["d_in"],
            spec["teacher_width"],
            spec["noise_std"],
            teacher_seed=0,
            decay=spec["teacher_decay"],
            input_scale=spec["teacher_input_scale"],
        )
        x, y = task.sample(spec["D"], seed=derive_seed(seed, "train", spec["D"]))
        distinct = distinct_rows(x)
        # The test set is the same for every run (its seed does not depend on the run's seed).
        xt, yt = task.sample(spec["n_test"], seed=derive_seed(0, "test"))
        d_in, d_out = spec["d_in"], 1
    else:
        split = load_digits_split(seed=0)
        g = torch_generator(derive_seed(seed, "digits-order"))
        reps = math.ceil(spec["D"] / split.x_train.shape[0])
        idx = torch.cat([torch.randperm(split.x_train.shape[0], generator=g) for _ in range(reps)])[: spec["D"]]
        x, y, xt, yt = split.x_train[idx], split.y_train[idx], split.x_test, split.y_test
        distinct = int(torch.unique(idx).numel())
        d_in, d_out = 64, 10
    mspec = MLPSpec(d_in, (spec["width"],) * spec["depth"], d_out, activation="relu")
    model = build_mlp(mspec, seed=derive_seed(seed, "init"))
    tr = train_model(model, x, y, tcfg, seed=derive_seed(seed, "order"))
    ev = evaluate(model, xt, yt, tcfg.loss)
    n = n_params(mspec)
    metrics = {
        "N": n,
        "D": int(tr.examples_seen),
        "C": 6.0 * n * tr.examples_seen,
        "C_exact_fwd_bwd": 3.0 * forward_flops(mspec) * tr.examples_seen,
        "budget": spec["budget"],
        "width": spec["width"],
        "test_loss": ev["loss"] if not tr.diverged else None,
        "train_loss": tr.final_train_loss if math.isfinite(tr.final_train_loss) else None,
        "steps": tr.steps,
        "distinct_examples": distinct,
        "diverged": tr.diverged,
        "train_wall_time_s": time.perf_counter() - t0,
    }
    if "accuracy" in ev:
        metrics["test_accuracy"] = ev["accuracy"]
    curves = {"step": list(tr.curve_steps), "train_loss": [v if math.isfinite(v) else None for v in tr.curve_loss]}
    return {"metrics": metrics, "curves": curves}


def config_dict(cfg: Settings) -> dict[str, Any]:
    return asdict(cfg)
