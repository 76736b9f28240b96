"""Settings of the scaling lens: the iso-FLOP sweep (the default subject) and one table per part.

Top-level fields describe the bundled sweep (task, budgets, widths, training recipe, seeds) and
the analysis every part shares (``bootstrap`` refits of the L(N, D) fit, ``ci_level``). Each
part has its own nested table (``[scaling.compute_law]``, ``[scaling.chinchilla]``,
``[scaling.regimes]``, ``[scaling.allocation]``, ``[scaling.approach2]``, ``[scaling.lr_tuning]``,
``[scaling.variables]``, ``[scaling.invariance]``); ``part = false`` switches a part off.

The sweep's design (task, budgets, widths, recipe, per-width lr tuning, peak band) is top level,
so switching a part off never changes the runs another part measures; the untuned comparison
sweep and the invariance variants are trained only when their part is on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from multilens.data.family import FamilySpec
from multilens.errors import ConfigError
from multilens.models import MLPSpec
from multilens.validation import check_int, check_positive

FAMILY = FamilySpec()  # the protocol's shared data family (the default task of the sweep)


def _check_unit_level(key: str, level: float) -> None:
    if not 0.5 < level < 1.0:
        raise ConfigError(f"`{key}` must be in (0.5, 1); got {level}.")


@dataclass(frozen=True)
class ComputeLawSettings:
    """L(C) = A C^-alpha + L_inf on the compute frontier (best model size per budget)."""

    bootstrap: int = 200  # refits over frontier runs for the intervals of A, alpha, L_inf
    max_failed_refits: float = 0.05  # fraction of bootstrap refits allowed to fail

    def __post_init__(self) -> None:
        check_int("scaling.compute_law.bootstrap", self.bootstrap, 10)
        if not 0.0 <= self.max_failed_refits < 1.0:
            raise ConfigError(
                f"`scaling.compute_law.max_failed_refits` must be in [0, 1); got {self.max_failed_refits}."
            )


@dataclass(frozen=True)
class ChinchillaSettings:
    """L(N, D) = E + A/N^alpha + B/D^beta by Approach 3, with its checks."""

    max_failed_refits: float = 0.05  # fraction of bootstrap refits allowed to fail
    max_repeats: float = 1.0  # "D counts distinct fresh examples": each example seen at most this often

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_failed_refits < 1.0:
            raise ConfigError(
                f"`scaling.chinchilla.max_failed_refits` must be in [0, 1); got {self.max_failed_refits}."
            )
        if not self.max_repeats >= 1.0:
            raise ConfigError(f"`scaling.chinchilla.max_repeats` must be >= 1; got {self.max_repeats}.")


@dataclass(frozen=True)
class RegimesSettings:
    """Broken power laws of the reducible frontier loss L - L_inf, K in {0, 1, 2} chosen by CV."""

    n_boot: int = 200
    n_folds: int = 5
    min_seg: int = 3
    n_grid: int = 40
    rule: Literal["1se", "min"] = "1se"

    def __post_init__(self) -> None:
        check_int("scaling.regimes.n_boot", self.n_boot, 0)
        check_int("scaling.regimes.n_folds", self.n_folds, 2)
        check_int("scaling.regimes.min_seg", self.min_seg, 2)
        check_int("scaling.regimes.n_grid", self.n_grid, 3)
        if self.rule not in ("1se", "min"):
            raise ConfigError(f"`scaling.regimes.rule` must be '1se' or 'min'; got {self.rule!r}.")


@dataclass(frozen=True)
class AllocationSettings:
    """Compute-optimal N*, D* and the checks the advice rests on: fit quality and extrapolation."""

    multiples: tuple[float, ...] = (1.0, 10.0, 100.0)  # budgets, as multiples of the largest one measured
    regret_deltas: tuple[float, ...] = (-0.05, 0.05)  # allocation-exponent errors whose excess loss is reported
    min_r2: float = 0.9  # fit quality: R^2 of log-loss of the L(N, D) fit (the default policy's gate)
    holdout_budgets: int = 1  # largest budgets held out for the extrapolation check
    extrapolation_bootstrap: int = 200
    flops_tolerance: float = 0.1  # C = 6ND holds when |6ND / counted FLOPs - 1| <= this for every run

    def __post_init__(self) -> None:
        if not self.multiples:
            raise ConfigError("`scaling.allocation.multiples` needs at least one budget multiple, e.g. [1, 10, 100].")
        for i, m in enumerate(self.multiples):
            check_positive(f"scaling.allocation.multiples[{i}]", m)
        if list(self.multiples) != sorted(set(self.multiples)):
            raise ConfigError(f"`scaling.allocation.multiples` must be increasing and distinct; got {self.multiples}.")
        if not self.regret_deltas:
            raise ConfigError(
                "`scaling.allocation.regret_deltas` needs at least one exponent error, e.g. [-0.05, 0.05]."
            )
        if not 0.0 < self.min_r2 <= 1.0:
            raise ConfigError(f"`scaling.allocation.min_r2` must be in (0, 1]; got {self.min_r2}.")
        check_int("scaling.allocation.holdout_budgets", self.holdout_budgets, 1)
        check_int("scaling.allocation.extrapolation_bootstrap", self.extrapolation_bootstrap, 10)
        check_positive("scaling.allocation.flops_tolerance", self.flops_tolerance)


@dataclass(frozen=True)
class Approach2Settings:
    """Hoffmann et al.'s Approach 2 (iso-FLOP parabola minima) against Approach 3's exponent."""

    tolerance: float = 0.1  # the whole interval of a(Approach 2) - a(Approach 3) must lie within +-tolerance
    min_budgets: int = 3  # budgets with an interior convex minimum needed for the slope

    def __post_init__(self) -> None:
        check_positive("scaling.approach2.tolerance", self.tolerance)
        check_int("scaling.approach2.min_budgets", self.min_budgets, 3)


@dataclass(frozen=True)
class LrTuningSettings:
    """Exponents with per-width tuned learning rates against the untuned sweep at the single ``lr`` (C.1)."""

    untuned_seeds: int = 1  # seeds of the untuned comparison sweep (the first ones of the main sweep)
    bootstrap: int = 100  # refits of each of the two L(N, D) fits compared
    max_failed_refits: float = 0.05

    def __post_init__(self) -> None:
        check_int("scaling.lr_tuning.untuned_seeds", self.untuned_seeds, 1)
        check_int("scaling.lr_tuning.bootstrap", self.bootstrap, 10)
        if not 0.0 <= self.max_failed_refits < 1.0:
            raise ConfigError(f"`scaling.lr_tuning.max_failed_refits` must be in [0, 1); got {self.max_failed_refits}.")


@dataclass(frozen=True)
class VariablesSettings:
    """The study's variables: held invariant, swept, and monitored as confounders (with measured ranges)."""

    max_diverged_fraction: float = 0.0  # sanity: fraction of the design's runs allowed to diverge

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_diverged_fraction < 1.0:
            raise ConfigError(
                f"`scaling.variables.max_diverged_fraction` must be in [0, 1); got {self.max_diverged_fraction}."
            )


