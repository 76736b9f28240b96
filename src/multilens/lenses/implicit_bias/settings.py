"""Settings of the implicit-bias lens: one nested table per part (``[implicit_bias.least_squares]``, ...).

Each part's table holds both the size of the bundled problem it runs on (used by
:func:`multilens.lenses.implicit_bias.default_subject` only; ignored for a user's subject) and how
the part measures. Tolerances are fixed here, in advance, never derived from a measured error.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from multilens.errors import ConfigError
from multilens.lenses.implicit_bias.optimizers import OPTIMIZERS, SCHEDULES
from multilens.validation import check_choice, check_int, check_positive

PROFILES = ("smoke", "quick", "full")


@dataclass(frozen=True)
class LeastSquaresSettings:
    """GD on under-determined least squares -> X^+ y (+ the null-space part of theta_0).

    ``n``, ``d``, ``noise``, ``n_test``: the bundled Gaussian design. GD uses eta = lr_fraction /
    s_max^2 and stops when ||X^T (X theta_t - y)|| <= grad_tol * ||X^T y|| (a rule that does not know
    the predicted limit) or at ``max_steps``; it then agrees with X^+ y when ||theta_T - X^+ y|| <=
    pinv_tol * max(1, ||X^+ y||). ``init_scales`` (starting with 0) are the scales s of
    theta_0 ~ N(0, s^2/d I).
    """

    n: int = 40
    d: int = 120
    noise: float = 0.1
    n_test: int = 2000
    lr_fraction: float = 1.0  # GD converges for fraction < 2
    max_steps: int = 20_000
    grad_tol: float = 1e-12  # stopping rule on the relative gradient norm
    pinv_tol: float = 1e-10  # agreement of GD's limit with X^+ y (relative to max(1, ||X^+ y||))
    init_scales: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0)
    exact_tol: float = 1e-10  # |measured - closed form| per mode, relative to the initial error
    rate_tol: float = 0.02  # |log-rate ratio - 1|
    null_tol: float = 1e-10  # drift of the null-space component, relative to max(1, ||P_ker theta_0||)

    def __post_init__(self) -> None:
        check_int("least_squares.n", self.n, 2)
        check_int("least_squares.d", self.d, 2)
        if self.d <= self.n:
            raise ConfigError(f"`least_squares.d` must be > `least_squares.n` (under-determined); got {self.d}.")
        if self.noise < 0:
            raise ConfigError(f"`least_squares.noise` must be >= 0; got {self.noise}.")
        check_int("least_squares.n_test", self.n_test, 10)
        check_positive("least_squares.lr_fraction", self.lr_fraction)
        if self.lr_fraction >= 2.0:
            raise ConfigError(
                f"`least_squares.lr_fraction` must be < 2 (GD diverges at 2/s_max^2); got {self.lr_fraction}."
            )
        check_int("least_squares.max_steps", self.max_steps, 10)
        for k in ("grad_tol", "pinv_tol", "exact_tol", "rate_tol", "null_tol"):
            check_positive(f"least_squares.{k}", getattr(self, k))
        if not self.init_scales or self.init_scales[0] != 0.0:
            raise ConfigError(f"`least_squares.init_scales` must start with 0.0 (zero init); got {self.init_scales}.")
        for i, s in enumerate(self.init_scales):
            if s < 0:
                raise ConfigError(f"`least_squares.init_scales[{i}]` must be >= 0; got {s}.")


@dataclass(frozen=True)
class LogisticSettings:
    """GD and loss-normalised GD on separable logistic regression against the SVM direction.

    ``n``, ``d``, ``margin``: the bundled planted problem (its SVM is known in closed form).
    """

    n: int = 24
    d: int = 3
    margin: float = 0.5
    steps: int = 100_000
    lr_fraction: float = 0.5  # eta = fraction * 8 / s_max(X)^2; Soudry et al. need fraction < 1
    n_points: int = 60
    gap_tol: float = 0.05  # |measured / predicted direction gap at T - 1|
    growth_tol: float = 0.05  # |growth of w_t along w_hat per unit log t / ||w_hat|| - 1|
    ngd_speedup: float = 10.0  # normalised GD's gap at T at least this many times smaller than GD's
    ngd_slope_slack: float = 0.05  # normalised GD's log-log gap slope <= the bound's slope + this

    def __post_init__(self) -> None:
        check_int("logistic.d", self.d, 2)
        check_int("logistic.n", self.n, self.d + 1)
        check_positive("logistic.margin", self.margin)
        check_int("logistic.steps", self.steps, 100)
        check_positive("logistic.lr_fraction", self.lr_fraction)
        if self.lr_fraction >= 1.0:
            raise ConfigError(
                f"`logistic.lr_fraction` must be < 1 (Soudry et al.'s step-size condition); got {self.lr_fraction}."
            )
        check_int("logistic.n_points", self.n_points, 10)
        for k in ("gap_tol", "growth_tol", "ngd_slope_slack"):
            check_positive(f"logistic.{k}", getattr(self, k))
        if not self.ngd_speedup >= 1.0:
            raise ConfigError(f"`logistic.ngd_speedup` must be >= 1; got {self.ngd_speedup}.")


@dataclass(frozen=True)
class OptimizersSettings:
    """Optimizers compared at a matched budget of epochs on separable data (finite-time).

    ``n``, ``d``, ``margin``, ``n_test``: the bundled teacher problem.
    """

    n: int = 30
    d: int = 60
    margin: float = 0.1
    n_test: int = 4000
    epochs: int = 5000
    batch_size: int = 5
    lr: float = 1.0  # GD and SGD (mean logistic loss)
    lr_normalized: float = 0.01  # Adam, sign descent and coordinate descent (parameter units)
    optimizers: tuple[str, ...] = OPTIMIZERS
    init_scales: tuple[float, ...] = (0.0, 1.0)  # the first is the base condition
    schedules: tuple[str, ...] = ("constant", "cosine")  # the first is the base condition
    reseeds: int = 3
    n_points: int = 12

    def __post_init__(self) -> None:
        check_int("optimizers.n", self.n, 2)
        check_int("optimizers.d", self.d, 2)
        check_positive("optimizers.margin", self.margin)
        check_int("optimizers.n_test", self.n_test, 10)
        check_int("optimizers.epochs", self.epochs, 10)
        check_int("optimizers.batch_size", self.batch_size, 1)
        check_positive("optimizers.lr", self.lr)
        check_positive("optimizers.lr_normalized", self.lr_normalized)
        if not self.optimizers:
            raise ConfigError("`optimizers.optimizers` must name at least one optimizer.")
        for i, o in enumerate(self.optimizers):
            check_choice(f"optimizers.optimizers[{i}]", o, OPTIMIZERS)
        if len(set(self.optimizers)) != len(self.optimizers):
            raise ConfigError(f"`optimizers.optimizers` has duplicates; got {self.optimizers}.")
        if not self.init_scales:
            raise ConfigError("`optimizers.init_scales` must have at least one scale.")
        for i, s in enumerate(self.init_scales):
            if s < 0:
                raise ConfigError(f"`optimizers.init_scales[{i}]` must be >= 0; got {s}.")
        if not self.schedules:
            raise ConfigError("`optimizers.schedules` must have at least one schedule.")
        for i, s in enumerate(self.schedules):
            check_choice(f"optimizers.schedules[{i}]", s, SCHEDULES)
        check_int("optimizers.reseeds", self.reseeds, 1)
        check_int("optimizers.n_points", self.n_points, 3)


@dataclass(frozen=True)
class HandoffSettings:
    """A GD-trained linear classifier handed on to the robustness lens (consistency 6).

    ``n_train``, ``n_test``: the bundled binary task (the protocol's shared data family,
    :meth:`multilens.data.FamilySpec.binary`; held-out points from its fixed test split).
    ``eps`` > 0 fixes the l-inf radius; 0 takes the median normalised margin of the correctly
    classified training points (fixed before the held-out points are used).
    """

    n_train: int = 400
    n_test: int = 1000
    steps: int = 2000
    lr_fraction: float = 1.0  # eta = fraction / smoothness; GD is stable for fraction < 2
    eps: float = 0.0
    newton_tol: float = 1e-3  # GD's relative distance to Newton's minimiser (non-separable data)

    def __post_init__(self) -> None:
        check_int("handoff.n_train", self.n_train, 4)
        check_int("handoff.n_test", self.n_test, 2)
        check_int("handoff.steps", self.steps, 1)
        check_positive("handoff.lr_fraction", self.lr_fraction)
        if self.lr_fraction >= 2.0:
            raise ConfigError(f"`handoff.lr_fraction` must be < 2 (GD diverges at 2/L); got {self.lr_fraction}.")
        if not self.eps >= 0:
            raise ConfigError(f"`handoff.eps` must be >= 0 (0: from the training margins); got {self.eps}.")
        check_positive("handoff.newton_tol", self.newton_tol)


@dataclass(frozen=True)
class Settings:
    """The implicit-bias lens. ``n_instances`` independent problem instances of the bundled task
    (fresh data per instance) give the Student-t intervals; a part set to None is not run."""

    schema_version: int = 1
    n_instances: int = 5
    ci_level: float = 0.95
    least_squares: LeastSquaresSettings | None = LeastSquaresSettings()
    logistic: LogisticSettings | None = LogisticSettings()
    optimizers: OptimizersSettings | None = OptimizersSettings()
    handoff: HandoffSettings | None = HandoffSettings()

    def __post_init__(self) -> None:
        check_int("n_instances", self.n_instances, 1)
        if not 0.5 <= self.ci_level < 1.0:
            raise ConfigError(f"`ci_level` must be in [0.5, 1); got {self.ci_level}.")
        o = self.optimizers
        if o is not None and o.batch_size > o.n:
            raise ConfigError(f"`optimizers.batch_size` must be <= `optimizers.n`; got {o.batch_size} > {o.n}.")

    @classmethod
    def for_profile(cls, profile: str) -> Settings:
        """ "smoke": about a second, for tests; "quick": the default of `multilens run`; "full": thorough."""
        if profile not in PROFILES:
            raise ConfigError(f"`profile` must be one of {', '.join(PROFILES)}; got {profile!r}.")
        base = cls()
        if profile == "quick":
            return base
        if profile == "smoke":
            return replace(
                base,
                n_instances=2,
                least_squares=replace(base.least_squares, n=10, d=30, n_test=200),
                logistic=replace(base.logistic, steps=2000, n=8, n_points=20),
                optimizers=replace(base.optimizers, n=10, d=20, n_test=200, epochs=200, reseeds=2, n_points=5),
                handoff=replace(base.handoff, n_train=200, n_test=200, steps=6000),
            )
        return replace(
            base,
            n_instances=10,
            least_squares=replace(base.least_squares, n=80, d=240, n_test=5000),
            logistic=replace(base.logistic, steps=1_000_000, n=40, n_points=90),
            optimizers=replace(
                base.optimizers,
                epochs=50_000,
                reseeds=5,
                schedules=("constant", "cosine", "inv_sqrt"),
                init_scales=(0.0, 0.3, 3.0),
                n_points=20,
            ),
            handoff=replace(base.handoff, n_train=1000, n_test=4096, steps=5000),
        )
