"""Distribution-shift generators with known structure (known density ratio, known priors, known groups).

* :func:`gaussian_covariate_shift`: x ~ N(mu_s, s_s^2 I) at the source and N(mu_t, s_t^2 I) at the
  target, y | x the same in both (a fixed labelling function plus noise), so the density ratio
  w(x) = p_t(x) / p_s(x) is known in closed form (:meth:`CovariateShift.true_ratio`).
* :func:`digits_feature_shift`: real digits reweighted by a known function of one feature: target
  examples are drawn from the source pool with probability proportional to exp(beta f(x)), so
  w(x) = exp(beta f(x)) / E_s[exp(beta f)] exactly, relative to the pool.
* :func:`digits_label_shift`: digits resampled to given target class priors (p(x | y) unchanged).
* :func:`spurious_groups`: a binary task whose label is carried by a weak core feature and,
  in training, by a strong spurious one that agrees with the label in a fraction ``rho`` of
  examples; groups are (label, spurious) pairs; at test the correlation is broken (balanced).
* :func:`gaussian_corruption`: additive Gaussian noise on inputs (a corruption shift).

Every generator takes a seed and draws from its own ``numpy.random.Generator``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from multilens.errors import ConfigError
from multilens.seeding import SeedLike, as_generator
from multilens.validation import check_int, check_positive


def gaussian_corruption(x: np.ndarray, std: float, seed: SeedLike) -> np.ndarray:
    """x + N(0, std^2) noise, elementwise (float64 copy; the input is not modified)."""
    check_positive("std", std)
    rng = as_generator(seed)
    return np.asarray(x, np.float64) + std * rng.standard_normal(np.shape(x))


@dataclass(frozen=True)
class CovariateShift:
    """Source and target samples of an isotropic Gaussian covariate shift with a known ratio."""

    x_s: np.ndarray
    y_s: np.ndarray
    x_t: np.ndarray
    y_t: np.ndarray
    mu_s: np.ndarray
    mu_t: np.ndarray
    sd_s: float
    sd_t: float

    def log_ratio(self, x: np.ndarray) -> np.ndarray:
        """log p_t(x) - log p_s(x) in closed form."""
        x = np.asarray(x, np.float64)
        d = x.shape[1]
        lt = -0.5 * np.sum((x - self.mu_t) ** 2, 1) / self.sd_t**2 - d * np.log(self.sd_t)
        ls = -0.5 * np.sum((x - self.mu_s) ** 2, 1) / self.sd_s**2 - d * np.log(self.sd_s)
        return lt - ls

    def true_ratio(self, x: np.ndarray) -> np.ndarray:
        return np.exp(self.log_ratio(x))

    def second_moment(self) -> float:
        """E_s[w^2] in closed form (finite only when 2 / sd_t^2 > 1 / sd_s^2)."""
        a = 2.0 / self.sd_t**2 - 1.0 / self.sd_s**2
        if a <= 0:
            return float("inf")
        d = self.mu_s.shape[0]
        # E_s[w^2] = int p_t^2 / p_s, a Gaussian integral.
        m = (2.0 * self.mu_t / self.sd_t**2 - self.mu_s / self.sd_s**2) / a
        c = np.sum(self.mu_s**2) / self.sd_s**2 - 2.0 * np.sum(self.mu_t**2) / self.sd_t**2 + a * np.sum(m**2)
        return float(self.sd_s**d / (self.sd_t ** (2 * d)) * a ** (-d / 2) * np.exp(0.5 * c))


def regression_target(x: np.ndarray) -> np.ndarray:
    """The labelling function of :func:`gaussian_covariate_shift`: sin(2 x_0) + x_0 (nonlinear in x_0)."""
    return np.sin(2.0 * x[:, 0]) + x[:, 0]


def gaussian_covariate_shift(
    n_source: int, n_target: int, *, dim: int = 1, shift: float = 1.0, sd_s: float = 1.0, sd_t: float = 0.7,
    noise: float = 0.3, seed: SeedLike,
) -> CovariateShift:  # fmt: skip
    """y = sin(2 x_0) + x_0 + noise; source N(0, sd_s^2 I), target N(shift e_0, sd_t^2 I)."""
    check_int("n_source", n_source, 2)
    check_int("n_target", n_target, 2)
    check_int("dim", dim, 1)
    check_positive("sd_s", sd_s)
    check_positive("sd_t", sd_t)
    rng = as_generator(seed)
    mu_s = np.zeros(dim)
    mu_t = np.zeros(dim)
    mu_t[0] = shift
    x_s = mu_s + sd_s * rng.standard_normal((n_source, dim))
    x_t = mu_t + sd_t * rng.standard_normal((n_target, dim))
    y_s = regression_target(x_s) + noise * rng.standard_normal(n_source)
    y_t = regression_target(x_t) + noise * rng.standard_normal(n_target)
    return CovariateShift(x_s, y_s, x_t, y_t, mu_s, mu_t, float(sd_s), float(sd_t))


@dataclass(frozen=True)
class FeatureShift:
    """Digits reweighted by exp(beta f(x)): indices into one pool, and the exact ratio on the pool."""

    source_idx: np.ndarray
    target_idx: np.ndarray
    ratio: np.ndarray  # w on the whole pool: exp(beta f) / mean_pool exp(beta f)
    feature: np.ndarray


def digits_feature_shift(feature: np.ndarray, n_target: int, *, beta: float, seed: SeedLike) -> FeatureShift:
    """Target = draws (with replacement) from the pool with probability prop. to exp(beta * feature).

    The source is the whole pool (uniform); the ratio of the target to the source empirical
    distribution is exactly ``n_pool * softmax(beta * feature)``.
    """
    f = np.asarray(feature, np.float64)
    rng = as_generator(seed)
    logits = beta * (f - f.max())
    q = np.exp(logits)
    q /= q.sum()
    tgt = rng.choice(f.shape[0], size=n_target, replace=True, p=q)
    return FeatureShift(np.arange(f.shape[0]), tgt, q * f.shape[0], f)


def resample_to_priors(labels: np.ndarray, priors: np.ndarray, n: int, seed: SeedLike) -> np.ndarray:
    """Indices of n draws with class counts as close to n * priors as possible, within class uniformly.

    Draws are without replacement while a class has enough examples, then with replacement.
    """
    y = np.asarray(labels)
    pri = np.asarray(priors, np.float64)
    k = pri.shape[0]
    if np.any(pri < 0) or abs(pri.sum() - 1) > 1e-9:
        raise ConfigError(f"`priors` must be a probability vector; got {pri}.")
    rng = as_generator(seed)
    counts = np.floor(pri * n).astype(int)
    rest = n - counts.sum()
    if rest:
        frac = pri * n - counts
        counts[np.argsort(-frac, kind="stable")[:rest]] += 1
    out = []
    for c in range(k):
        pool = np.flatnonzero(y == c)
        if counts[c] == 0:
            continue
        if pool.size == 0:
            raise ConfigError(f"class {c} has no examples but target prior {pri[c]:g} > 0.")
        out.append(rng.choice(pool, size=counts[c], replace=counts[c] > pool.size))
    idx = np.concatenate(out)
    return idx[rng.permutation(idx.size)]


@dataclass(frozen=True)
class SpuriousTask:
    x_train: np.ndarray
    y_train: np.ndarray
    g_train: np.ndarray  # group = 2 * y + spurious attribute
    x_test: np.ndarray
    y_test: np.ndarray
    g_test: np.ndarray


def spurious_groups(
    n_train: int, n_test: int, *, rho: float = 0.95, core_snr: float = 1.0, spur_snr: float = 3.0,
    n_noise: int = 5, seed: SeedLike,
) -> SpuriousTask:  # fmt: skip
    """Binary labels y in {0, 1}; a spurious attribute a = y w.p. rho in training (0.5 at test).

    x = [core, spurious, noise...]: core ~ N(core_snr (2y - 1), 1), spurious ~ N(spur_snr (2a - 1), 1).
    The minority groups (a != y) are rare in training, so a model can reach low training loss by
    leaning on the spurious coordinate and fail on them.
    """
    if not 0.5 <= rho < 1:
        raise ConfigError(f"`rho` must be in [0.5, 1); got {rho}.")
    rng = as_generator(seed)

    def draw(n: int, r: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        y = rng.integers(0, 2, n)
        a = np.where(rng.random(n) < r, y, 1 - y)
        core = core_snr * (2 * y - 1) + rng.standard_normal(n)
        spur = spur_snr * (2 * a - 1) + rng.standard_normal(n)
        x = np.column_stack([core, spur, rng.standard_normal((n, n_noise))])
        return x, y, 2 * y + a

    xtr, ytr, gtr = draw(n_train, rho)
    xte, yte, gte = draw(n_test, 0.5)
    return SpuriousTask(xtr, ytr, gtr, xte, yte, gte)


def threshold_shift(
    n_source: int, n_target: int, *, seed: SeedLike, source_mean: float = -1.5, target_mean: float = 0.8,
    sd: float = 0.6,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """A.6's threshold problem: P(y = 1 | x) = Phi(3 sin(2 x)) (not monotone); source mass away from
    the target's region. Returns x_s, y_s, x_t, y_t (1-D x)."""
    rng = as_generator(seed)
    xs = source_mean + sd * rng.standard_normal(n_source)
    xt = target_mean + sd * rng.standard_normal(n_target)
    p = lambda x: sps.norm.cdf(3.0 * np.sin(2.0 * x))  # noqa: E731
    ys = (rng.random(n_source) < p(xs)).astype(np.int64)
    yt = (rng.random(n_target) < p(xt)).astype(np.int64)
    return xs, ys, xt, yt
