"""Settings of the constraints lens: the bundled subject and five parts (smoke | quick | full)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from multilens.errors import ConfigError
from multilens.validation import check_int, check_open_unit, check_positive, check_positive_list


def _num(name: str, v: object, lo: float, hi: float) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo < v < hi:
        raise ConfigError(f"`{name}` must be a number in ({lo:g}, {hi:g}); got {v!r}.")


@dataclass(frozen=True)
class HeldOutSettings:
    """Part ``held_out``: each task trained unconstrained, by GDA and (main task) by the augmented Lagrangian;
    true rates on train and held-out data with bootstrap intervals. ``slack``: the held-out violation
    allowed before ``held_out_violation`` fails (a sampling tolerance fixed in advance)."""

    steps: int = 800
    lr: float = 0.02
    dual_lr: float = 0.5
    rho: float = 2.0
    batch_size: int = 256
    eval_every: int = 50
    slack: float = 0.02
    n_boot: int = 300
    history_n_boot: int = 100  # bootstrap resamples of the intervals at every evaluation

    def __post_init__(self) -> None:
        check_int("steps", self.steps, 1)
        check_positive("lr", self.lr)
        check_positive("dual_lr", self.dual_lr)
        check_positive("rho", self.rho)
        check_int("batch_size", self.batch_size, 2)
        check_int("eval_every", self.eval_every, 1)
        _num("slack", self.slack, 0.0, 1.0)
        check_int("n_boot", self.n_boot, 50)
        check_int("history_n_boot", self.history_n_boot, 10)


@dataclass(frozen=True)
class DualitySettings:
    """Part ``duality``: GDA on the convex QP (``steps`` steps of size ``eta`` for x and ``gamma`` for lambda);
    shadow prices by central differences of the exactly re-solved optimum at b_k +- ``h``. ``tol``:
    absolute tolerance of shadow price vs -lambda_k and of the duality gap (fixed in advance)."""

    steps: int = 20000
    eta: float = 0.05
    gamma: float = 0.05
    h: float = 1e-4
    tol: float = 1e-4

    def __post_init__(self) -> None:
        check_int("steps", self.steps, 10)
        check_positive("eta", self.eta)
        check_positive("gamma", self.gamma)
        check_positive("h", self.h)
        check_positive("tol", self.tol)


@dataclass(frozen=True)
class RateSettings:
    """Part ``rate`` (B.10): stochastic GDA (gradient noise std ``noise``) with steps eta = eta0/sqrt(T),
    gamma = gamma0/sqrt(T) for each horizon T; averaged iterates; ``n_seeds`` noise seeds. The check
    asks the upper end of the fitted log-log slope interval to be <= -1/2 + ``slack``. The trade-off table
    repeats the largest T for each dual step scale in ``dual_step_scales``."""

    horizons: tuple[int, ...] = (100, 400, 1600, 6400)
    n_seeds: int = 6
    eta0: float = 1.0
    gamma0: float = 1.0
    noise: float = 1.0
    slack: float = 0.1
    dual_step_scales: tuple[float, ...] = (0.3, 1.0, 3.0)

    def __post_init__(self) -> None:
        check_positive_list("horizons", self.horizons, ints=True, minimum=2)
        if len(self.horizons) < 3:
            raise ConfigError(f"`horizons` must hold at least 3 horizons; got {self.horizons!r}.")
        check_int("n_seeds", self.n_seeds, 2)
        check_positive("eta0", self.eta0)
        check_positive("gamma0", self.gamma0)
        check_positive("noise", self.noise)
        _num("slack", self.slack, 0.0, 0.5)
        check_positive_list("dual_step_scales", self.dual_step_scales)


@dataclass(frozen=True)
class InfeasibilitySettings:
    """Part ``infeasibility`` (WE-11): the alarm on an infeasible QP and an infeasible DP bound
    (``infeasible_dp_bound`` < 0) against the feasible problems. ``alarm_violation``: the proxy violation
    that must persist over the last quarter of the run (with growing duals) for the alarm."""

    qp_steps: int = 4000
    steps: int = 600
    infeasible_dp_bound: float = -0.05
    alarm_violation: float = 0.02

    def __post_init__(self) -> None:
        check_int("qp_steps", self.qp_steps, 100)
        check_int("steps", self.steps, 100)
        _num("infeasible_dp_bound", self.infeasible_dp_bound, -1.0, 0.0)
        _num("alarm_violation", self.alarm_violation, 0.0, 1.0)


@dataclass(frozen=True)
class ParetoSettings:
    """Part ``pareto``: a population of digits MLPs (width x FGSM adversarial-training eps x kept fraction of
    hidden units); objectives clean accuracy, PGD accuracy (``pgd_eps`` L-inf, ``pgd_steps`` steps) and
    latency (``n_timing`` timed forward passes of ``timing_batch`` rows, batch means); ``n_boot``
    bootstrap resamples; scalarization weights on a simplex grid of ``weight_steps``; the front re-checked
    under Gaussian input noise of std ``shift_noise``."""

    widths: tuple[int, ...] = (16, 96)
    adv_eps: tuple[float, ...] = (0.0, 0.3)
    keep_units: tuple[float, ...] = (1.0, 0.3)
    epochs: int = 10
    pgd_eps: float = 0.3
    pgd_steps: int = 5
    n_timing: int = 40
    timing_batch: int = 256
    n_boot: int = 200
    weight_steps: int = 20
    shift_noise: float = 1.0

    def __post_init__(self) -> None:
        check_positive_list("widths", self.widths, ints=True, minimum=2)
        for v in self.adv_eps:
            _num("adv_eps", v, -1e-12, 5.0)
        for v in self.keep_units:
            _num("keep_units", v, 0.0, 1.0 + 1e-12)
        check_int("epochs", self.epochs, 1)
        check_positive("pgd_eps", self.pgd_eps)
        check_int("pgd_steps", self.pgd_steps, 1)
        check_int("n_timing", self.n_timing, 4)
        check_int("timing_batch", self.timing_batch, 1)
        check_int("n_boot", self.n_boot, 20)
        check_int("weight_steps", self.weight_steps, 2)
        check_positive("shift_noise", self.shift_noise)


@dataclass(frozen=True)
class Settings:
    """The default subject: a generated tabular task (``n_train``/``n_test`` rows, ``d`` features plus the
    group, base-rate disparity ``disparity``) with logistic regression (main) and an MLP of width
    ``mlp_width``, and digits ("digit >= 5") with a synthetic group; constraints DP gap <= ``dp_bound`` and
    (main task) FNR on group 1 <= ``fnr_bound``, proxies on sigmoid(logit / ``proxy_temperature``); on the MLP
    also ECE <= ``ece_bound`` (binned, ``ece_bins`` equal-width bins; soft-binned proxy on sigmoid(logit)); a
    convex QP with ``qp_d`` variables and ``qp_m`` constraints. ``level``: interval level.
    ``group_column``: on a user's multilens.Subject, the input column holding the group attribute
    (0/1); without it the lens does not apply to that subject."""

    schema_version: int = 1
    n_train: int = 2000
    n_test: int = 2000
    d: int = 8
    disparity: float = 1.5
    mlp_width: int = 32
    digits: bool = True
    dp_bound: float = 0.05
    fnr_bound: float = 0.35
    ece_bound: float = 0.05
    ece_bins: int = 10
    proxy_temperature: float = 0.3
    qp_d: int = 6
    qp_m: int = 5
    level: float = 0.95
    group_column: int | None = None
    held_out: HeldOutSettings | None = HeldOutSettings()
    duality: DualitySettings | None = DualitySettings()
    rate: RateSettings | None = RateSettings()
    infeasibility: InfeasibilitySettings | None = InfeasibilitySettings()
    pareto: ParetoSettings | None = ParetoSettings()

    def __post_init__(self) -> None:
        check_int("schema_version", self.schema_version, 1)
        check_int("n_train", self.n_train, 20)
        check_int("n_test", self.n_test, 20)
        check_int("d", self.d, 1)
        check_positive("disparity", self.disparity)
        check_int("mlp_width", self.mlp_width, 1)
        if not isinstance(self.digits, bool):
            raise ConfigError(f"`digits` must be true or false; got {self.digits!r}.")
        check_open_unit("dp_bound", self.dp_bound)
        check_open_unit("fnr_bound", self.fnr_bound)
        check_open_unit("ece_bound", self.ece_bound)
        check_int("ece_bins", self.ece_bins, 2)
        check_positive("proxy_temperature", self.proxy_temperature)
        check_int("qp_d", self.qp_d, 1)
        check_int("qp_m", self.qp_m, 1, 12)
        _num("level", self.level, 0.5, 1.0)
        if self.group_column is not None:
            check_int("group_column", self.group_column)

    @classmethod
    def for_profile(cls, profile: str) -> Settings:
        if profile == "quick":
            return cls()
        if profile == "smoke":
            return replace(
                cls(),
                n_train=600,
                n_test=600,
                digits=False,
                held_out=HeldOutSettings(steps=150, eval_every=30, n_boot=60, history_n_boot=20),
                duality=DualitySettings(steps=6000),
                rate=RateSettings(horizons=(50, 200, 800), n_seeds=3),
                infeasibility=InfeasibilitySettings(qp_steps=1000, steps=200),
                pareto=ParetoSettings(
                    widths=(8, 32),
                    adv_eps=(0.0, 0.3),
                    keep_units=(1.0,),
                    epochs=2,
                    n_timing=6,
                    n_boot=30,
                    pgd_steps=2,
                    weight_steps=10,
                ),
            )
        if profile == "full":
            return replace(
                cls(),
                n_train=8000,
                n_test=8000,
                held_out=HeldOutSettings(steps=3000),
                rate=RateSettings(horizons=(100, 400, 1600, 6400, 25600), n_seeds=10),
                pareto=ParetoSettings(widths=(16, 64, 256), adv_eps=(0.0, 0.2, 0.4), epochs=20, n_boot=1000),
            )
        raise ConfigError(f"`profile` must be one of 'smoke', 'quick', 'full'; got {profile!r}.")
