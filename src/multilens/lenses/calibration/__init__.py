"""Calibration lens: how far a classifier's confidence is from its accuracy, and what repairs it.

Chapter anchors: C.15 (line 277: calibration drift after interpolation, matched-risk checkpoints,
stopping rules, post-hoc calibration, subgroups, shift), worked example 4 (lines 194-195:
margins grow past zero training error), the expansion on ECE and temperature scaling (lines
1467-1472). Definitions and the binning convention: :mod:`multilens.lenses.calibration.metrics`.

**Subject** (:class:`CalibrationSubject`): predictions, not a model, so it works for any model in
any framework: ``val`` and ``test`` :class:`Predictions` (labels with logits or probabilities,
optional subgroup ids); optionally ``shifted`` test predictions and a ``trajectory`` of
:class:`Checkpoint` s (predictions at checkpoints of one training run). Post-hoc calibrators are
fitted on ``val`` and evaluated on ``test``; parts that need what the subject lacks (logits,
groups, a trajectory) say so in a note and measure nothing.

    >>> from multilens.lenses.calibration import CalibrationSubject, Predictions, Settings, measure
    >>> subj = CalibrationSubject(val=Predictions(y_val, logits=z_val), test=Predictions(y_test, logits=z_test))
    >>> result = measure(subj, Settings.for_profile("quick"), seed=0)

**Default subject**: a digits MLP trained far past zero training error with checkpoints at
matched training risk (:mod:`multilens.lenses.calibration.trajectory`); its last iterate is the
main subject (what the gates judge).

**Parts**: ``metrics`` (ECE equal-width and equal-mass, classwise ECE, MCE, NLL, Brier, debiased
error, with bootstrap intervals; reliability diagram), ``temperature`` (temperature, vector and
matrix scaling), ``selective`` (risk-coverage, AURC), ``subgroups`` (per class, per group),
``trajectory`` (C.15).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

from multilens.errors import ConfigError
from multilens.lenses.calibration.parts import (
    LENS,
    metrics_part,
    selective_part,
    subgroups_part,
    temperature_part,
    trajectory_part,
)
from multilens.lenses.calibration.trajectory import Checkpoint, Predictions, train_past_interpolation
from multilens.lenses.contract import Runtime, finish, part_seed, run_parts
from multilens.results import LensResult
from multilens.validation import (
    check_choice,
    check_int,
    check_nonnegative,
    check_open_unit,
    check_positive,
    check_positive_list,
)

PROFILES = ("smoke", "quick", "full")


def _common(s: Any, where: str) -> None:
    check_int(f"{where}.n_bins", s.n_bins, 1)
    check_int(f"{where}.n_boot", s.n_boot, 20)
    check_open_unit(f"{where}.level", s.level)


@dataclass(frozen=True)
class MetricsSettings:
    n_bins: int = 15
    n_boot: int = 500
    level: float = 0.95

    def __post_init__(self) -> None:
        _common(self, "metrics")


@dataclass(frozen=True)
class TemperatureSettings:
    n_bins: int = 15
    n_boot: int = 200
    level: float = 0.95
    planted_temperature: float = 2.0  # the self-test's planted T0
    variants: tuple[str, ...] = ("vector", "matrix")
    l2: float = 1e-3  # penalty of vector/matrix scaling towards the identity

    def __post_init__(self) -> None:
        _common(self, "temperature")
        check_positive("temperature.planted_temperature", self.planted_temperature)
        for i, v in enumerate(self.variants):
            check_choice(f"temperature.variants[{i}]", v, ("vector", "matrix"))
        check_nonnegative("temperature.l2", self.l2)


@dataclass(frozen=True)
class SelectiveSettings:
    n_bins: int = 15
    n_boot: int = 500
    level: float = 0.95
    coverage: float = 0.8  # selective risk reported at this coverage

    def __post_init__(self) -> None:
        _common(self, "selective")
        check_open_unit("selective.coverage", self.coverage)


@dataclass(frozen=True)
class SubgroupsSettings:
    n_bins: int = 10
    n_boot: int = 300
    level: float = 0.95
    max_gap: float = 0.1  # worst-group ECE may exceed the overall ECE by at most this (fixed in advance)

    def __post_init__(self) -> None:
        _common(self, "subgroups")
        check_open_unit("subgroups.max_gap", self.max_gap)


@dataclass(frozen=True)
class TrajectorySettings:
    n_bins: int = 15
    n_boot: int = 300
    level: float = 0.95

    def __post_init__(self) -> None:
        _common(self, "trajectory")


@dataclass(frozen=True)
class Settings:
    """The default subject (digits MLP past interpolation) and one table per part."""

    schema_version: int = 1
    width: int = 128
    lr: float = 3e-3
    max_steps: int = 6000
    eval_every: int = 10
    risk_levels: tuple[float, ...] = (0.3, 0.1, 0.03, 0.01, 0.003, 0.001, 3e-4, 1e-4)
    n_val: int = 400
    shift_noise: float = 1.0  # std of the Gaussian pixel noise of the shifted test set (standardized units)
    hessian: bool = True  # top Hessian eigenvalue at each checkpoint (curvature beside calibration)
    optimizers: tuple[str, ...] = ("adam", "sgd")  # the first is the main subject; others compared at matched risk
    # With the main model as subject (one saved model, trained one pass over fresh data: it never interpolates),
    # the trajectory part measures the digits reference trajectory instead of nothing (consistency 7's subject).
    reference_trajectory: bool = True
    sgd_lr: float = 0.3  # full-batch SGD with momentum 0.9 (Adam uses `lr`)
    metrics: MetricsSettings | None = MetricsSettings()
    temperature: TemperatureSettings | None = TemperatureSettings()
    selective: SelectiveSettings | None = SelectiveSettings()
    subgroups: SubgroupsSettings | None = SubgroupsSettings()
    trajectory: TrajectorySettings | None = TrajectorySettings()

    def __post_init__(self) -> None:
        check_int("width", self.width, 1)
        check_positive("lr", self.lr)
        check_int("max_steps", self.max_steps, 1)
        check_int("eval_every", self.eval_every, 1)
        check_positive_list("risk_levels", self.risk_levels)
        check_int("n_val", self.n_val, 10, 800)
        check_positive("shift_noise", self.shift_noise)
        if not self.optimizers:
            raise ConfigError("`optimizers` must list at least one of 'adam', 'sgd'.")
        for i, o in enumerate(self.optimizers):
            check_choice(f"optimizers[{i}]", o, ("adam", "sgd"))
        if len(set(self.optimizers)) != len(self.optimizers):
            raise ConfigError(f"`optimizers` lists one optimizer twice; got {self.optimizers}.")
        check_positive("sgd_lr", self.sgd_lr)

    @classmethod
    def for_profile(cls, profile: str) -> Settings:
        if profile not in PROFILES:
            raise ConfigError(f"`profile` must be one of {', '.join(PROFILES)}; got {profile!r}.")
        base = cls()
        if profile == "smoke":
            return replace(
                base, width=32, lr=1e-2, max_steps=300, risk_levels=(0.3, 0.03, 0.01, 0.003), hessian=True,
                metrics=MetricsSettings(n_boot=40), temperature=TemperatureSettings(n_boot=20, variants=("vector",)),
                selective=SelectiveSettings(n_boot=40), subgroups=SubgroupsSettings(n_boot=40),
                trajectory=TrajectorySettings(n_boot=40),
            )  # fmt: skip
        if profile == "quick":
            return base
        return replace(
            base, width=256, max_steps=20000, risk_levels=base.risk_levels + (3e-5, 1e-5),
            metrics=MetricsSettings(n_boot=2000), temperature=TemperatureSettings(n_boot=500),
            selective=SelectiveSettings(n_boot=2000), subgroups=SubgroupsSettings(n_boot=1000),
            trajectory=TrajectorySettings(n_boot=1000),
        )  # fmt: skip


@dataclass(frozen=True)
class CalibrationSubject:
    """Validation and test predictions, optionally shifted test predictions and a trajectory."""

    val: Predictions
    test: Predictions
    shifted: Predictions | None = None
    trajectory: tuple[Checkpoint, ...] = ()
    alternatives: dict[str, tuple[Checkpoint, ...]] = field(default_factory=dict)  # other optimizers' trajectories
    description: dict[str, Any] = field(default_factory=dict)


def default_subject(settings: Settings, *, seed: int, runtime: Runtime | None = None) -> CalibrationSubject:
    """The main model (``allocation.model_path``) on the family's val/test splits when an earlier phase saved one;
    else the digits MLP trained past interpolation, whose first optimizer's last checkpoint is the main subject."""
    path = (runtime.inputs if runtime is not None else {}).get("allocation.model_path")
    if path:
        from multilens.lenses.calibration.adapter import from_main_model

        main_model = from_main_model(path)
        if settings.trajectory is None or not settings.reference_trajectory:
            return main_model
        ref = digits_subject(settings, seed=seed)
        desc = dict(main_model.description) | {
            "main": ref.description.get("main", ""),
            "trajectory_subject": "the digits MLP trained past interpolation (the lens's reference): the main model "
            "is one saved model trained one pass over fresh data, which never interpolates",
        }
        return replace(main_model, trajectory=ref.trajectory, alternatives=ref.alternatives, description=desc)
    return digits_subject(settings, seed=seed)


