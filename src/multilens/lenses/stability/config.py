"""Settings of the stability lens: the bundled tasks' fields and one table per part."""

from __future__ import annotations

from dataclasses import dataclass

from multilens.errors import ConfigError
from multilens.validation import check_int, check_open_unit, check_positive, check_positive_list


@dataclass(frozen=True)
class ReplaceOneSettings:
    n_replacements: int = 40
    n_boot: int = 500

    def __post_init__(self) -> None:
        check_int("replace_one.n_replacements", self.n_replacements, 2)
        check_int("replace_one.n_boot", self.n_boot, 2)


@dataclass(frozen=True)
class ScalingSettings:
    n_values: tuple[int, ...] = (100, 200, 400, 800)
    # The lambda grid sits where lambda dominates the data's curvature (the logistic Hessian is at most
    # R^2/4 = 0.25 here): there the replace-one shift is ~ (g' - g) / (lambda n) and the slope is -1. At
    # small lambda the data curvature adds to lambda and the slope flattens (reported, not hidden).
    lambdas: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    n_replacements: int = 30  # per grid point, split over n_sets training sets
    n_sets: int = 5
    n_boot: int = 300

    def __post_init__(self) -> None:
        check_int("scaling.n_sets", self.n_sets, 2)
        check_positive_list("scaling.n_values", self.n_values, ints=True, minimum=10)
        check_positive_list("scaling.lambdas", self.lambdas)
        if len(self.n_values) < 2 or len(self.lambdas) < 2:
            raise ConfigError("`scaling.n_values` and `scaling.lambdas` need at least 2 values each for a slope.")
        check_int("scaling.n_replacements", self.n_replacements, 2)
        check_int("scaling.n_boot", self.n_boot, 2)


@dataclass(frozen=True)
class GapSettings:
    n_draws: int = 200
    n_values: tuple[int, ...] = (100, 200, 400, 800)  # B.7: E gap against n at the task's lambda
    grid_draws: int = 100
    n_boot: int = 300

    def __post_init__(self) -> None:
        check_int("gap.n_draws", self.n_draws, 2)
        check_positive_list("gap.n_values", self.n_values, ints=True, minimum=2)
        check_int("gap.grid_draws", self.grid_draws, 2)
        check_int("gap.n_boot", self.n_boot, 2)


@dataclass(frozen=True)
class SgdSettings:
    epochs: tuple[int, ...] = (1, 2, 4, 8)
    step: float = 0.5  # constant SGD step; Hardt et al. need step <= 2 / smoothness = 8 / R^2
    n_pairs: int = 20
    n_boot: int = 300
    mlp_pairs: int = 3  # non-convex MLP variant (information only); 0 switches it off
    mlp_width: int = 32
    mlp_lr: float = 0.1

    def __post_init__(self) -> None:
        check_positive_list("sgd.epochs", self.epochs, ints=True)
        if len(self.epochs) < 2:
            raise ConfigError("`sgd.epochs` needs at least 2 values for a growth slope.")
        check_positive("sgd.step", self.step)
        check_int("sgd.n_pairs", self.n_pairs, 2)
        check_int("sgd.n_boot", self.n_boot, 2)
        check_int("sgd.mlp_pairs", self.mlp_pairs, 0)
        check_int("sgd.mlp_width", self.mlp_width, 1)
        check_positive("sgd.mlp_lr", self.mlp_lr)


@dataclass(frozen=True)
class IntegritySettings:
    near_factor: float = 0.05  # near-duplicate: NN distance <= this x the median NN distance train<-test
    n_planted: int = 10  # planted duplicates for the detector's self-test
    n_memorization: int = 30  # examples whose leave-one-out memorization score is measured
    influence_tol: float = 0.05  # relative tolerance of the one-Newton-step (influence) prediction

    def __post_init__(self) -> None:
        check_open_unit("integrity.near_factor", self.near_factor)
        check_int("integrity.n_planted", self.n_planted, 1)
        check_int("integrity.n_memorization", self.n_memorization, 2)
        check_open_unit("integrity.influence_tol", self.influence_tol)


