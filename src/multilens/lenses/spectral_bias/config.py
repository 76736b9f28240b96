"""Configuration of the spectral-bias lens (exact kernel flow, MLP Fourier fitting, NTK)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from multilens.errors import ConfigError
from multilens.validation import check_int, check_positive

PROFILES = ("smoke", "quick", "full")
ACTIVATIONS = ("relu", "tanh", "gelu")


@dataclass(frozen=True)
class SpectralBiasConfig:
    """Every field can be set with ``--set key=value``.

    The target is sum_k amplitudes[k] sin(2 pi frequencies[k] x) on ``n_points`` grid points of
    [0, 1). ``kf_*``: kernel gradient descent on random Fourier features (the theorem is exact);
    ``mlp_*``: the plain MLP and its Fourier-feature twin (``ff_*``) trained by full-batch GD.
    Intervals are over ``n_seeds`` seeds (feature draws, initialisations).
    """

    schema_version: int = 1
    n_seeds: int = 4
    ci_level: float = 0.95
    n_points: int = 128
    frequencies: tuple[int, ...] = (1, 10)
    amplitudes: tuple[float, ...] = (1.0, 0.2)
    fit_threshold: float = 0.1  # fitted = residual at most this fraction of its starting size ("90% explained")
    # kernel gradient descent (exact theorem)
    kf_features: int = 256
    kf_lengthscale: float = 0.03
    kf_lr_fraction: float = 0.5  # eta = fraction / lambda_max(K/n); the O(eta) bound needs eta*lambda < 1
    kf_steps: int = 2000
    kf_exact_tol: float = 1e-10
    kf_order_tol: float = 0.1  # relative tolerance on the O(eta) ratio 2 between eta and eta/2
    kf_plot_modes: int = 6
    # MLP on the grid
    mlp_width: int = 64
    mlp_depth: int = 2
    mlp_activation: str = "relu"
    mlp_lr_fraction: float = 0.5  # eta = fraction / lambda_max(2 Theta / n) per network
    mlp_steps: int = 2000
    ff_features: int = 16
    ff_sigma: float = 10.0
    ntk_modes: int = 12  # NTK eigenmodes (largest initial residual) ranked by fitting time
    fit_time_factor: float = 2.0  # NTK-predicted fitting time within this factor of the measured
    spearman_min: float = 0.5  # NTK mode order: rank correlation at least this

    def __post_init__(self) -> None:
        check_int("n_seeds", self.n_seeds, 2)
        if not 0.5 <= self.ci_level < 1.0:
            raise ConfigError(f"`ci_level` must be in [0.5, 1); got {self.ci_level}.")
        check_int("n_points", self.n_points, 8)
        if not self.frequencies:
            raise ConfigError("`frequencies` must list at least one target frequency.")
        if len(self.amplitudes) != len(self.frequencies):
            raise ConfigError(
                f"`amplitudes` must have one entry per frequency ({len(self.frequencies)}); got {len(self.amplitudes)}."
            )
        for i, f in enumerate(self.frequencies):
            check_int(f"frequencies[{i}]", f, 1)
            if 2 * f >= self.n_points:
                raise ConfigError(
                    f"`frequencies[{i}]` must be below the Nyquist frequency n_points/2 = {self.n_points // 2}; "
                    f"got {f}."
                )
        if len(set(self.frequencies)) != len(self.frequencies):
            raise ConfigError(f"`frequencies` has duplicates; got {self.frequencies}.")
        for i, a in enumerate(self.amplitudes):
            if a == 0 or a != a:
                raise ConfigError(f"`amplitudes[{i}]` must be a nonzero number; got {a}.")
        if not 0.0 < self.fit_threshold < 1.0:
            raise ConfigError(f"`fit_threshold` must be in (0, 1); got {self.fit_threshold}.")
        check_int("kf_features", self.kf_features, 1)
        for k in ("kf_lengthscale", "kf_exact_tol", "kf_order_tol", "ff_sigma", "mlp_lr_fraction"):
            check_positive(k, getattr(self, k))
        if not 0.0 < self.kf_lr_fraction < 1.0:
            raise ConfigError(
                f"`kf_lr_fraction` must be in (0, 1) (eta*lambda < 1 for every mode); got {self.kf_lr_fraction}."
            )
        check_int("kf_steps", self.kf_steps, 10)
        check_int("kf_plot_modes", self.kf_plot_modes, 1)
        check_int("mlp_width", self.mlp_width, 1)
        check_int("mlp_depth", self.mlp_depth, 1)
        if self.mlp_activation not in ACTIVATIONS:
            raise ConfigError(f"`mlp_activation` must be one of {', '.join(ACTIVATIONS)}; got {self.mlp_activation!r}.")
        if self.mlp_lr_fraction >= 2.0:
            raise ConfigError(
                f"`mlp_lr_fraction` must be < 2 (the linearised dynamics diverge at 2); got {self.mlp_lr_fraction}."
            )
        check_int("mlp_steps", self.mlp_steps, 10)
        check_int("ff_features", self.ff_features, 1)
        check_int("ntk_modes", self.ntk_modes, 3)
        if self.ntk_modes > self.n_points:
            raise ConfigError(f"`ntk_modes` must be <= n_points ({self.n_points}); got {self.ntk_modes}.")
        if not self.fit_time_factor > 1.0:
            raise ConfigError(f"`fit_time_factor` must be > 1; got {self.fit_time_factor}.")
        if not -1.0 <= self.spearman_min <= 1.0:
            raise ConfigError(f"`spearman_min` must be in [-1, 1]; got {self.spearman_min}.")

    @classmethod
    def for_profile(cls, profile: str) -> SpectralBiasConfig:
        """ "smoke": seconds, for tests; "quick": the default of `multilens run`; "full": thorough."""
        if profile not in PROFILES:
            raise ConfigError(f"`profile` must be one of {', '.join(PROFILES)}; got {profile!r}.")
        base = cls()
        if profile == "smoke":
            return replace(
                base, n_seeds=2, n_points=64, kf_features=128, kf_steps=600, mlp_width=32, mlp_steps=400, ntk_modes=8
            )
        if profile == "quick":
            return base
        return replace(
            base, n_seeds=8, n_points=256, kf_features=512, kf_steps=5000, mlp_width=128, mlp_steps=10_000, ntk_modes=20
        )
