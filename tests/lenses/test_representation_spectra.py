"""Spectral estimators of the representation lens against closed forms on exactly built matrices."""

from __future__ import annotations

import math

import numpy as np
import pytest

from multilens.errors import ConfigError
from multilens.lenses.representation import spectra as sp
from multilens.representation import effective_rank, principal_angles, rankme, spectrum


def exact_cov_matrix(eigs: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Z (n x d) whose centred sample covariance has exactly the eigenvalues ``eigs``."""
    d = eigs.size
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, d))
    a -= a.mean(axis=0)  # columns orthogonal to the ones vector
    u, _ = np.linalg.qr(a)  # n x d orthonormal, still centred
    v, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return math.sqrt(n - 1) * (u * np.sqrt(eigs)) @ v.T + rng.standard_normal(d)  # plus an arbitrary mean


def test_isotropic_spectrum_closed_form():
    d, n = 12, 80
    s = sp.summarize(exact_cov_matrix(np.ones(d), n), top_k=3)
    np.testing.assert_allclose(s.eigenvalues, np.ones(d), atol=1e-10)
    assert s.participation_ratio == pytest.approx(d, abs=1e-9)
    assert s.stable_rank == pytest.approx(d, abs=1e-9)
    assert s.top_k_explained == pytest.approx(3 / d, abs=1e-12)
    assert s.tail_mass == pytest.approx(0.5, abs=1e-12)
    assert s.condition_number == pytest.approx(1.0, abs=1e-9)
    assert s.numerical_rank == d
    assert s.rank_deficit == pytest.approx(0.0, abs=1e-9)


def test_power_law_spectrum_closed_form():
    d, n, alpha = 20, 100, 1.5
    lam = np.arange(1, d + 1, dtype=float) ** -alpha
    s = sp.summarize(exact_cov_matrix(lam, n), top_k=4)
    assert s.participation_ratio == pytest.approx(lam.sum() ** 2 / (lam**2).sum(), rel=1e-9)
    assert s.stable_rank == pytest.approx(lam.sum() / lam[0], rel=1e-9)
    assert s.top_k_explained == pytest.approx(lam[:4].sum() / lam.sum(), rel=1e-9)
    assert s.tail_mass == pytest.approx(lam[10:].sum() / lam.sum(), rel=1e-9)
    assert s.condition_number == pytest.approx(d**alpha, rel=1e-8)
    assert s.rank_deficit == pytest.approx(d - lam.sum() ** 2 / (lam**2).sum(), rel=1e-9)


def test_planted_rank_k_spectrum():
    d, n, k = 16, 60, 3
    lam = np.zeros(d)
    lam[:k] = [4.0, 2.0, 1.0]
    s = sp.summarize(exact_cov_matrix(lam, n))
    assert s.numerical_rank == k
    assert s.condition_number == pytest.approx(4.0, rel=1e-8)  # over the nonzero eigenvalues only
    assert s.participation_ratio == pytest.approx(49 / 21, rel=1e-9)
    assert s.tail_mass == pytest.approx(0.0, abs=1e-12)


def test_rankme_exact_rank_one_is_one():
    rng = np.random.default_rng(1)
    z = np.outer(rng.standard_normal(200), rng.standard_normal(64))
    assert abs(sp.rankme_value(z) - 1.0) < 1e-6
    est = rankme(z, n_boot=20, seed=0)
    assert abs(est.value - 1.0) < 1e-6 and est.ci_low is not None and abs(est.ci_high - 1.0) < 1e-6
    # A rank-1 matrix plus a constant offset is rank 2 uncentred, rank 1 centred: the variant is by name.
    z2 = z + rng.standard_normal(64)
    assert abs(sp.rankme_value(z2, centred=True) - 1.0) < 1e-6
    assert sp.rankme_value(z2) > 1.0 + 1e-3


def test_rankme_closed_form_entropy():
    s = np.array([4.0, 2.0, 1.0, 1.0])
    z = np.zeros((10, 4))
    z[:4, :4] = np.diag(s)
    p = s / s.sum()
    assert sp.rankme_value(z, eps=0.0) == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-12)
    assert sp.rankme_value(np.eye(7)) == pytest.approx(7.0, rel=1e-9)


def test_principal_angles_of_known_subspaces():
    t = 0.3
    a = np.zeros((4, 2))
    a[0, 0] = a[1, 1] = 1.0
    b = np.zeros((4, 2))
    b[0, 0] = 1.0
    b[1, 1], b[2, 1] = math.cos(t), math.sin(t)
    res = principal_angles(a, b * 3.0, bases=True)  # scaling the columns does not change the span
    np.testing.assert_allclose(res.angles_deg, [0.0, math.degrees(t)], atol=1e-10)
    assert res.overlap.value == pytest.approx((1 + math.cos(t) ** 2) / 2, abs=1e-12)
    orth = principal_angles(np.eye(4)[:, :2], np.eye(4)[:, 2:], bases=True)
    np.testing.assert_allclose(orth.angles_deg, [90.0, 90.0], atol=1e-10)


def test_principal_angles_from_data_recover_planted_subspaces():
    rng = np.random.default_rng(3)
    d, n = 6, 400
    za = rng.standard_normal((n, 2)) @ np.eye(d)[:2] * 10 + 0.01 * rng.standard_normal((n, d))
    zb = rng.standard_normal((n, 2)) @ np.eye(d)[[0, 2]] * 10 + 0.01 * rng.standard_normal((n, d))
    res = principal_angles(za, zb, k=2, n_boot=30, seed=0)
    np.testing.assert_allclose(res.angles_deg, [0.0, 90.0], atol=0.5)
    assert res.overlap.ci_low <= 0.5 + 1e-3 and res.overlap.ci_high >= 0.5 - 1e-3


def test_isotropic_gaussian_pr_matches_wishart_moments():
    """Mean PR over draws vs the ratio-of-expectations formula (n large: its O(1/n) error is tiny)."""
    n, d = 400, 10
    vals = sp.mp_null(n, d, lambda z: sp.participation_ratio(sp.covariance_eigenvalues(z)), n_draws=200, seed=5)
    se = vals.std(ddof=1) / math.sqrt(vals.size)
    assert abs(vals.mean() - sp.expected_isotropic_pr(n, d)) < 4 * se + 0.02


def test_mp_edge_counts_planted_spikes():
    rng = np.random.default_rng(7)
    n, d = 2000, 40
    z = rng.standard_normal((n, d))
    z[:, :3] *= np.array([6.0, 5.0, 4.0])
    ev = sp.covariance_eigenvalues(z)
    assert sp.n_spikes_above_mp_edge(ev, n, d) == 3
    # Pure noise: the top eigenvalue sits at the edge (Tracy-Widom spread), so the finite-n edge is used.
    assert spectrum(rng.standard_normal((n, d)), n_boot=5, n_null=40, seed=0, metrics=("rankme",)).n_spikes == 0
    assert spectrum(z, n_boot=5, n_null=40, seed=0, metrics=("rankme",)).n_spikes == 3


def test_spectrum_null_brackets_isotropic_and_excludes_structure():
    rng = np.random.default_rng(11)
    n, d = 300, 16
    iso = spectrum(rng.standard_normal((n, d)), n_boot=40, n_null=40, seed=0, metrics=("participation_ratio",))
    lo, _, hi = iso.null["participation_ratio"]
    assert lo - 0.3 <= iso.estimates["participation_ratio"].value <= hi + 0.3
    z = rng.standard_normal((n, d)) * np.linspace(3, 0.1, d)
    st = spectrum(z, n_boot=40, n_null=40, seed=0, metrics=("participation_ratio",))
    assert st.estimates["participation_ratio"].ci_high < st.null["participation_ratio"][0]


def test_basic_bootstrap_covers_population_pr():
    """Coverage of the basic bootstrap for the population PR (= d) of isotropic data, over seeds."""
    n, d, hits, reps = 300, 8, 0, 20
    for s in range(reps):
        z = np.random.default_rng(100 + s).standard_normal((n, d))
        e = effective_rank(z, n_boot=100, seed=s)
        hits += e.ci_low <= d <= e.ci_high
    assert hits >= 15  # nominal 95%: P(Binomial(20, 0.95) < 15) < 0.001


def test_bad_inputs_raise():
    with pytest.raises(ConfigError, match="2-D"):
        rankme(np.ones(5))
    with pytest.raises(ConfigError, match="non-finite"):
        rankme(np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(ConfigError, match="measure"):
        effective_rank(np.eye(3), measure="nope")


def test_public_module_imports_first_in_a_fresh_interpreter():
    import subprocess
    import sys

    code = "from multilens.representation import rankme; import numpy as np; print(rankme(np.eye(3), n_boot=2).value)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout) == pytest.approx(3.0, rel=1e-9)