@dataclass(frozen=True)
class FamilySettings:
    """Part ``family``: logistic ERM on ``n`` examples of the shared data family (C.18), lambda ``lam``.

    ``n_replacements`` replace-one retrainings (replacements from a disjoint stream of the family)
    and ``gap_draws`` independent training sets for the expected generalization gap on the fixed
    test split.
    """

    n: int = 400
    lam: float = 0.1
    n_replacements: int = 40
    gap_draws: int = 100
    n_boot: int = 500
    level: float = 0.95

    def __post_init__(self) -> None:
        check_int("family.n", self.n, 10)
        check_positive("family.lam", self.lam)
        check_int("family.n_replacements", self.n_replacements, 2)
        if self.n_replacements > self.n:
            raise ConfigError(f"`family.n_replacements` must be <= n ({self.n}); got {self.n_replacements}.")
        check_int("family.gap_draws", self.gap_draws, 2)
        check_int("family.n_boot", self.n_boot, 2)
        check_open_unit("family.level", self.level)


@dataclass(frozen=True)
class Settings:
    """Stability lens settings: the bundled tasks (digits main, synthetic second), then one table per part
    (``family`` runs on the protocol's shared data family, not on the tasks)."""

    schema_version: int = 1
    main_n: int = 400
    main_lambda: float = 0.1
    tol: float = 1e-10  # solver tolerance on ||grad F_S||
    synthetic: bool = True
    synthetic_d: int = 20
    synthetic_pool: int = 4000
    replace_one: ReplaceOneSettings | None = ReplaceOneSettings()
    scaling: ScalingSettings | None = ScalingSettings()
    gap: GapSettings | None = GapSettings()
    sgd: SgdSettings | None = SgdSettings()
    integrity: IntegritySettings | None = IntegritySettings()
    family: FamilySettings | None = FamilySettings()

    def __post_init__(self) -> None:
        check_int("main_n", self.main_n, 10)
        check_positive("main_lambda", self.main_lambda)
        check_positive("tol", self.tol)
        check_int("synthetic_d", self.synthetic_d, 1)
        check_int("synthetic_pool", self.synthetic_pool, 20)
        if self.main_n >= 1797:
            raise ConfigError(f"`main_n` must be < 1797 (the digits pool); got {self.main_n}.")

    @classmethod
    def for_profile(cls, profile: str) -> Settings:
        if profile == "full":
            return cls(
                replace_one=ReplaceOneSettings(n_replacements=100),
                scaling=ScalingSettings(n_values=(100, 200, 400, 800, 1200), n_replacements=60, n_sets=10),
                gap=GapSettings(n_draws=1000, grid_draws=300),
                sgd=SgdSettings(epochs=(1, 2, 4, 8, 16), n_pairs=40, mlp_pairs=5),
                integrity=IntegritySettings(n_memorization=100),
                family=FamilySettings(n_replacements=100, gap_draws=300),
            )
        if profile == "quick":
            return cls()
        if profile == "smoke":
            return cls(
                main_n=200,
                synthetic_pool=800,
                replace_one=ReplaceOneSettings(n_replacements=5, n_boot=50),
                scaling=ScalingSettings(
                    n_values=(50, 100, 200), lambdas=(1.0, 4.0), n_replacements=6, n_sets=2, n_boot=50
                ),
                gap=GapSettings(n_draws=10, n_values=(50, 100), grid_draws=10, n_boot=50),
                sgd=SgdSettings(epochs=(1, 2), n_pairs=3, n_boot=50, mlp_pairs=1),
                integrity=IntegritySettings(n_planted=3, n_memorization=4),
                family=FamilySettings(n=100, n_replacements=5, gap_draws=8, n_boot=50),
            )
        raise ConfigError(f"`profile` must be one of 'smoke', 'quick', 'full'; got {profile!r}.")
