"""Configuration of the double-descent lens (linear min-norm sweep, random features, MLP widths).

Profiles: "smoke" (seconds, for tests), "quick" (the default of `multilens run`, well under a
minute on one core) and "full" (thorough: more designs, seeds and widths). Every field can be
overridden with `--set key=value`; invariants are checked once, here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from multilens.errors import ConfigError
from multilens.validation import check_int, check_positive

# gamma = d/n, dense near the interpolation threshold gamma = 1.
_GAMMAS_QUICK = (
    0.1,
    0.2,
    0.3,
    0.4,
    0.5,
    0.6,
    0.7,
    0.8,
    0.85,
    0.9,
    0.92,
    0.95,
    0.97,
    0.98,
    0.99,
    1.0,
    1.01,
    1.02,
    1.03,
    1.05,
    1.08,
    1.1,
    1.15,
    1.2,
    1.3,
    1.5,
    1.75,
    2.0,
    2.5,
    3.0,
    4.0,
    5.0,
)
_GAMMAS_SMOKE = (0.2, 0.4, 0.6, 0.8, 0.9, 0.97, 1.0, 1.03, 1.1, 1.3, 1.6, 2.0, 3.0)
_RF_RATIOS = (0.1, 0.25, 0.5, 0.7, 0.85, 0.95, 1.0, 1.05, 1.2, 1.5, 2.0, 3.0, 5.0, 10.0)


def _check_tuple(name: str, values: tuple, *, minimum_len: int = 1) -> None:
    if not isinstance(values, tuple) or len(values) < minimum_len:
        raise ConfigError(f"`{name}` must be a list of at least {minimum_len} value(s); got {values!r}.")


def _check_fraction(name: str, value: float, lo: float, hi: float, *, closed_lo: bool = False) -> None:
    ok_lo = value >= lo if closed_lo else value > lo
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (ok_lo and value < hi):
        bracket = "[" if closed_lo else "("
        raise ConfigError(f"`{name}` must be a number in {bracket}{lo}, {hi}); got {value!r}.")


@dataclass(frozen=True)
class DoubleDescentConfig:
    """Settings of the double-descent lens.

    Linear sweep: n samples, d = round(gamma n) isotropic Gaussian features, signal energy r2,
    noise variance sigma2; ``n_designs`` independent designs per gamma (the unit of the
    confidence intervals), each with ``n_noise`` noise draws (to split bias from variance).
    Neural sweeps on digits: random ReLU features (ridgeless, ridge ``rf_ridge``, GD for
    ``rf_gd_steps`` steps) and a one-hidden-layer MLP, each with the label-noise levels given.
    """

    schema_version: int = 1
    # linear min-norm sweep
    n: int = 100
    gammas: tuple[float, ...] = _GAMMAS_QUICK
    sigma2: float = 0.25
    r2: float = 1.0
    n_designs: int = 150
    n_noise: int = 4
    level: float = 0.95
    peak_window: float = 0.1  # the peak check passes when |argmax gamma - 1| <= peak_window
    no_peak_factor: float = 10.0  # ridge "has no peak": its max risk * factor < min-norm peak risk
    coverage_alpha: float = 0.01  # binomial tolerance of the overall coverage checks
    # random ReLU features on digits
    neural: bool = True
    label_noise: tuple[float, ...] = (0.0, 0.2)
    rf_n_train: int = 300
    rf_ratios: tuple[float, ...] = _RF_RATIOS  # p/n
    rf_seeds: int = 5
    rf_ridge: tuple[float, ...] = (1e-3, 1e-1)  # penalties lam (n-normalized, features scaled 1/sqrt(p))
    rf_gd_steps: tuple[int, ...] = (30, 1000)  # early-stopping horizons of GD on the features
    rf_peak_window: float = 2.0  # ridgeless peak p/n within [1/window, window]
    # one-hidden-layer MLP width sweep on digits
    mlp: bool = True
    mlp_n_train: int = 200
    mlp_widths: tuple[int, ...] = (4, 8, 16, 32, 64, 256)
    mlp_seeds: int = 3
    mlp_steps: int = 1000
    mlp_lr: float = 3e-3
    mlp_weight_decays: tuple[float, ...] = (0.0, 1e-3)
    mlp_horizons: tuple[int, ...] = (100, 1000)  # steps at which test error is recorded (early stopping)

    def __post_init__(self) -> None:
        check_int("schema_version", self.schema_version, 1)
        check_int("n", self.n, 8)
        _check_tuple("gammas", self.gammas, minimum_len=3)
        for i, g in enumerate(self.gammas):
            check_positive(f"gammas[{i}]", g)
        ds = sorted({max(1, round(g * self.n)) for g in self.gammas})
        if len(ds) < 3:
            raise ConfigError(f"`gammas` must give at least 3 distinct d = round(gamma*n); got {ds}.")
        check_positive("sigma2", self.sigma2)
        check_positive("r2", self.r2)
        check_int("n_designs", self.n_designs, 3)
        check_int("n_noise", self.n_noise, 2)
        _check_fraction("level", self.level, 0.5, 1.0)
        check_positive("peak_window", self.peak_window)
        if not (isinstance(self.no_peak_factor, (int, float)) and self.no_peak_factor >= 1.0):
            raise ConfigError(f"`no_peak_factor` must be a number >= 1; got {self.no_peak_factor!r}.")
        _check_fraction("coverage_alpha", self.coverage_alpha, 0.0, 0.5)
        if not isinstance(self.neural, bool):
            raise ConfigError(f"`neural` must be true or false; got {self.neural!r}.")
        if not isinstance(self.mlp, bool):
            raise ConfigError(f"`mlp` must be true or false; got {self.mlp!r}.")
        _check_tuple("label_noise", self.label_noise)
        for i, q in enumerate(self.label_noise):
            _check_fraction(f"label_noise[{i}]", q, 0.0, 0.9, closed_lo=True)
        check_int("rf_n_train", self.rf_n_train, 20)
        if self.rf_n_train > 1300:
            raise ConfigError(
                f"`rf_n_train` must be an int <= 1300 (digits has 1347 training rows); got {self.rf_n_train}."
            )
        _check_tuple("rf_ratios", self.rf_ratios, minimum_len=3)
        for i, r in enumerate(self.rf_ratios):
            check_positive(f"rf_ratios[{i}]", r)
        check_int("rf_seeds", self.rf_seeds, 2)
        _check_tuple("rf_ridge", self.rf_ridge, minimum_len=0)
        for i, lam in enumerate(self.rf_ridge):
            check_positive(f"rf_ridge[{i}]", lam)
        _check_tuple("rf_gd_steps", self.rf_gd_steps, minimum_len=0)
        for i, t in enumerate(self.rf_gd_steps):
            check_int(f"rf_gd_steps[{i}]", t, 1)
        if not (isinstance(self.rf_peak_window, (int, float)) and self.rf_peak_window > 1.0):
            raise ConfigError(f"`rf_peak_window` must be a number > 1; got {self.rf_peak_window!r}.")
        check_int("mlp_n_train", self.mlp_n_train, 20)
        if self.mlp_n_train > 1300:
            raise ConfigError(f"`mlp_n_train` must be an int <= 1300; got {self.mlp_n_train}.")
        _check_tuple("mlp_widths", self.mlp_widths, minimum_len=2)
        for i, w in enumerate(self.mlp_widths):
            check_int(f"mlp_widths[{i}]", w, 1)
        check_int("mlp_seeds", self.mlp_seeds, 2)
        check_int("mlp_steps", self.mlp_steps, 1)
        check_positive("mlp_lr", self.mlp_lr)
        _check_tuple("mlp_weight_decays", self.mlp_weight_decays)
        for i, wd in enumerate(self.mlp_weight_decays):
            if isinstance(wd, bool) or not isinstance(wd, (int, float)) or not (0.0 <= wd < math.inf):
                raise ConfigError(f"`mlp_weight_decays[{i}]` must be a number >= 0; got {wd!r}.")
        _check_tuple("mlp_horizons", self.mlp_horizons)
        for i, h in enumerate(self.mlp_horizons):
            check_int(f"mlp_horizons[{i}]", h, 1)
            if h > self.mlp_steps:
                raise ConfigError(f"`mlp_horizons[{i}]` must be an int <= mlp_steps ({self.mlp_steps}); got {h}.")

    @property
    def dims(self) -> tuple[int, ...]:
        """The distinct feature counts d = round(gamma n) of the sweep, ascending."""
        return tuple(sorted({max(1, round(g * self.n)) for g in self.gammas}))

    @classmethod
    def for_profile(cls, profile: str) -> DoubleDescentConfig:
        if profile == "quick":
            return cls()
        if profile == "smoke":
            return replace(
                cls(),
                n=30,
                gammas=_GAMMAS_SMOKE,
                n_designs=40,
                n_noise=3,
                rf_n_train=60,
                rf_ratios=(0.25, 0.6, 0.9, 1.0, 1.2, 2.0, 5.0),
                rf_seeds=4,
                rf_ridge=(1e-2,),
                rf_gd_steps=(100,),
                mlp_n_train=60,
                mlp_widths=(4, 32),
                mlp_seeds=2,
                mlp_steps=60,
                mlp_horizons=(20, 60),
                mlp_weight_decays=(0.0,),
            )
        if profile == "full":
            return replace(
                cls(),
                n=200,
                n_designs=400,
                n_noise=6,
                rf_n_train=400,
                rf_seeds=10,
                rf_ratios=(*_RF_RATIOS[:-1], 0.98, 1.02, 7.0, 10.0),
                rf_ridge=(1e-4, 1e-3, 1e-2, 1e-1),
                rf_gd_steps=(10, 100, 1000, 10000),
                mlp_widths=(2, 4, 8, 12, 16, 24, 32, 64, 128, 512),
                mlp_seeds=3,
                mlp_steps=3000,
                mlp_weight_decays=(0.0, 1e-3),
                mlp_horizons=(100, 300, 1000, 3000),
            )
        raise ConfigError(f"`profile` must be one of 'smoke', 'quick', 'full'; got {profile!r}.")
