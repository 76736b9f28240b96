"""Settings of the spectral-bias lens: one nested table per part (``[spectral_bias.kernel_flow]``, ``.mlp``).

The bundled target (``n_points``, ``frequencies``, ``amplitudes``) is used by
:func:`multilens.lenses.spectral_bias.default_subject` only. Tolerances are fixed here, in advance.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from multilens.errors import ConfigError
from multilens.validation import check_choice, check_int, check_positive

PROFILES = ("smoke", "quick", "full")
ACTIVATIONS = ("relu", "tanh", "gelu")


@dataclass(frozen=True)
class KernelFlowSettings:
    """Gradient descent on random Fourier features of a Gaussian kernel, where the theorem is exact."""

    features: int = 256
    lengthscale: float = 0.03  # in units of the input span (inputs are mapped to [0, 1))
    lr_fraction: float = 0.5  # eta = fraction / lambda_max(K/n); the O(eta) bound needs eta*lambda < 1
    steps: int = 2000
    exact_tol: float = 1e-10  # |measured - c(1 - (1 - eta lambda)^k)| / max|c|
    order_tol: float = 0.1  # relative tolerance on the O(eta) ratio 2 between eta and eta/2
    plot_modes: int = 6

    def __post_init__(self) -> None:
        check_int("kernel_flow.features", self.features, 1)
        for k in ("lengthscale", "exact_tol", "order_tol"):
            check_positive(f"kernel_flow.{k}", getattr(self, k))
        if not 0.0 < self.lr_fraction < 1.0:
            raise ConfigError(
                f"`kernel_flow.lr_fraction` must be in (0, 1) (eta*lambda < 1 for every mode); got {self.lr_fraction}."
            )
        check_int("kernel_flow.steps", self.steps, 10)
        check_int("kernel_flow.plot_modes", self.plot_modes, 1)


@dataclass(frozen=True)
class MLPSettings:
    """A plain MLP and its Fourier-feature twin trained by full-batch GD; the NTK at init predicts.

    ``width``, ``depth``, ``activation``: the MLP built when the subject has no ``model_builder``.
    """

    width: int = 64
    depth: int = 2
    activation: str = "relu"
    lr_fraction: float = 0.5  # eta = fraction / lambda_max(2 Theta / n) per network
    steps: int = 2000
    ff_features: int = 16
    ff_sigma: float = 10.0
    ntk_modes: int = 12  # NTK eigenmodes (largest initial residual) ranked by fitting time
    fit_time_factor: float = 2.0  # NTK-predicted fitting time within this factor of the measured
    spearman_min: float = 0.5  # NTK mode order: mean rank correlation at least this

    def __post_init__(self) -> None:
        check_int("mlp.width", self.width, 1)
        check_int("mlp.depth", self.depth, 1)
        check_choice("mlp.activation", self.activation, ACTIVATIONS)
        check_positive("mlp.lr_fraction", self.lr_fraction)
        if self.lr_fraction >= 2.0:
            raise ConfigError(
                f"`mlp.lr_fraction` must be < 2 (the linearised dynamics diverge at 2); got {self.lr_fraction}."
            )
        check_int("mlp.steps", self.steps, 10)
        check_int("mlp.ff_features", self.ff_features, 1)
        check_positive("mlp.ff_sigma", self.ff_sigma)
        check_int("mlp.ntk_modes", self.ntk_modes, 3)
        if not self.fit_time_factor > 1.0:
            raise ConfigError(f"`mlp.fit_time_factor` must be > 1; got {self.fit_time_factor}.")
        if not -1.0 <= self.spearman_min <= 1.0:
            raise ConfigError(f"`mlp.spearman_min` must be in [-1, 1]; got {self.spearman_min}.")


@dataclass(frozen=True)
class Settings:
    """The spectral-bias lens. Intervals are Student-t over ``n_seeds`` seeds (feature draws,
    initialisations); a frequency is fitted when its residual is at most ``fit_threshold`` of the
    target's coefficient. The bundled target is sum_k amplitudes[k] sin(2 pi frequencies[k] x) on
    ``n_points`` grid points of [0, 1). A part set to None is not run."""

    schema_version: int = 1
    n_seeds: int = 4
    ci_level: float = 0.95
    fit_threshold: float = 0.1  # "90% explained"
    n_points: int = 128
    frequencies: tuple[int, ...] = (1, 10)
    amplitudes: tuple[float, ...] = (1.0, 0.2)
    kernel_flow: KernelFlowSettings | None = KernelFlowSettings()
    mlp: MLPSettings | None = MLPSettings()

    def __post_init__(self) -> None:
        check_int("n_seeds", self.n_seeds, 1)
        if not 0.5 <= self.ci_level < 1.0:
            raise ConfigError(f"`ci_level` must be in [0.5, 1); got {self.ci_level}.")
        if not 0.0 < self.fit_threshold < 1.0:
            raise ConfigError(f"`fit_threshold` must be in (0, 1); got {self.fit_threshold}.")
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
        if self.mlp is not None and self.mlp.ntk_modes > self.n_points:
            raise ConfigError(f"`mlp.ntk_modes` must be <= n_points ({self.n_points}); got {self.mlp.ntk_modes}.")

    @classmethod
    def for_profile(cls, profile: str) -> Settings:
        """ "smoke": seconds, for tests; "quick": the default of `multilens run`; "full": thorough."""
        if profile not in PROFILES:
            raise ConfigError(f"`profile` must be one of {', '.join(PROFILES)}; got {profile!r}.")
        base = cls()
        if profile == "quick":
            return base
        if profile == "smoke":
            return replace(
                base,
                n_seeds=2,
                n_points=64,
                kernel_flow=replace(base.kernel_flow, features=128, steps=600),
                mlp=replace(base.mlp, width=32, steps=400, ntk_modes=8),
            )
        return replace(
            base,
            n_seeds=8,
            n_points=256,
            kernel_flow=replace(base.kernel_flow, features=512, steps=5000),
            mlp=replace(base.mlp, width=128, steps=10_000, ntk_modes=20),
        )
