"""Shift lens: importance weighting, label-shift correction, worst-group accuracy and shift detection.

Chapter anchors: DEF-SHIFT (line 130), A.6 (226/297), A.17 (237/308), A.20 (240/311), B.8
(249/329), B.18 (259/339), the expansion on MMD and domain adaptation (1473-1478).

**Subject** (:class:`ShiftSubject`): whatever of these the user has, as arrays:

* ``covariate`` (:class:`CovariateData`): per-example losses of the user's model on labelled
  source data, source and target features (the target may be unlabelled), and where known the
  true density ratio at the source points and the true target risk;
* ``label`` (:class:`LabelShiftData`): the model's probabilities and labels on source validation
  data and its probabilities on target data (target labels and true priors where known);
* ``groups`` (:class:`GroupData`): train/test features, labels and group ids (the part fits a
  logistic ERM and a group-reweighted model);
* ``detection``: a pair (source features, target features).

Parts missing from the subject are skipped with a note. The ``variance`` (B.8 plus the
support-mismatch negative control), ``misspecification`` (A.6) and ``prevalence`` (A.17) parts
test the estimators on generators with known answers and need nothing from the subject.

**Default subject**: scikit-learn digits. A logistic model trained on one half; the other half is
the pool for (i) a covariate shift that reweights it by exp(beta * ink), with the exact ratio and
exact target risk, (ii) a label shift to geometric target priors, and (iii) the detection samples;
plus the spurious-feature task of :func:`multilens.data.shift.spurious_groups`. The main subject
(what the default gates judge) is the digits model under the covariate shift.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from multilens.errors import ConfigError
from multilens.lenses.contract import Runtime, finish, part_seed, run_parts
from multilens.lenses.shift.parts import (
    LENS,
    covariate_part,
    detection_part,
    groups_part,
    label_part,
    misspecification_part,
    prevalence_part,
    variance_part,
)
from multilens.results import LensResult
from multilens.validation import (
    check_int,
    check_open_unit,
    check_positive,
    check_positive_list,
)

PROFILES = ("smoke", "quick", "full")


@dataclass(frozen=True)
class CovariateData:
    loss_source: np.ndarray  # (n_s,) per-example loss on labelled source data
    x_source: np.ndarray  # (n_s, d)
    x_target: np.ndarray  # (n_t, d), labels not needed
    ratio_source: np.ndarray | None = None  # true w(x) at the source points, when known
    target_risk: float | None = None  # true target risk, when known
    target_risk_kind: str = ""  # how target_risk was obtained ("exact ...", "labelled target sample ...")


@dataclass(frozen=True)
class LabelShiftData:
    val_labels: np.ndarray  # (n_v,) source validation labels
    val_probs: np.ndarray  # (n_v, K) source-calibrated probabilities
    target_probs: np.ndarray  # (n_t, K)
    target_labels: np.ndarray | None = None
    true_priors: np.ndarray | None = None
    source_priors: np.ndarray | None = None  # the training priors of the model (default: validation frequencies)


@dataclass(frozen=True)
class GroupData:
    x_train: np.ndarray
    y_train: np.ndarray
    g_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    g_test: np.ndarray


@dataclass(frozen=True)
class ShiftSubject:
    covariate: CovariateData | None = None
    label: LabelShiftData | None = None
    groups: GroupData | None = None
    detection: tuple[np.ndarray, np.ndarray] | None = None
    description: dict[str, Any] = field(default_factory=dict)


def _level(s: Any, where: str) -> None:
    check_open_unit(f"{where}.level", s.level)


@dataclass(frozen=True)
class CovariateSettings:
    level: float = 0.95
    clip_quantile: float = 0.99
    min_ess_fraction: float = 0.1  # below this the weighted estimate is flagged as unusable
    quadratic_features: bool = False  # domain classifier on [x, x^2]
    classifier_c: float = 0.01  # strong L2: the 64-d domain classifier overfits otherwise (ESS collapses)

    def __post_init__(self) -> None:
        _level(self, "covariate")
        check_open_unit("covariate.clip_quantile", self.clip_quantile)
        check_open_unit("covariate.min_ess_fraction", self.min_ess_fraction)
        check_positive("covariate.classifier_c", self.classifier_c)


@dataclass(frozen=True)
class VarianceSettings:
    level: float = 0.95
    shifts: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5)
    n: int = 500
    replicates: int = 300
    n_mc: int = 400_000
    n_boot: int = 500
    noise: float = 0.3
    min_ess_fraction: float = 0.1
    control_dim: int = 3  # negative control: source N(0, I) on the negative orthant, target N(m 1, sd^2 I)
    control_target_mean: float = 2.0
    control_target_sd: float = 0.5
    separable_accuracy: float = 0.95  # held-out domain accuracy at which the supports count as disjoint

    def __post_init__(self) -> None:
        _level(self, "variance")
        if len(self.shifts) < 3:
            raise ConfigError(f"`variance.shifts` needs at least 3 shifts for the rank check; got {self.shifts}.")
        check_int("variance.n", self.n, 10)
        check_int("variance.replicates", self.replicates, 10)
        check_int("variance.n_mc", self.n_mc, 1000)
        check_int("variance.n_boot", self.n_boot, 20)
        check_positive("variance.noise", self.noise)
        check_open_unit("variance.min_ess_fraction", self.min_ess_fraction)
        check_positive("variance.control_target_sd", self.control_target_sd)
        check_int("variance.control_dim", self.control_dim, 1)
        check_open_unit("variance.separable_accuracy", self.separable_accuracy)


@dataclass(frozen=True)
class MisspecificationSettings:
    level: float = 0.95
    ns: tuple[int, ...] = (200, 2000, 20000)
    replicates: int = 40
    replicates_estimated: int = 10  # replicates of IW-ERM with the domain-classifier ratio (largest n only)
    shift: float = 1.0
    sd_target: float = 0.7
    noise: float = 0.3
    rel_tol: float = 0.1  # mean excess within 10% of the closed-form limit
    iw_fraction: float = 0.1  # importance-weighted ERM excess below this fraction of the limit

    def __post_init__(self) -> None:
        _level(self, "misspecification")
        check_positive_list("misspecification.ns", self.ns, ints=True, minimum=10)
        check_int("misspecification.replicates", self.replicates, 3)
        check_int("misspecification.replicates_estimated", self.replicates_estimated, 3)
        check_positive("misspecification.sd_target", self.sd_target)
        check_positive("misspecification.noise", self.noise)
        check_open_unit("misspecification.rel_tol", self.rel_tol)
        check_open_unit("misspecification.iw_fraction", self.iw_fraction)


@dataclass(frozen=True)
class LabelSettings:
    level: float = 0.95
    n_boot: int = 200
    em_tol: float = 1e-8
    em_max_iter: int = 2000

    def __post_init__(self) -> None:
        _level(self, "label")
        check_int("label.n_boot", self.n_boot, 20)
        check_positive("label.em_tol", self.em_tol)
        check_int("label.em_max_iter", self.em_max_iter, 1)


@dataclass(frozen=True)
class PrevalenceSettings:
    level: float = 0.95
    prevalences: tuple[float, ...] = (0.1, 0.5, 0.9)
    n_test: int = 800
    noise: float = 2.0  # Gaussian pixel noise: makes the binary task uncertain enough to calibrate
    n_bins: int = 10
    n_boot: int = 200
    classifier_c: float = 0.1

    def __post_init__(self) -> None:
        _level(self, "prevalence")
        for i, p in enumerate(self.prevalences):
            check_open_unit(f"prevalence.prevalences[{i}]", p)
        check_int("prevalence.n_test", self.n_test, 20)
        check_positive("prevalence.noise", self.noise)
        check_int("prevalence.n_bins", self.n_bins, 1)
        check_int("prevalence.n_boot", self.n_boot, 20)
        check_positive("prevalence.classifier_c", self.classifier_c)


@dataclass(frozen=True)
class GroupsSettings:
    level: float = 0.95
    n_boot: int = 300
    classifier_c: float = 1.0
    dro_steps: int = 2000  # group DRO (Sagawa et al. 2020) full-batch steps; 0 switches it off
    dro_lr: float = 0.5
    dro_eta: float = 0.05  # step of the exponentiated-gradient update of the group weights

    def __post_init__(self) -> None:
        _level(self, "groups")
        check_int("groups.n_boot", self.n_boot, 20)
        check_positive("groups.classifier_c", self.classifier_c)
        check_int("groups.dro_steps", self.dro_steps, 0)
        check_positive("groups.dro_lr", self.dro_lr)
        check_positive("groups.dro_eta", self.dro_eta)


@dataclass(frozen=True)
class DetectionSettings:
    level: float = 0.95
    n_perm: int = 200
    alpha: float = 0.05
    n_max: int = 600
    classifier_c: float = 0.001  # strong L2: with a few hundred examples in 64-d, weaker penalties overfit

    def __post_init__(self) -> None:
        _level(self, "detection")
        check_int("detection.n_perm", self.n_perm, 10)
        check_open_unit("detection.alpha", self.alpha)
        check_int("detection.n_max", self.n_max, 10)
        check_positive("detection.classifier_c", self.classifier_c)


@dataclass(frozen=True)
class Settings:
    """The default subject (digits pool, spurious task) and one table per part."""

    schema_version: int = 1
    classifier_c: float = 0.05  # the digits model (logistic regression)
    n_source: int = 600
    n_target: int = 600
    beta: float = 2.0  # covariate shift: target prop. to exp(beta * ink), ink = mean standardized pixel
    prior_ratio: float = 0.7  # label shift: target priors prop. to prior_ratio^k
    n_label_target: int = 600
    rho: float = 0.95  # spurious task: P(spurious attribute = label) in training
    n_group_train: int = 2000
    n_group_test: int = 4000
    covariate: CovariateSettings | None = CovariateSettings()
    variance: VarianceSettings | None = VarianceSettings()
    misspecification: MisspecificationSettings | None = MisspecificationSettings()
    label: LabelSettings | None = LabelSettings()
    prevalence: PrevalenceSettings | None = PrevalenceSettings()
    groups: GroupsSettings | None = GroupsSettings()
    detection: DetectionSettings | None = DetectionSettings()

    def __post_init__(self) -> None:
        check_positive("classifier_c", self.classifier_c)
        check_int("n_source", self.n_source, 20)
        check_int("n_target", self.n_target, 20)
        check_open_unit("prior_ratio", self.prior_ratio)
        check_int("n_label_target", self.n_label_target, 20)
        if not 0.5 <= self.rho < 1:
            raise ConfigError(f"`rho` must be in [0.5, 1); got {self.rho}.")
        check_int("n_group_train", self.n_group_train, 20)
        check_int("n_group_test", self.n_group_test, 20)

    @classmethod
    def for_profile(cls, profile: str) -> Settings:
        if profile not in PROFILES:
            raise ConfigError(f"`profile` must be one of {', '.join(PROFILES)}; got {profile!r}.")
        base = cls()
        if profile == "smoke":
            return replace(
                base,
                n_group_train=600,
                n_group_test=1000,
                variance=VarianceSettings(n=200, replicates=60, n_mc=50_000, n_boot=60),
                misspecification=MisspecificationSettings(ns=(100, 1000, 10000), replicates=10, replicates_estimated=3),
                label=LabelSettings(n_boot=30),
                prevalence=PrevalenceSettings(n_test=400, n_boot=40),
                groups=GroupsSettings(n_boot=40, dro_steps=500),
                detection=DetectionSettings(n_perm=50),
            )
        if profile == "quick":
            return base
        return replace(
            base,
            n_source=1500,
            n_target=1500,
            variance=VarianceSettings(replicates=1000, n_mc=2_000_000, n_boot=1000),
            misspecification=MisspecificationSettings(ns=(200, 2000, 20000, 200000), replicates=100),
            label=LabelSettings(n_boot=1000),
            prevalence=PrevalenceSettings(n_boot=1000),
            groups=GroupsSettings(n_boot=1000),
            detection=DetectionSettings(n_perm=1000, n_max=1500),
        )


def default_subject(settings: Settings, *, seed: int, runtime: Runtime | None = None) -> ShiftSubject:
    """Digits: covariate and label shift of a logistic model's pool, plus the spurious-feature task."""
    from sklearn.linear_model import LogisticRegression

    from multilens.data import load_digits_split
    from multilens.data.shift import digits_feature_shift, resample_to_priors, spurious_groups
    from multilens.lenses.calibration import metrics as CM
    from multilens.lenses.calibration.temperature import fit_temperature
    from multilens.seeding import as_generator, derive_seed

    s0 = part_seed(seed, LENS, "subject")
    split = load_digits_split(derive_seed(s0, "split"), test_fraction=0.5)
    xtr, ytr = split.x_train.numpy().astype(np.float64), split.y_train.numpy()
    xp, yp = split.x_test.numpy().astype(np.float64), split.y_test.numpy()
    clf = LogisticRegression(C=settings.classifier_c, max_iter=5000).fit(xtr, ytr)
    zp = clf.decision_function(xp)
    loss = -CM.log_softmax(zp)[np.arange(yp.size), yp]
    # (i) covariate shift of the pool by a known function of a feature: exact ratio and target risk.
    ink = xp.mean(1)
    fs = digits_feature_shift(ink, settings.n_target, beta=settings.beta, seed=derive_seed(s0, "feature-shift"))
    rng = as_generator(derive_seed(s0, "source-draws"))
    src = rng.integers(0, yp.size, settings.n_source)
    q = fs.ratio / yp.size  # target probabilities on the pool
    cov = CovariateData(
        loss[src],
        xp[src],
        xp[fs.target_idx],
        fs.ratio[src],
        float(np.sum(q * loss)),
        "exact: sum over the pool of target probability x loss",
    )
    # (ii) label shift: half the pool is source validation, the other half is resampled to target priors.
    perm = as_generator(derive_seed(s0, "label-split")).permutation(yp.size)
    vi, ti = perm[: yp.size // 2], perm[yp.size // 2 :]
    T = fit_temperature(yp[vi], zp[vi]).temperature  # source-calibrate (EM and B.18 need calibrated posteriors)
    k = split.n_classes
    pri = settings.prior_ratio ** np.arange(k)
    pri = pri / pri.sum()
    tidx = ti[resample_to_priors(yp[ti], pri, settings.n_label_target, derive_seed(s0, "label-resample"))]
    true_pri = np.bincount(yp[tidx], minlength=k) / tidx.size
    lab = LabelShiftData(
        yp[vi],
        CM.softmax(zp[vi] / T),
        CM.softmax(zp[tidx] / T),
        yp[tidx],
        true_pri,
        np.bincount(ytr, minlength=k) / ytr.size,
    )
    sp = spurious_groups(settings.n_group_train, settings.n_group_test, rho=settings.rho, seed=derive_seed(s0, "spur"))
    grp = GroupData(sp.x_train, sp.y_train, sp.g_train, sp.x_test, sp.y_test, sp.g_test)
    info = {
        "model": f"logistic regression (C = {settings.classifier_c:g}) on {ytr.size} digits",
        "pool": int(yp.size),
        "covariate_shift": f"target prop. to exp({settings.beta:g} x ink)",
        "label_shift": f"target priors prop. to {settings.prior_ratio:g}^k",
        "temperature": T,
        "main": "the digits model under the covariate shift",
        "digits_checksum": split.checksum,
    }
    return ShiftSubject(cov, lab, grp, (xp[src], xp[fs.target_idx]), info)


def measure(subject: ShiftSubject, settings: Settings, *, seed: int, runtime: Runtime | None = None) -> LensResult:
    t0 = time.perf_counter()
    parts, notes = run_parts(
        LENS,
        [
            ("covariate", settings.covariate, lambda ps, s: covariate_part(subject, ps, s)),
            ("variance", settings.variance, lambda ps, s: variance_part(subject, ps, s)),
            ("misspecification", settings.misspecification, lambda ps, s: misspecification_part(subject, ps, s)),
            ("label", settings.label, lambda ps, s: label_part(subject, ps, s)),
            ("prevalence", settings.prevalence, lambda ps, s: prevalence_part(subject, ps, s)),
            ("groups", settings.groups, lambda ps, s: groups_part(subject, ps, s)),
            ("detection", settings.detection, lambda ps, s: detection_part(subject, ps, s)),
        ],
        seed,
    )
    return finish(LENS, parts, settings, seed, t0, notes=notes, data={"subject": dict(subject.description)})


__all__ = [
    "CovariateData",
    "CovariateSettings",
    "DetectionSettings",
    "GroupData",
    "GroupsSettings",
    "LabelSettings",
    "LabelShiftData",
    "MisspecificationSettings",
    "PrevalenceSettings",
    "Settings",
    "ShiftSubject",
    "VarianceSettings",
    "default_subject",
    "measure",
]
