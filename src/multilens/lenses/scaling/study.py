"""The scaling study: an iso-FLOP sweep design and the single training run it is made of.

Design (Hoffmann et al. 2022, Approach 2 grids, fitted by Approach 3): for each compute budget C,
every model width whose token count D = C / (6 N) falls inside [min_examples, max_examples] is
trained once per seed on D fresh examples (one pass, no repeats, so D is exactly the number of
training examples seen). N and D therefore vary jointly and independently across the grid rather
than being tied to each other. Training FLOPs are counted as C = 6 N D; the exact forward count
from multilens.models.forward_flops is recorded beside it.

The teacher-student task has a known Bayes risk (noise_std**2), which the fitted loss floor is
checked against.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch

from multilens.data import TeacherStudentTask, load_digits_split
from multilens.errors import ConfigError
from multilens.validation import check_int, check_positive
from multilens.models import MLPSpec, build_mlp, forward_flops, n_params
from multilens.seeding import derive_seed, torch_generator
from multilens.train import TrainConfig, evaluate, train_model

TASK = "multilens.lenses.scaling.study:scaling_run"


@dataclass(frozen=True)
class ScalingConfig:
    schema_version: int = 1
    task: Literal["teacher_student", "digits"] = "teacher_student"
    budgets: tuple[float, ...] = (3.16e6, 1e7, 3.16e7, 1e8, 3.16e8, 1e9)
    widths: tuple[int, ...] = (4, 8, 16, 32, 64, 128, 256, 512, 1024)
    depth: int = 1
    min_examples: int = 1024
    max_examples: int = 131072
    seeds: int = 3
    d_in: int = 16
    teacher_width: int = 256
    teacher_decay: float = 1.0
    teacher_input_scale: float = 0.5  # a milder teacher: loss follows a power law to its floor (1.0 plateaus first)
    noise_std: float = 0.1
    n_test: int = 8192
    optimizer: Literal["sgd", "adam"] = "adam"
    lr: float = 1e-2
    batch_size: int = 32
    schedule: Literal["constant", "cosine", "step"] = "cosine"
    bootstrap: int = 200
    n_starts_grid: Literal["full", "coarse"] = "full"
    ci_level: float = 0.95

    def __post_init__(self) -> None:
        if len(self.budgets) < 3:
            raise ConfigError(f"`scaling.budgets` needs at least 3 compute budgets; got {len(self.budgets)}.")
        for i, b in enumerate(self.budgets):
            check_positive(f"scaling.budgets[{i}]", b)
        if list(self.budgets) != sorted(self.budgets):
            raise ConfigError("`scaling.budgets` must be increasing; sort them.")
        if len(self.widths) < 2:
            raise ConfigError("`scaling.widths` needs at least 2 widths.")
        for i, w in enumerate(self.widths):
            check_int(f"scaling.widths[{i}]", w, 1)
        check_int("scaling.depth", self.depth, 1)
        check_int("scaling.min_examples", self.min_examples, 1)
        check_int("scaling.max_examples", self.max_examples, self.min_examples)
        check_int("scaling.seeds", self.seeds, 1)
        check_int("scaling.bootstrap", self.bootstrap, 10)
        check_int("scaling.n_test", self.n_test, 16)
        check_positive("scaling.lr", self.lr)
        if not 0.5 < self.ci_level < 1.0:
            raise ConfigError(f"`scaling.ci_level` must be in (0.5, 1); got {self.ci_level}.")
        if self.noise_std < 0:
            raise ConfigError(f"`scaling.noise_std` must be >= 0; got {self.noise_std}.")

    @classmethod
    def for_profile(cls, profile: str) -> ScalingConfig:
        if profile == "smoke":
            return cls(
                budgets=(1e6, 1e7, 1e8),
                widths=(2, 4, 8, 16, 32, 64),
                seeds=2,
                max_examples=32768,
                n_test=2048,
                bootstrap=30,
                n_starts_grid="coarse",
            )
        if profile == "quick":
            return cls()
        if profile == "full":
            return cls(
                budgets=(1e6, 2e6, 4e6, 1e7, 2e7, 4e7, 1e8, 2e8, 4e8, 1e9, 2e9, 4e9),
                widths=(2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048),
                max_examples=524288,
                seeds=5,
                bootstrap=1000,
            )
        raise ConfigError(f"`profile` must be smoke, quick or full; got {profile!r}.")

    def model_spec(self, width: int, d_in: int, d_out: int) -> MLPSpec:
        return MLPSpec(d_in, (width,) * self.depth, d_out, activation="relu")

    @property
    def data_shape(self) -> tuple[int, int]:
        return (self.d_in, 1) if self.task == "teacher_student" else (64, 10)


def design(cfg: ScalingConfig) -> list[dict[str, Any]]:
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
        # The test set is the same for every run (its seed does not depend on the run's seed).
        xt, yt = task.sample(spec["n_test"], seed=derive_seed(0, "test"))
        d_in, d_out = spec["d_in"], 1
    else:
        split = load_digits_split(seed=0)
        g = torch_generator(derive_seed(seed, "digits-order"))
        reps = math.ceil(spec["D"] / split.x_train.shape[0])
        idx = torch.cat([torch.randperm(split.x_train.shape[0], generator=g) for _ in range(reps)])[: spec["D"]]
        x, y, xt, yt = split.x_train[idx], split.y_train[idx], split.x_test, split.y_test
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
        "diverged": tr.diverged,
        "train_wall_time_s": time.perf_counter() - t0,
    }
    if "accuracy" in ev:
        metrics["test_accuracy"] = ev["accuracy"]
    curves = {"step": list(tr.curve_steps), "train_loss": [v if math.isfinite(v) else None for v in tr.curve_loss]}
    return {"metrics": metrics, "curves": curves}


def config_dict(cfg: ScalingConfig) -> dict[str, Any]:
    return asdict(cfg)
