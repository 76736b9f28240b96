"""Configuration of the implicit-bias lens (least squares, separable logistic, optimizers)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from multilens.errors import ConfigError
from multilens.validation import check_int, check_positive
from multilens.lenses.implicit_bias.optimizers import OPTIMIZERS, SCHEDULES

PROFILES = ("smoke", "quick", "full")


@dataclass(frozen=True)
class ImplicitBiasConfig:
    """Every field can be set with ``--set key=value``.

    ``n_seeds`` independent problem instances (fresh data, teacher and initialisation) give the
    intervals. ``ls_*``: under-determined least squares (n < d); ``log_*``: planted separable
    logistic regression; ``opt_*``: the optimizer comparison at matched budgets.
    """

    schema_version: int = 1
    n_seeds: int = 5
    ci_level: float = 0.95
    # least squares
    ls_n: int = 40
    ls_d: int = 120
    ls_noise: float = 0.1
    ls_lr_fraction: float = 1.0  # eta = fraction / s_max^2; GD converges for fraction < 2
    ls_max_steps: int = 20_000
    ls_tol: float = 1e-10  # stop when ||theta_t - theta_lim|| <= tol * max(1, ||theta_lim||)
    ls_init_scales: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0)
    ls_n_test: int = 2000
    ls_exact_tol: float = 1e-10  # |measured - predicted distance| / initial distance
    ls_rate_tol: float = 0.02  # relative tolerance on the log of the per-step rate
    null_tol: float = 1e-10  # drift of the null-space component, relative to max(1, ||P_ker theta_0||)
    ls_risk_tol: float = 0.1  # relative tolerance of the held-out risk cost of the null-space component
    # separable logistic regression
    log_n: int = 24
    log_d: int = 3
    log_margin: float = 0.5
    log_steps: int = 100_000
    log_lr_fraction: float = 0.5  # eta = fraction * 8 / s_max(X)^2; Soudry et al. need fraction < 1
    log_n_points: int = 60
    gap_tol: float = 0.05  # relative tolerance of measured vs predicted direction gap at the last step
    growth_tol: float = 0.05  # relative tolerance of the growth rate of w_t along w_hat per unit log t
    ngd_speedup: float = 10.0  # "much faster": normalised-GD gap at least this many times smaller
    # optimizers at matched budgets
    opt_n: int = 30
    opt_d: int = 60
    opt_margin: float = 0.1
    opt_n_test: int = 4000
    opt_epochs: int = 5000
    opt_batch_size: int = 5
    opt_lr: float = 1.0  # GD and SGD (mean logistic loss)
    opt_lr_normalized: float = 0.01  # Adam, sign descent and coordinate descent (parameter units)
    opt_optimizers: tuple[str, ...] = OPTIMIZERS
    opt_init_scales: tuple[float, ...] = (0.0, 1.0)  # the first is the base condition
    opt_schedules: tuple[str, ...] = ("constant", "cosine")  # the first is the base condition
    opt_reseeds: int = 3
    opt_n_points: int = 12

    def __post_init__(self) -> None:
        check_int("n_seeds", self.n_seeds, 2)
        if not 0.5 <= self.ci_level < 1.0:
            raise ConfigError(f"`ci_level` must be in [0.5, 1); got {self.ci_level}.")
        check_int("ls_n", self.ls_n, 2)
        check_int("ls_d", self.ls_d, 2)
        if self.ls_d <= self.ls_n:
            raise ConfigError(f"`ls_d` must be > `ls_n` (under-determined); got ls_d={self.ls_d}, ls_n={self.ls_n}.")
        if self.ls_noise < 0:
            raise ConfigError(f"`ls_noise` must be >= 0; got {self.ls_noise}.")
        check_positive("ls_lr_fraction", self.ls_lr_fraction)
        if self.ls_lr_fraction >= 2.0:
            raise ConfigError(f"`ls_lr_fraction` must be < 2 (GD diverges at 2/s_max^2); got {self.ls_lr_fraction}.")
        check_int("ls_max_steps", self.ls_max_steps, 10)
        for k in (
            "ls_tol",
            "ls_exact_tol",
            "ls_rate_tol",
            "null_tol",
            "ls_risk_tol",
            "gap_tol",
            "growth_tol",
            "log_margin",
            "opt_margin",
            "opt_lr",
            "opt_lr_normalized",
        ):
            check_positive(k, getattr(self, k))
        if not self.ls_init_scales or self.ls_init_scales[0] != 0.0:
            raise ConfigError(
                f"`ls_init_scales` must start with 0.0 (the zero initialisation); got {self.ls_init_scales}."
            )
        for i, s in enumerate(self.ls_init_scales):
            if s < 0:
                raise ConfigError(f"`ls_init_scales[{i}]` must be >= 0; got {s}.")
        check_int("ls_n_test", self.ls_n_test, 10)
        check_int("log_n", self.log_n, self.log_d + 1)
        check_int("log_d", self.log_d, 2)
        check_int("log_steps", self.log_steps, 100)
        check_positive("log_lr_fraction", self.log_lr_fraction)
        if self.log_lr_fraction >= 1.0:
            raise ConfigError(
                f"`log_lr_fraction` must be < 1 (Soudry et al.'s step-size condition); got {self.log_lr_fraction}."
            )
        check_int("log_n_points", self.log_n_points, 10)
        if not self.ngd_speedup >= 1.0:
            raise ConfigError(f"`ngd_speedup` must be >= 1; got {self.ngd_speedup}.")
        check_int("opt_n", self.opt_n, 2)
        check_int("opt_d", self.opt_d, 2)
        check_int("opt_n_test", self.opt_n_test, 10)
        check_int("opt_epochs", self.opt_epochs, 10)
        check_int("opt_batch_size", self.opt_batch_size, 1)
        if self.opt_batch_size > self.opt_n:
            raise ConfigError(f"`opt_batch_size` must be <= `opt_n`; got {self.opt_batch_size} > {self.opt_n}.")
        if not self.opt_optimizers:
            raise ConfigError("`opt_optimizers` must name at least one optimizer.")
        for i, o in enumerate(self.opt_optimizers):
            if o not in OPTIMIZERS:
                raise ConfigError(f"`opt_optimizers[{i}]` must be one of {', '.join(OPTIMIZERS)}; got {o!r}.")
        if len(set(self.opt_optimizers)) != len(self.opt_optimizers):
            raise ConfigError(f"`opt_optimizers` has duplicates; got {self.opt_optimizers}.")
        if not self.opt_init_scales:
            raise ConfigError("`opt_init_scales` must have at least one scale.")
        for i, s in enumerate(self.opt_init_scales):
            if s < 0:
                raise ConfigError(f"`opt_init_scales[{i}]` must be >= 0; got {s}.")
        if not self.opt_schedules:
            raise ConfigError("`opt_schedules` must have at least one schedule.")
        for i, s in enumerate(self.opt_schedules):
            if s not in SCHEDULES:
                raise ConfigError(f"`opt_schedules[{i}]` must be one of {', '.join(SCHEDULES)}; got {s!r}.")
        check_int("opt_reseeds", self.opt_reseeds, 1)
        check_int("opt_n_points", self.opt_n_points, 3)

    @classmethod
    def for_profile(cls, profile: str) -> ImplicitBiasConfig:
        """ "smoke": seconds, for tests; "quick": the default of `multilens run`; "full": thorough."""
        if profile not in PROFILES:
            raise ConfigError(f"`profile` must be one of {', '.join(PROFILES)}; got {profile!r}.")
        base = cls()
        if profile == "smoke":
            return replace(
                base,
                n_seeds=3,
                ls_n=20,
                ls_d=60,
                ls_n_test=500,
                log_steps=5_000,
                log_n=12,
                log_n_points=30,
                opt_n=20,
                opt_d=40,
                opt_n_test=1000,
                opt_epochs=500,
                opt_reseeds=2,
                opt_n_points=6,
            )
        if profile == "quick":
            return base
        return replace(
            base,
            n_seeds=10,
            ls_n=80,
            ls_d=240,
            ls_n_test=5000,
            log_steps=1_000_000,
            log_n=40,
            log_n_points=90,
            opt_epochs=50_000,
            opt_reseeds=5,
            opt_schedules=("constant", "cosine", "inv_sqrt"),
            opt_init_scales=(0.0, 0.3, 3.0),
            opt_n_points=20,
        )
