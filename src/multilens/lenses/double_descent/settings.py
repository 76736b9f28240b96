"""Settings of the double-descent lens: the bundled subjects and five parts.

Parts (each a nested table, switched off with ``<part> = false``):

* ``linear``: min-norm least squares (with optimal ridge and early-stopped gradient flow) swept
  over gamma = d/n;
* ``random_features``: random ReLU features fitted by least squares, swept over p/n;
* ``mlp``: one-hidden-layer MLPs swept over width;
* ``family``: min-norm random ReLU features on the protocol's shared data family
  (:class:`multilens.data.family.FamilySpec`), swept over p/n through the interpolation threshold;
* ``peak_vs_batch``: the same family width sweep trained by minibatch SGD at batch b and at batch
  workers*b (what that many synchronous data-parallel workers at batch b compute per step).

Profiles: "smoke" (seconds, for tests), "quick" (the default of ``multilens run``) and "full"
(thorough: more designs, seeds and widths). Invariants are checked once, at construction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from multilens.errors import ConfigError
from multilens.validation import check_choice, check_int, check_positive

# gamma = d/n, dense near the interpolation threshold gamma = 1.
_GAMMAS_QUICK = (
    0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.92, 0.95, 0.97, 0.98, 0.99, 1.0,
    1.01, 1.02, 1.03, 1.05, 1.08, 1.1, 1.15, 1.2, 1.3, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 5.0,
)  # fmt: skip
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


def _check_label_noise(values: tuple) -> None:
    _check_tuple("label_noise", values)
    for i, q in enumerate(values):
        _check_fraction(f"label_noise[{i}]", q, 0.0, 0.9, closed_lo=True)


@dataclass(frozen=True)
class LinearSettings:
    """Part ``linear``: min-norm, optimal-ridge and early-stopped least squares along gamma = d/n.

    On a Gaussian design subject: ``n_designs`` independent designs per gamma (the unit of the
    intervals), each with ``n_noise`` noise draws (to split bias from variance). On a user's
    regression arrays: ``n_designs`` random train/test resamples per gamma with ``n_test`` held-out
    rows, and the exact Gaussian theory applied only when the design passes the isotropy check
    (extreme eigenvalues of its sample covariance within ``isotropy_tolerance`` of the
    Marchenko-Pastur edges).
    """

    gammas: tuple[float, ...] = _GAMMAS_QUICK
    n_designs: int = 150
    n_noise: int = 4
    level: float = 0.95
    peak_window: float = 0.1  # the peak check passes when |argmax gamma - 1| <= peak_window
    no_peak_factor: float = 10.0  # ridge "has no peak": its max risk * factor < min-norm peak risk
    coverage_alpha: float = 0.01  # binomial tolerance of the overall coverage checks
    n_test: int = 500
    isotropy_tolerance: float = 0.25

    def __post_init__(self) -> None:
        _check_tuple("gammas", self.gammas, minimum_len=3)
        for i, g in enumerate(self.gammas):
            check_positive(f"gammas[{i}]", g)
        check_int("n_designs", self.n_designs, 3)
        check_int("n_noise", self.n_noise, 2)
        _check_fraction("level", self.level, 0.5, 1.0)
        check_positive("peak_window", self.peak_window)
        if isinstance(self.no_peak_factor, bool) or not (
            isinstance(self.no_peak_factor, (int, float)) and self.no_peak_factor >= 1.0
        ):
            raise ConfigError(f"`no_peak_factor` must be a number >= 1; got {self.no_peak_factor!r}.")
        _check_fraction("coverage_alpha", self.coverage_alpha, 0.0, 0.5)
        check_int("n_test", self.n_test, 10)
        _check_fraction("isotropy_tolerance", self.isotropy_tolerance, 0.0, 1.0)

    def dims(self, n: int) -> tuple[int, ...]:
        """The distinct feature counts d = round(gamma n) of the sweep, ascending."""
        return tuple(sorted({max(1, round(g * n)) for g in self.gammas}))


@dataclass(frozen=True)
class RandomFeaturesSettings:
    """Part ``random_features``: random ReLU features, p = round(ratio n), ``seeds`` feature draws.

    Variants: ridgeless (min-norm), ridge with each penalty in ``ridge`` (n-normalized, features
    scaled 1/sqrt(p)) and gradient descent stopped after each of ``gd_steps``; each label-noise
    level in ``label_noise``. The ridgeless peak must lie in p/n in [1/peak_window, peak_window].
    """

    ratios: tuple[float, ...] = _RF_RATIOS
    seeds: int = 5
    label_noise: tuple[float, ...] = (0.0, 0.2)
    ridge: tuple[float, ...] = (1e-3, 1e-1)
    gd_steps: tuple[int, ...] = (30, 1000)
    peak_window: float = 2.0
    level: float = 0.95

    def __post_init__(self) -> None:
        _check_tuple("ratios", self.ratios, minimum_len=3)
        for i, r in enumerate(self.ratios):
            check_positive(f"ratios[{i}]", r)
        check_int("seeds", self.seeds, 2)
        _check_label_noise(self.label_noise)
        _check_tuple("ridge", self.ridge, minimum_len=0)
        for i, lam in enumerate(self.ridge):
            check_positive(f"ridge[{i}]", lam)
        _check_tuple("gd_steps", self.gd_steps, minimum_len=0)
        for i, t in enumerate(self.gd_steps):
            check_int(f"gd_steps[{i}]", t, 1)
        if isinstance(self.peak_window, bool) or not (
            isinstance(self.peak_window, (int, float)) and self.peak_window > 1.0
        ):
            raise ConfigError(f"`peak_window` must be a number > 1; got {self.peak_window!r}.")
        _check_fraction("level", self.level, 0.5, 1.0)


@dataclass(frozen=True)
class MlpSettings:
    """Part ``mlp``: one-hidden-layer ReLU MLPs (MSE on one-hot targets, full-batch Adam) over widths.

    ``n_train``: use the first n_train training rows of the subject (None: all). Test error is read
    after each of ``horizons`` steps (early stopping), for each weight decay and label-noise level.
    """

    n_train: int | None = 200
    widths: tuple[int, ...] = (4, 8, 16, 32, 64, 256)
    seeds: int = 3
    steps: int = 1000
    lr: float = 3e-3
    weight_decays: tuple[float, ...] = (0.0, 1e-3)
    horizons: tuple[int, ...] = (100, 1000)
    label_noise: tuple[float, ...] = (0.0, 0.2)
    peak_window: float = 2.0
    level: float = 0.95

    def __post_init__(self) -> None:
        if self.n_train is not None:
            check_int("n_train", self.n_train, 20)
        _check_tuple("widths", self.widths, minimum_len=2)
        for i, w in enumerate(self.widths):
            check_int(f"widths[{i}]", w, 1)
        check_int("seeds", self.seeds, 2)
        check_int("steps", self.steps, 1)
        check_positive("lr", self.lr)
        _check_tuple("weight_decays", self.weight_decays)
        for i, wd in enumerate(self.weight_decays):
            _check_fraction(f"weight_decays[{i}]", wd, 0.0, 1e6, closed_lo=True)
        _check_tuple("horizons", self.horizons)
        for i, h in enumerate(self.horizons):
            check_int(f"horizons[{i}]", h, 1)
            if h > self.steps:
                raise ConfigError(f"`horizons[{i}]` must be an int <= steps ({self.steps}); got {h}.")
        _check_label_noise(self.label_noise)
        if isinstance(self.peak_window, bool) or not (
            isinstance(self.peak_window, (int, float)) and self.peak_window > 1.0
        ):
            raise ConfigError(f"`peak_window` must be a number > 1; got {self.peak_window!r}.")
        _check_fraction("level", self.level, 0.5, 1.0)


# p/n on the shared family: dense near the threshold p = n (p = n - 1, n, n + 1 are added exactly).
_FAMILY_RATIOS = (0.25, 0.5, 0.75, 0.9, 0.95, 1.05, 1.1, 1.25, 1.5, 2.0, 3.0, 4.0, 8.0)
_SGD_RATIOS = (0.5, 0.75, 0.9, 0.95, 1.0, 1.05, 1.1, 1.25, 1.5, 2.0, 4.0)


def _check_ratios(name: str, values: tuple) -> None:
    _check_tuple(name, values, minimum_len=3)
    for i, r in enumerate(values):
        check_positive(f"{name}[{i}]", r)


@dataclass(frozen=True)
class FamilySettings:
    """Part ``family``: min-norm random ReLU features on ``n_train`` examples of the shared data family.

    Widths p = round(ratio n_train) for each ratio, plus p = n_train + k for each offset in
    ``around_n`` (so the grid brackets the theory's threshold p = n exactly); ``seeds`` independent
    training draws (nested in the family's stream) with their own feature draws. A fit interpolates
    when its training MSE is <= ``train_tol`` x the one-hot targets' energy per output. Checks:
    the threshold p*/n against the theory's 1 (the whole interval of p*/n - 1 within
    +-``threshold_tol``) and the test-loss peak location (the whole interval of peak p/n - 1
    within +-``peak_tol``).
    """

    n_train: int = 256
    ratios: tuple[float, ...] = _FAMILY_RATIOS
    around_n: tuple[int, ...] = (-1, 0, 1)
    seeds: int = 3
    train_tol: float = 1e-8
    threshold_tol: float = 0.02
    peak_tol: float = 0.1
    level: float = 0.95

    def __post_init__(self) -> None:
        check_int("n_train", self.n_train, 8)
        _check_ratios("ratios", self.ratios)
        _check_tuple("around_n", self.around_n, minimum_len=0)
        for i, k in enumerate(self.around_n):
            check_int(f"around_n[{i}]", k, 1 - self.n_train)
        check_int("seeds", self.seeds, 2)
        _check_fraction("train_tol", self.train_tol, 0.0, 1.0)
        check_positive("threshold_tol", self.threshold_tol)
        check_positive("peak_tol", self.peak_tol)
        _check_fraction("level", self.level, 0.5, 1.0)

    def widths(self) -> tuple[int, ...]:
        """The distinct feature counts p of the sweep, ascending."""
        ps = {max(1, round(r * self.n_train)) for r in self.ratios} | {self.n_train + k for k in self.around_n}
        return tuple(sorted(ps))


@dataclass(frozen=True)
class PeakVsBatchSettings:
    """Part ``peak_vs_batch``: the family width sweep trained by minibatch SGD at batch b and workers*b.

    Random ReLU features (as in ``family``) fitted by SGD on the squared loss to one-hot targets,
    from zero, for ``epochs`` epochs of random reshuffling; the batch-(workers*b) run groups the
    same per-epoch permutation into batches of workers*b (the union of the b-batches that that many
    synchronous data-parallel workers would process in one step). Learning rate ``lr`` at batch b;
    at batch workers*b ``lr`` x workers when ``lr_scaling`` is "linear" (the same gradient-flow time
    per epoch), else ``lr``. The check: the whole paired-bootstrap interval of the difference of the
    peak locations (p/n) within +-``max_shift``.
    """

    n_train: int = 256
    ratios: tuple[float, ...] = _SGD_RATIOS
    seeds: int = 3
    batch: int = 8
    workers: int = 4
    lr: float = 6.0
    lr_scaling: str = "linear"
    epochs: int = 1000
    max_shift: float = 0.25
    peak_window: float = 2.0
    level: float = 0.95

    def __post_init__(self) -> None:
        check_int("n_train", self.n_train, 8)
        _check_ratios("ratios", self.ratios)
        check_int("seeds", self.seeds, 2)
        check_int("batch", self.batch, 1)
        check_int("workers", self.workers, 2)
        if self.batch * self.workers > self.n_train:
            raise ConfigError(
                f"`batch` x `workers` must be <= n_train ({self.n_train}); got {self.batch} x {self.workers}."
            )
        check_positive("lr", self.lr)
        check_choice("lr_scaling", self.lr_scaling, ("linear", "none"))
        check_int("epochs", self.epochs, 1)
        check_positive("max_shift", self.max_shift)
        if isinstance(self.peak_window, bool) or not (
            isinstance(self.peak_window, (int, float)) and self.peak_window > 1.0
        ):
            raise ConfigError(f"`peak_window` must be a number > 1; got {self.peak_window!r}.")
        _check_fraction("level", self.level, 0.5, 1.0)

    def widths(self) -> tuple[int, ...]:
        return tuple(sorted({max(1, round(r * self.n_train)) for r in self.ratios}))

    @property
    def lr_large(self) -> float:
        return self.lr * self.workers if self.lr_scaling == "linear" else self.lr


@dataclass(frozen=True)
class Settings:
    """The default subjects and the parts.

    Default subjects: an isotropic Gaussian design with ``n`` rows, noise variance ``sigma2`` and
    signal energy ``r2`` (the exact theory's model) for ``linear``; the scikit-learn digits with
    ``n_train`` standardized training rows (and the rest of a stratified 25% test split) for
    ``random_features`` and ``mlp``; the protocol's shared data family (``FamilySpec()``) for
    ``family`` and ``peak_vs_batch``.
    """

    schema_version: int = 1
    n: int = 100
    sigma2: float = 0.25
    r2: float = 1.0
    n_train: int = 300
    linear: LinearSettings | None = LinearSettings()
    random_features: RandomFeaturesSettings | None = RandomFeaturesSettings()
    mlp: MlpSettings | None = MlpSettings()
    family: FamilySettings | None = FamilySettings()
    peak_vs_batch: PeakVsBatchSettings | None = PeakVsBatchSettings()

    def __post_init__(self) -> None:
        check_int("schema_version", self.schema_version, 1)
        check_int("n", self.n, 8)
        check_positive("sigma2", self.sigma2)
        check_positive("r2", self.r2)
        check_int("n_train", self.n_train, 20)
        if self.n_train > 1300:
            raise ConfigError(f"`n_train` must be an int <= 1300 (digits has 1347 training rows); got {self.n_train}.")
        if self.linear is not None and len(self.linear.dims(self.n)) < 3:
            raise ConfigError(
                f"`linear.gammas` must give at least 3 distinct d = round(gamma*n); got {self.linear.dims(self.n)}."
            )
        if self.mlp is not None and self.mlp.n_train is not None and self.mlp.n_train > self.n_train:
            raise ConfigError(f"`mlp.n_train` must be <= n_train ({self.n_train}); got {self.mlp.n_train}.")

    @classmethod
    def for_profile(cls, profile: str) -> Settings:
        if profile == "quick":
            return cls()
        if profile == "smoke":
            return cls(
                n=30,
                n_train=60,
                linear=LinearSettings(gammas=_GAMMAS_SMOKE, n_designs=40, n_noise=3),
                random_features=RandomFeaturesSettings(
                    ratios=(0.25, 0.6, 0.9, 1.0, 1.2, 2.0, 5.0), seeds=4, ridge=(1e-2,), gd_steps=(100,)
                ),
                mlp=MlpSettings(n_train=60, widths=(4, 32), seeds=2, steps=60, horizons=(20, 60), weight_decays=(0.0,)),
                family=FamilySettings(n_train=48, ratios=(0.5, 0.9, 1.1, 2.0, 4.0), seeds=2),
                peak_vs_batch=PeakVsBatchSettings(
                    n_train=48, ratios=(0.5, 0.9, 1.0, 1.1, 2.0), seeds=2, batch=4, epochs=60
                ),
            )
        if profile == "full":
            return replace(
                cls(),
                n=200,
                n_train=400,
                linear=LinearSettings(n_designs=400, n_noise=6),
                random_features=RandomFeaturesSettings(
                    seeds=10,
                    ratios=(*_RF_RATIOS[:-1], 0.98, 1.02, 7.0, 10.0),
                    ridge=(1e-4, 1e-3, 1e-2, 1e-1),
                    gd_steps=(10, 100, 1000, 10000),
                ),
                mlp=MlpSettings(
                    widths=(2, 4, 8, 12, 16, 24, 32, 64, 128, 512),
                    seeds=3,
                    steps=3000,
                    weight_decays=(0.0, 1e-3),
                    horizons=(100, 300, 1000, 3000),
                ),
                family=FamilySettings(n_train=512, seeds=10),
                peak_vs_batch=PeakVsBatchSettings(seeds=6, epochs=2000),
            )
        raise ConfigError(f"`profile` must be one of 'smoke', 'quick', 'full'; got {profile!r}.")
