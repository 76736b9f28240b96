"""Settings of the robustness lens: the default subject's fields and one table per part.

Every part has its own frozen settings dataclass (``[robustness.attacks]``, ``[robustness.lipschitz]``
...); a part set to ``None`` (``lipschitz = false`` in TOML, ``--set lipschitz=false``) is not run.
The top-level fields describe the default subject (digits scaled to the box [0, 1]; a linear
classifier, an MLP, and the same MLP after PGD adversarial training) and the threat model the
release gates read (``policy_eps``). Profiles: "smoke" (seconds), "quick" (the default of
``multilens run``, at most about 3 minutes on 2 cores) and "full".
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from multilens.errors import ConfigError
from multilens.lenses.robustness.attacks import LOSSES, SCHEDULES
from multilens.validation import (
    check_choice,
    check_int,
    check_nonnegative,
    check_open_unit,
    check_positive,
    check_positive_list,
)


def _nonneg_list(name: str, values: object) -> tuple[float, ...]:
    if not isinstance(values, (list, tuple)) or not values:
        raise ConfigError(f"`{name}` must be a non-empty list; got {values!r}.")
    out = tuple(check_nonnegative(f"{name}[{i}]", v) for i, v in enumerate(values))
    if list(out) != sorted(out) or len(set(out)) != len(out):
        raise ConfigError(f"`{name}` must be strictly increasing; got {values!r}.")
    return out


@dataclass(frozen=True)
class AttacksSettings:
    """PGD l-inf/l-2 over epsilon grids, FGSM, the square attack; sanity checks; W at policy_eps."""

    eps_linf: tuple[float, ...] = (0.0, 0.02, 0.05, 0.1, 0.15)
    eps_l2: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0)
    steps: int = 20
    restarts: int = 2
    targeted: int = 3  # targeted restarts (top wrong classes), as in AutoAttack's APGD-T
    step_size: float = 0.25  # fraction of eps
    schedule: str = "constant"
    loss: str = "ce"  # what untargeted restarts ascend: "ce" or "margin" (targeted restarts: z_t - z_y)
    weak_steps: int = 5  # the weaker attack of the attack-strength monotonicity check
    square_queries: int = 300
    masking_tol: float = 0.02  # fraction of examples the square attack may fool that PGD does not
    level: float = 0.95

    def __post_init__(self) -> None:
        _nonneg_list("eps_linf", self.eps_linf)
        _nonneg_list("eps_l2", self.eps_l2)
        if self.eps_linf[0] != 0.0 or self.eps_l2[0] != 0.0:
            raise ConfigError("`eps_linf` and `eps_l2` must start at 0 (the eps = 0 sanity check needs it).")
        check_int("steps", self.steps, 2)
        check_int("restarts", self.restarts, 1)
        check_int("targeted", self.targeted, 0)
        check_positive("step_size", self.step_size)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("loss", self.loss, LOSSES)
        check_int("weak_steps", self.weak_steps, 1)
        if self.weak_steps >= self.steps:
            raise ConfigError(f"`weak_steps` must be < `steps` ({self.steps}); got {self.weak_steps}.")
        check_int("square_queries", self.square_queries, 1)
        check_open_unit("masking_tol", self.masking_tol)
        check_open_unit("level", self.level)


@dataclass(frozen=True)
class LinearReferenceSettings:
    """PGD on a linear classifier against the exact worst case (dual norm, and the box for l-inf)."""

    eps_linf: float = 0.05
    eps_l2: float = 0.5
    steps: int = 20
    accuracy_tol: float = 0.0  # |PGD robust accuracy - exact| <= this (fraction of examples)
    margin_tol: float = 0.01  # max_i |PGD worst margin_i - exact_i| <= this (logit units)

    def __post_init__(self) -> None:
        check_positive("eps_linf", self.eps_linf)
        check_positive("eps_l2", self.eps_l2)
        check_int("steps", self.steps, 2)
        check_nonnegative("accuracy_tol", self.accuracy_tol)
        check_positive("margin_tol", self.margin_tol)


@dataclass(frozen=True)
class HandoffSettings:
    """PGD on the implicit-bias lens's handed-on linear classifier (runs only when the input is present)."""

    steps: int = 20
    restarts: int = 1
    max_count_diff: int = 0  # |PGD - exact linear reference| in examples (sanity)

    def __post_init__(self) -> None:
        check_int("handoff.steps", self.steps, 2)
        check_int("handoff.restarts", self.restarts, 1)
        check_int("handoff.max_count_diff", self.max_count_diff, 0)


