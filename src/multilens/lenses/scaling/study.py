"""The scaling study: an iso-FLOP sweep design and the single training run it is made of.

Design (Hoffmann et al. 2022, Approach 2 grids, fitted by Approach 3): for each compute budget C,
every model width whose token count D = C / (6 N) falls inside [min_examples, max_examples] is
trained once per seed for one pass over D examples. For the shared data family
(:class:`multilens.data.family.FamilySpec`, the default task: 2-class teacher-student
classification on [-1, 1]^16 with sampled labels, cross-entropy loss) and the teacher-student
regression task these are D fresh draws (D distinct examples); for digits they are drawn from
the ~1.4k training images, so examples repeat: each run records how many distinct examples it
saw (``distinct_examples``), and the lens checks the repeat count D / distinct against the
assumption that D counts fresh data.
N and D therefore vary jointly and independently across the grid rather than being tied to
each other. Training FLOPs are counted as C = 6 N D; the exact forward count
from multilens.models.forward_flops is recorded beside it.

The family has a known cross-entropy Bayes risk (Monte Carlo, with an interval) and the
teacher-student regression task a known noise floor (noise_std**2); the fitted loss floor is
checked against them. On the family each run also records its loss on its own training examples
(``train_loss``, for the generalization gap) and on the fixed validation split (``val_loss``, what
per-width learning-rate tuning selects on; the fixed test split gives ``test_loss``).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from multilens.data import TeacherStudentTask, load_digits_split
from multilens.data.family import FamilySpec
from multilens.errors import ConfigError
from multilens.lenses.scaling.settings import Settings
from multilens.models import MLPSpec, build_mlp, forward_flops, n_params
from multilens.seeding import derive_seed, torch_generator
from multilens.train import TrainConfig, evaluate, train_model

TASK = "multilens.lenses.scaling.study:scaling_run"


# The sweep is configured by the lens settings; the old name is kept for callers of the sweep.
ScalingConfig = Settings


def run_config(
    cfg: Settings,
    budget: float,
    width: int,
    *,
    lr: float | None = None,
    optimizer: str | None = None,
    batch_size: int | None = None,
) -> dict[str, Any] | None:
    """The config of one run of the grid (None when D = C/(6N) falls outside the example range).

    ``lr``, ``optimizer`` and ``batch_size`` override the recipe (per-width tuned learning rate,
    the invariance part's variants); everything else comes from the settings.
    """
    d_in, d_out = cfg.data_shape
    n = n_params(cfg.model_spec(width, d_in, d_out))
    d = int(round(budget / (6 * n)))
    if not cfg.min_examples <= d <= cfg.max_examples:
        return None
    run: dict[str, Any] = {
        "task": cfg.task,
        "budget": float(budget),
        "width": width,
        "depth": cfg.depth,
        "N": n,
        "D": d,
    }
    if cfg.task == "family":
        run["family"] = FamilySpec().to_dict()
    else:  # teacher_student and digits keep the keys their runs were stored under before
        run |= {
            "d_in": cfg.d_in,
            "teacher_width": cfg.teacher_width,
            "teacher_decay": cfg.teacher_decay,
            "teacher_input_scale": cfg.teacher_input_scale,
            "noise_std": cfg.noise_std,
            "n_test": cfg.n_test,
        }
    run["train"] = {
        "optimizer": optimizer or cfg.optimizer,
        "lr": float(cfg.lr if lr is None else lr),
        "batch_size": int(batch_size or cfg.batch_size),
        "schedule": cfg.schedule,
    }
    return run


def design(cfg: Settings, lrs: dict[int, float] | None = None) -> list[dict[str, Any]]:
    """The iso-FLOP grid: one run config per (budget, width) with D = C/(6N) in range.

    ``lrs`` maps a width to its tuned learning rate (missing widths, or None: the settings' ``lr``).
    """
    runs = []
    for c in cfg.budgets:
        for w in cfg.widths:
            r = run_config(cfg, c, w, lr=None if lrs is None else lrs.get(w))
            if r is not None:
                runs.append(r)
    per_budget = {c: sum(1 for r in runs if r["budget"] == c) for c in cfg.budgets}
    thin = [c for c, k in per_budget.items() if k < 2]
    if thin:
        raise ConfigError(
            f"`scaling.budgets` {thin} admit fewer than 2 widths with D in "
            f"[{cfg.min_examples}, {cfg.max_examples}]; widen `scaling.widths` or the example range."
        )
    return runs


COST_N0 = 1e4  # run time ~ D x (1 + N / N0): per-step overhead below N0 parameters, FLOPs above (2-core CPU fit)


def run_cost(config: dict[str, Any]) -> float:
    """An estimate of a run's time in arbitrary units (used only to start the longest runs first).

    One pass over D examples: time ~ a D + b N D; a least-squares fit of the quick sweep's run times
    on this class of machine gave b / a = 1 / 1e4 (correlation 0.99 with the measured times).
    """
    n, d = config.get("N"), config.get("D")
    if not isinstance(n, (int, float)) or not isinstance(d, (int, float)):
        return 1.0
    return float(d) * (1.0 + float(n) / COST_N0)


def distinct_rows(x: torch.Tensor) -> int:
    """Number of distinct rows of ``x``, exactly (rows compared as raw bytes; ~10x faster than torch.unique)."""
    a = np.ascontiguousarray(x.detach().cpu().numpy().reshape(len(x), -1))
    return int(np.unique(a.view(np.dtype((np.void, a.dtype.itemsize * a.shape[1]))).ravel()).size)


def scaling_run(spec: dict[str, Any]) -> dict[str, Any]:
    """Train one model of the grid and measure its held-out loss. Pure function of ``spec``."""
    seed = int(spec["seed"])
    tcfg = TrainConfig(loss="mse" if spec["task"] == "teacher_student" else "ce", epochs=1, **spec["train"])
    t0 = time.perf_counter()
    xv = yv = None
    if spec["task"] == "family":
        fam = FamilySpec.from_dict(spec["family"])
        x, y = fam.train(spec["D"], seed=seed)
        distinct = distinct_rows(x)
        # The validation and test splits are fixed: the same for every run, seed and phase.
        xv, yv = fam.val()
        xt, yt = fam.test()
        d_in, d_out = fam.d_in, fam.n_classes
    elif spec["task"] == "teacher_student":
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
        xv, yv = task.sample(spec["n_test"], seed=derive_seed(0, "val"))
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
    ok = not tr.diverged
    train_loss = tr.final_train_loss if math.isfinite(tr.final_train_loss) else None
    val_loss = None
    if xv is not None and ok:
        # The loss on the run's own training examples (for the generalization gap) and on the fixed validation
        # split (what learning-rate tuning selects on; the test split is never used for a choice).
        train_loss = evaluate(model, x, y, tcfg.loss)["loss"]
        val_loss = evaluate(model, xv, yv, tcfg.loss)["loss"]
    split_offset = None
    if spec["task"] == "family":
        # The teacher's own CE on the fixed test split minus on this run's training sample: how much easier the
        # test split's sampled labels are than the training sample's (a split effect, not generalization).
        ce = torch.nn.functional.cross_entropy
        split_offset = float(ce(fam.logits(xt), yt)) - float(ce(fam.logits(x), y))
    metrics = {
        "N": n,
        "D": int(tr.examples_seen),
        "C": 6.0 * n * tr.examples_seen,
        "C_exact_fwd_bwd": 3.0 * forward_flops(mspec) * tr.examples_seen,
        "budget": spec["budget"],
        "width": spec["width"],
        "test_loss": ev["loss"] if ok and math.isfinite(ev["loss"]) else None,
        "train_loss": train_loss,
        "val_loss": val_loss if val_loss is not None and math.isfinite(val_loss) else None,
        "split_offset": split_offset,
        "lr": spec["train"]["lr"],
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