@dataclass(frozen=True)
class InvarianceSettings:
    """The parameter exponent alpha refitted on a reduced grid with SGD and with a larger batch (C.6)."""

    n_budgets: int = 4  # the smallest budgets of the sweep
    seeds: int = 1  # the first seeds of the main sweep
    sgd_lr: float = 0.1
    sgd_momentum: float = 0.9
    batch_factor: int = 4  # the large-batch variant uses batch_size x this (same learning rate)
    bootstrap: int = 100

    def __post_init__(self) -> None:
        check_int("scaling.invariance.n_budgets", self.n_budgets, 3)
        check_int("scaling.invariance.seeds", self.seeds, 1)
        check_positive("scaling.invariance.sgd_lr", self.sgd_lr)
        if not 0.0 <= self.sgd_momentum < 1.0:
            raise ConfigError(f"`scaling.invariance.sgd_momentum` must be in [0, 1); got {self.sgd_momentum}.")
        check_int("scaling.invariance.batch_factor", self.batch_factor, 2)
        check_int("scaling.invariance.bootstrap", self.bootstrap, 10)


@dataclass(frozen=True)
class Settings:
    """The scaling lens: the bundled iso-FLOP sweep and the parts measured on a table of runs."""

    schema_version: int = 1
    # The default subject: an iso-FLOP sweep of MLPs (see study.py).
    task: Literal["family", "teacher_student", "digits"] = "family"  # family: multilens.data.family.FamilySpec()
    budgets: tuple[float, ...] = (3.16e6, 1e7, 3.16e7, 1e8, 3.16e8, 1e9)
    # Widths 1 and 2 matter on the family: beyond width ~4 the loss barely depends on N, so without them the
    # iso-FLOP profiles have no interior minimum.
    widths: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
    depth: int = 1
    min_examples: int = 1024
    max_examples: int = 1048576  # the family is data-limited: small widths need millions of examples at 1e9 FLOPs
    seeds: int = 3
    d_in: int = 16
    teacher_width: int = 256
    teacher_decay: float = 1.0
    teacher_input_scale: float = 0.5  # a milder teacher: loss follows a power law to its floor (1.0 plateaus first)
    noise_std: float = 0.1
    n_test: int = 8192
    optimizer: Literal["sgd", "adam"] = "adam"
    lr: float = 2e-2  # the base lr; each width's lr is tuned on lr x lr_factors (see below)
    batch_size: int = 128  # one pass at batch 128: per-step overhead, not FLOPs, sets the sweep's wall time
    schedule: Literal["constant", "cosine", "step"] = "cosine"
    # Per-width learning-rate tuning (C.1): each width trains at lr x each factor at its smallest budget of the
    # grid; the factor with the lowest mean validation loss is that width's lr in the sweep. (1.0,): no tuning.
    lr_factors: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
    tune_seeds: int = 1  # the first seeds of the sweep, used for tuning
    # Peak exclusion: with the double-descent phase's interpolation ratio r = N/D at hand, runs with N/D in
    # [r / peak_band, r x peak_band] are left out of the L(N, D) fit.
    peak_band: float = 2.0
    target_budget: float | None = None  # the budget of the hand-off allocation (None: the largest sweep budget)
    # Shared by the parts that use the L(N, D) fit (chinchilla, allocation, approach2).
    bootstrap: int = 200
    ci_level: float = 0.95
    # Parts (None: not run).
    compute_law: ComputeLawSettings | None = ComputeLawSettings()
    chinchilla: ChinchillaSettings | None = ChinchillaSettings()
    regimes: RegimesSettings | None = RegimesSettings()
    allocation: AllocationSettings | None = AllocationSettings()
    approach2: Approach2Settings | None = Approach2Settings()
    lr_tuning: LrTuningSettings | None = LrTuningSettings()
    variables: VariablesSettings | None = VariablesSettings()
    invariance: InvarianceSettings | None = InvarianceSettings()

    def __post_init__(self) -> None:
        if not self.lr_factors or 1.0 not in self.lr_factors:
            raise ConfigError(f"`scaling.lr_factors` must include 1.0 (the untuned lr); got {self.lr_factors}.")
        for i, f in enumerate(self.lr_factors):
            check_positive(f"scaling.lr_factors[{i}]", f)
        check_int("scaling.tune_seeds", self.tune_seeds, 1)
        if not self.peak_band > 1.0:
            raise ConfigError(f"`scaling.peak_band` must be > 1 (a factor each side); got {self.peak_band}.")
        if self.target_budget is not None:
            check_positive("scaling.target_budget", self.target_budget)
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
        check_int("scaling.d_in", self.d_in, 1)
        check_int("scaling.teacher_width", self.teacher_width, 1)
        check_int("scaling.batch_size", self.batch_size, 1)
        check_positive("scaling.lr", self.lr)
        _check_unit_level("scaling.ci_level", self.ci_level)
        if self.noise_std < 0:
            raise ConfigError(f"`scaling.noise_std` must be >= 0; got {self.noise_std}.")

    @classmethod
    def for_profile(cls, profile: str) -> Settings:
        """smoke: a tiny sweep (seconds); quick: the default; full: a dense grid with more seeds."""
        if profile == "smoke":
            return cls(
                budgets=(1e5, 3e5, 1e6, 3e6),
                widths=(2, 4, 8, 16, 32),
                seeds=2,
                min_examples=128,
                max_examples=8192,
                n_test=512,
                bootstrap=20,
                compute_law=ComputeLawSettings(bootstrap=20),
                regimes=RegimesSettings(n_boot=10, n_folds=3, min_seg=2, n_grid=10),
                allocation=AllocationSettings(extrapolation_bootstrap=20),
                lr_factors=(0.5, 1.0, 2.0),
                lr_tuning=LrTuningSettings(bootstrap=20),
                invariance=InvarianceSettings(n_budgets=3, bootstrap=20, sgd_lr=0.1),
            )
        if profile == "quick":
            # 2 seeds (not 3) keep the sweep's cost near that of the untuned one-lr sweep it replaced, with
            # the lr tuning, the untuned comparison sweep and the invariance variants added.
            return cls(
                seeds=2,
                lr_tuning=LrTuningSettings(bootstrap=60),
                invariance=InvarianceSettings(bootstrap=60),
            )
        if profile == "full":
            return cls(
                budgets=(1e6, 2e6, 4e6, 1e7, 2e7, 4e7, 1e8, 2e8, 4e8, 1e9, 2e9, 4e9),
                widths=(2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048),
                max_examples=4194304,
                seeds=5,
                bootstrap=1000,
                compute_law=ComputeLawSettings(bootstrap=1000),
                regimes=RegimesSettings(n_boot=500),
                allocation=AllocationSettings(extrapolation_bootstrap=500),
                lr_tuning=LrTuningSettings(untuned_seeds=2, bootstrap=500),
                invariance=InvarianceSettings(n_budgets=6, seeds=2, bootstrap=500),
            )
        raise ConfigError(f"`profile` must be smoke, quick or full; got {profile!r}.")

    def model_spec(self, width: int, d_in: int, d_out: int) -> MLPSpec:
        return MLPSpec(d_in, (width,) * self.depth, d_out, activation="relu")

    @property
    def data_shape(self) -> tuple[int, int]:
        if self.task == "family":
            return (FAMILY.d_in, FAMILY.n_classes)
        return (self.d_in, 1) if self.task == "teacher_student" else (64, 10)


def for_profile(profile: str) -> Settings:
    """The lens's settings for a profile: "smoke", "quick" or "full"."""
    return Settings.for_profile(profile)
