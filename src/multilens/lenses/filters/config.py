"""Configuration of the spectral-filters lens (early-stopped GD vs ridge on an inverse problem).

Profiles: "smoke" (well under a second), "quick" and "full" (a finer grid and longer GD runs).
Every field can be overridden with `--set key=value`; invariants are checked once, here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from multilens.errors import ConfigError
from multilens.validation import check_int, check_positive


@dataclass(frozen=True)
class FiltersConfig:
    """Settings of the spectral-filters lens.

    The wide-spectrum operator is an m x m discretized Gaussian blur of width ``blur_width`` grid
    points; the narrow-spectrum control is a random m x m operator with singular values spread
    evenly in log scale over [1/narrow_condition, 1]. GD runs ``t_max`` steps of size
    eta = step_scale / s_max^2 and is read at ``n_checkpoints`` log-spaced step counts; ridge is
    solved on ``n_lambdas`` penalties and at each matched lambda(t).
    """

    schema_version: int = 1
    m: int = 64
    blur_width: float = 2.0
    narrow_condition: float = 3.0
    step_scale: float = 1.0
    t_max: int = 10000
    n_checkpoints: int = 13
    n_lambdas: int = 41
    noise_level: float = 0.01  # noise std relative to the RMS of the clean data A x*
    n_noise: int = 20
    level: float = 0.95

    def __post_init__(self) -> None:
        check_int("schema_version", self.schema_version, 1)
        check_int("m", self.m, 4)
        if self.m > 512:
            raise ConfigError(f"`m` must be an int <= 512 (dense m x m algebra); got {self.m}.")
        check_positive("blur_width", self.blur_width)
        if not (isinstance(self.narrow_condition, (int, float)) and 1.0 < self.narrow_condition < 1e3):
            raise ConfigError(f"`narrow_condition` must be a number in (1, 1000); got {self.narrow_condition!r}.")
        if not (isinstance(self.step_scale, (int, float)) and 0.0 < self.step_scale <= 1.0):
            raise ConfigError(
                f"`step_scale` must be a number in (0, 1] (eta s^2 <= 1 on every mode); got {self.step_scale!r}."
            )
        check_int("t_max", self.t_max, 1)
        check_int("n_checkpoints", self.n_checkpoints, 2)
        check_int("n_lambdas", self.n_lambdas, 2)
        if not (isinstance(self.noise_level, (int, float)) and 0.0 < self.noise_level < 10.0):
            raise ConfigError(f"`noise_level` must be a number in (0, 10); got {self.noise_level!r}.")
        check_int("n_noise", self.n_noise, 2)
        if not (isinstance(self.level, (int, float)) and 0.5 < self.level < 1.0):
            raise ConfigError(f"`level` must be a number in (0.5, 1); got {self.level!r}.")

    @classmethod
    def for_profile(cls, profile: str) -> FiltersConfig:
        if profile == "quick":
            return cls()
        if profile == "smoke":
            return replace(cls(), m=32, t_max=1000, n_checkpoints=7, n_lambdas=15, n_noise=8)
        if profile == "full":
            return replace(cls(), m=128, t_max=30000, n_checkpoints=21, n_lambdas=81, n_noise=50)
        raise ConfigError(f"`profile` must be one of 'smoke', 'quick', 'full'; got {profile!r}.")
