"""Settings of the spectral-filters lens: the bundled inverse problem, the GD schedule and two parts.

Profiles: "smoke" (well under a second), "quick" and "full" (a finer grid and longer GD runs).
Every field can be overridden with ``--set key=value`` (parts: ``--set matching.narrow_condition=5``,
``--set reconstruction=false``); invariants are checked once, at construction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from multilens.errors import ConfigError
from multilens.validation import check_int, check_open_unit, check_positive


@dataclass(frozen=True)
class MatchingSettings:
    """Part ``matching``: measured filter factors of GD and ridge, the best single lam(t), the gap.

    The narrow-spectrum control is a random m x m operator with singular values log-spaced on
    [1/narrow_condition, 1]. ``no_single_lambda_fraction``: on the subject's operator the measured
    minimax gap must stay above this fraction of the continuum value at every checkpoint.
    """

    narrow_condition: float = 3.0
    no_single_lambda_fraction: float = 0.5

    def __post_init__(self) -> None:
        v = self.narrow_condition
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 1.0 < v < 1e3:
            raise ConfigError(f"`narrow_condition` must be a number in (1, 1000); got {v!r}.")
        check_open_unit("no_single_lambda_fraction", self.no_single_lambda_fraction)


@dataclass(frozen=True)
class ReconstructionSettings:
    """Part ``reconstruction``: error of GD and ridge reconstructions of the true signal from noisy data.

    Ridge is solved on ``n_lambdas`` penalties and at each GD checkpoint's matched lam(t).
    """

    n_lambdas: int = 41

    def __post_init__(self) -> None:
        check_int("n_lambdas", self.n_lambdas, 2)


@dataclass(frozen=True)
class Settings:
    """The default subject (an m x m Gaussian blur of width ``blur_width`` grid points, a bump-and-box
    signal, ``n_noise`` noisy observations with noise std ``noise_level`` x RMS of the clean data),
    the GD schedule shared by both parts (``t_max`` steps of size eta = step_scale/s_max^2, read at
    ``n_checkpoints`` log-spaced step counts), the interval level, and the parts."""

    schema_version: int = 1
    m: int = 64
    blur_width: float = 2.0
    noise_level: float = 0.01
    n_noise: int = 20
    step_scale: float = 1.0
    t_max: int = 10000
    n_checkpoints: int = 13
    level: float = 0.95
    matching: MatchingSettings | None = MatchingSettings()
    reconstruction: ReconstructionSettings | None = ReconstructionSettings()

    def __post_init__(self) -> None:
        check_int("schema_version", self.schema_version, 1)
        check_int("m", self.m, 4)
        if self.m > 512:
            raise ConfigError(f"`m` must be an int <= 512 (dense m x m algebra); got {self.m}.")
        check_positive("blur_width", self.blur_width)
        v = self.noise_level
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < v < 10.0:
            raise ConfigError(f"`noise_level` must be a number in (0, 10); got {v!r}.")
        check_int("n_noise", self.n_noise, 2)
        v = self.step_scale
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < v <= 1.0:
            raise ConfigError(f"`step_scale` must be a number in (0, 1] (eta s^2 <= 1 on every mode); got {v!r}.")
        check_int("t_max", self.t_max, 1)
        check_int("n_checkpoints", self.n_checkpoints, 2)
        v = self.level
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.5 < v < 1.0:
            raise ConfigError(f"`level` must be a number in (0.5, 1); got {v!r}.")

    @classmethod
    def for_profile(cls, profile: str) -> Settings:
        if profile == "quick":
            return cls()
        if profile == "smoke":
            return replace(
                cls(), m=32, t_max=1000, n_checkpoints=7, n_noise=8, reconstruction=ReconstructionSettings(n_lambdas=15)
            )
        if profile == "full":
            return replace(
                cls(), m=128, t_max=30000, n_checkpoints=21, n_noise=50, reconstruction=ReconstructionSettings(81)
            )
        raise ConfigError(f"`profile` must be one of 'smoke', 'quick', 'full'; got {profile!r}.")