def digits_subject(settings: Settings, *, seed: int) -> CalibrationSubject:
    """The digits MLP trained past interpolation by each optimizer; the first optimizer's last checkpoint is the
    subject and its checkpoints the trajectory, the other optimizers' the alternatives."""
    runs = {}
    for opt in settings.optimizers:
        runs[opt] = train_past_interpolation(
            width=settings.width, lr=settings.lr if opt == "adam" else settings.sgd_lr, max_steps=settings.max_steps,
            eval_every=settings.eval_every, risk_levels=settings.risk_levels, n_val=settings.n_val,
            shift_noise=settings.shift_noise, hessian=settings.hessian, seed=part_seed(seed, LENS, "subject"),
            optimizer=opt,
        )  # fmt: skip
    main = settings.optimizers[0]
    ckpts, info = runs[main]
    last = ckpts[-1]
    others = {k: v[0] for k, v in runs.items() if k != main}
    info = info | {"main": f"{main}, last iterate, step {last.step}",
                   "compared": {k: v[1] for k, v in runs.items() if k != main}}  # fmt: skip
    return CalibrationSubject(last.val, last.test, last.shifted, ckpts, others, info)


def subject_from_arrays(
    val_labels: Any, val_logits: Any, test_labels: Any, test_logits: Any, *, test_groups: Any = None
) -> CalibrationSubject:
    """A subject from plain arrays of logits (for probabilities build :class:`Predictions` directly)."""
    return CalibrationSubject(
        Predictions(val_labels, val_logits), Predictions(test_labels, test_logits, groups=test_groups)
    )