@dataclass(frozen=True)
class LipschitzSettings:
    """Per-stage l-2 Lipschitz upper bounds (power iteration) and attack-found lower bounds."""

    n_stages: int = 3
    tol: float = 1e-10
    max_iter: int = 2000
    dense_rel_tol: float = 1e-6  # |power iteration - dense SVD| <= this x dense, for Linear layers
    ascent_examples: int = 32  # the examples with the largest Jacobian norms start the ratio ascent
    ascent_steps: int = 30
    ascent_radius: float = 0.05  # l-2 radius of the finite-difference pairs, in the stage's input units
    linear_rel_tol: float = 1e-6  # for a purely affine stage lower == upper up to this

    def __post_init__(self) -> None:
        check_int("n_stages", self.n_stages, 1)
        check_positive("tol", self.tol)
        check_int("max_iter", self.max_iter, 10)
        check_positive("dense_rel_tol", self.dense_rel_tol)
        check_int("ascent_examples", self.ascent_examples, 1)
        check_int("ascent_steps", self.ascent_steps, 0)
        check_positive("ascent_radius", self.ascent_radius)
        check_positive("linear_rel_tol", self.linear_rel_tol)


@dataclass(frozen=True)
class SmoothingSettings:
    """Randomized smoothing (Cohen et al. 2019): certified l-2 radii for several sigma."""

    sigmas: tuple[float, ...] = (0.12, 0.25, 0.5)
    n0: int = 100
    n: int = 1000
    alpha: float = 0.001
    n_examples: int = 100
    radii: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    reference_examples: int = 20  # a binary linear classifier: certified radius <= exact distance
    level: float = 0.95

    def __post_init__(self) -> None:
        check_positive_list("sigmas", self.sigmas)
        check_int("n0", self.n0, 1)
        check_int("n", self.n, 10)
        if not 0 < self.alpha < 0.5:
            raise ConfigError(f"`alpha` must be in (0, 0.5); got {self.alpha!r}.")
        check_int("n_examples", self.n_examples, 1)
        _nonneg_list("radii", self.radii)
        check_int("reference_examples", self.reference_examples, 2)
        check_open_unit("level", self.level)


@dataclass(frozen=True)
class CertificateSettings:
    """The failure-rate certificate: Clopper-Pearson upper bound on one class's false-negative rate."""

    critical_class: int = 3
    delta: float = 0.05

    def __post_init__(self) -> None:
        check_int("critical_class", self.critical_class, 0)
        if not 0 < self.delta < 0.5:
            raise ConfigError(f"`delta` must be in (0, 0.5); got {self.delta!r}.")


@dataclass(frozen=True)
class TrainingSettings:
    """A.8 along training: clean and robust accuracy of the checkpoints; the AT trade-off (C.8)."""

    steps: int = 10
    alpha: float = 0.05  # family-wise level of the paired exact (McNemar) tests, Bonferroni over checkpoint pairs

    def __post_init__(self) -> None:
        check_int("steps", self.steps, 1)
        check_open_unit("alpha", self.alpha)


@dataclass(frozen=True)
class CorruptionsSettings:
    """Gaussian noise, blur and contrast at severities 1..n (clipped to the input box)."""

    severities: int = 5
    noise_step: float = 0.05  # Gaussian noise std per severity level, in input units
    blur_step: float = 0.4  # Gaussian blur std per severity level, in pixels
    contrast_step: float = 0.18  # contrast factor 1 - contrast_step * severity

    def __post_init__(self) -> None:
        check_int("severities", self.severities, 1)
        check_positive("noise_step", self.noise_step)
        check_positive("blur_step", self.blur_step)
        check_positive("contrast_step", self.contrast_step)
        if self.contrast_step * self.severities >= 1:
            raise ConfigError("`contrast_step` x `severities` must be < 1 (the contrast factor stays positive).")