def measure(
    subject: CalibrationSubject, settings: Settings, *, seed: int, runtime: Runtime | None = None
) -> LensResult:
    t0 = time.perf_counter()
    parts, notes = run_parts(
        LENS,
        [
            ("metrics", settings.metrics, lambda ps, s: metrics_part(subject, ps, s)),
            ("temperature", settings.temperature, lambda ps, s: temperature_part(subject, ps, s)),
            ("selective", settings.selective, lambda ps, s: selective_part(subject, ps, s)),
            ("subgroups", settings.subgroups, lambda ps, s: subgroups_part(subject, ps, s)),
            ("trajectory", settings.trajectory, lambda ps, s: trajectory_part(subject, ps, s)),
        ],
        seed,
    )
    if "weights_sha256" in subject.description:  # the main model of the allocation phase
        notes.insert(0, f"subject: {subject.description.get('name')} (allocation.model_path)")
    return finish(LENS, parts, settings, seed, t0, notes=notes, data={"subject": dict(subject.description)})


__all__ = [
    "CalibrationSubject",
    "Checkpoint",
    "MetricsSettings",
    "Predictions",
    "SelectiveSettings",
    "Settings",
    "SubgroupsSettings",
    "TemperatureSettings",
    "TrajectorySettings",
    "default_subject",
    "measure",
    "subject_from_arrays",
]