@dataclass(frozen=True)
class TransferSettings:
    """PGD crafted on a second model, evaluated on the subject; white-box must be at least as strong."""

    steps: int = 20
    masking_tol: float = 0.02

    def __post_init__(self) -> None:
        check_int("steps", self.steps, 1)
        check_open_unit("masking_tol", self.masking_tol)


@dataclass(frozen=True)
class Settings:
    schema_version: int = 1
    # --- the default subject: digits in [0, 1]; linear, MLP and PGD-trained MLP ------------------
    test_fraction: float = 0.25
    n_train: int = 0  # 0: the whole training split
    n_holdout: int = 0  # 0: the whole held-out split
    widths: tuple[int, ...] = (64, 64)
    epochs: int = 40
    lr: float = 3e-3
    batch_size: int = 64
    at_eps: float = 0.1  # l-inf radius of PGD adversarial training
    at_steps: int = 5
    trades_beta: float = 6.0  # > 0: also train the MLP with TRADES (Zhang et al. 2019); 0: skip the variant
    checkpoints: int = 6  # saved along standard and adversarial training (A.8)
    main: str = "mlp"  # the model the gates judge: "mlp", "mlp_at" or "linear"
    # --- the release gates' threat model ---------------------------------------------------------
    policy_eps: float = 0.1  # l-inf radius of W = robust risk - clean risk
    # --- parts -----------------------------------------------------------------------------------
    attacks: AttacksSettings | None = AttacksSettings()
    linear_reference: LinearReferenceSettings | None = LinearReferenceSettings()
    lipschitz: LipschitzSettings | None = LipschitzSettings()
    smoothing: SmoothingSettings | None = SmoothingSettings()
    certificate: CertificateSettings | None = CertificateSettings()
    training: TrainingSettings | None = TrainingSettings()
    corruptions: CorruptionsSettings | None = CorruptionsSettings()
    transfer: TransferSettings | None = TransferSettings()
    handoff: HandoffSettings | None = HandoffSettings()

    def __post_init__(self) -> None:
        check_open_unit("test_fraction", self.test_fraction)
        check_int("n_holdout", self.n_holdout, 0)
        check_int("n_train", self.n_train, 0)
        check_positive_list("widths", self.widths, ints=True)
        check_int("epochs", self.epochs, 1)
        check_positive("lr", self.lr)
        check_int("batch_size", self.batch_size, 1)
        check_positive("at_eps", self.at_eps)
        check_int("at_steps", self.at_steps, 1)
        check_nonnegative("trades_beta", self.trades_beta)
        check_int("checkpoints", self.checkpoints, 2)
        check_choice("main", self.main, ("mlp", "mlp_at", "linear"))
        check_positive("policy_eps", self.policy_eps)

    @classmethod
    def for_profile(cls, profile: str) -> Settings:
        if profile == "quick":
            return cls()
        if profile == "full":
            return cls(
                epochs=60,
                attacks=AttacksSettings(steps=50, restarts=5, targeted=9, square_queries=1000),
                smoothing=SmoothingSettings(n=10000, n_examples=360),
            )
        if profile == "smoke":
            return cls(
                n_train=400,
                n_holdout=60,
                widths=(32,),
                epochs=8,
                at_steps=2,
                trades_beta=0.0,
                checkpoints=3,
                attacks=AttacksSettings(
                    eps_linf=(0.0, 0.05, 0.1),
                    eps_l2=(0.0, 0.5),
                    steps=10,
                    restarts=1,
                    targeted=1,
                    weak_steps=2,
                    square_queries=30,
                ),  # fmt: skip
                linear_reference=LinearReferenceSettings(steps=20),
                lipschitz=LipschitzSettings(ascent_examples=8, ascent_steps=5),
                smoothing=SmoothingSettings(sigmas=(0.25,), n0=20, n=100, n_examples=10, reference_examples=5),
                training=TrainingSettings(steps=3),
                corruptions=CorruptionsSettings(severities=2, contrast_step=0.3),
                transfer=TransferSettings(steps=5),
            )
        raise ConfigError(f"`profile` must be one of 'smoke', 'quick', 'full'; got {profile!r}.")


def without_parts(settings: Settings, *names: str) -> Settings:
    return replace(settings, **{n: None for n in names})
