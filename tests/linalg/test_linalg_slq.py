"""Stochastic Lanczos quadrature: extremes at the exact extremes, a normalized density, a trace."""

from __future__ import annotations

import numpy as np
import pytest

from multilens.errors import ConfigError, ConvergenceWarning
from multilens.linalg import dense_matvec, gaussian_density, slq_density


def spectrum_matrix(lam: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((lam.size, lam.size)))
    a = (q * lam) @ q.T
    return 0.5 * (a + a.T)


def test_extremes_match_exact_extremes():
    rng = np.random.default_rng(0)
    lam = np.concatenate([[6.0, 4.5], rng.uniform(-0.5, 1.5, 196), [-2.0, -1.2]])
    a = spectrum_matrix(lam, 1)
    mv, dim = dense_matvec(a)
    r = slq_density(mv, dim, n_vectors=3, n_iter=80, seed=0)
    assert r.extremes_converged
    assert r.lambda_max == pytest.approx(6.0, rel=1e-6)
    assert r.lambda_min == pytest.approx(-2.0, rel=1e-6)
    assert r.residual_max <= 1e-6 * 6.0


# These two are about the density and the trace, on spectra without gaps at the edges, where the
# extremes legitimately converge slowly (and warn; that warning is tested below).
@pytest.mark.filterwarnings("ignore:SLQ extremes not converged")
def test_density_integrates_to_one_and_sigma_is_reported():
    lam = np.linspace(-1.0, 3.0, 150)
    a = spectrum_matrix(lam, 2)
    mv, dim = dense_matvec(a)
    r = slq_density(mv, dim, n_vectors=4, n_iter=40, sigma_rel=0.02, seed=1)
    assert r.sigma == pytest.approx(0.02 * (r.lambda_max - r.lambda_min))
    assert np.trapezoid(r.density, r.grid) == pytest.approx(1.0, abs=1e-3)
    assert "sigma" in r.note and r.to_dict()["sigma"] == r.sigma


@pytest.mark.filterwarnings("ignore:SLQ extremes not converged")
def test_trace_estimate_within_its_standard_error():
    rng = np.random.default_rng(3)
    lam = rng.uniform(0.0, 2.0, 120)
    a = spectrum_matrix(lam, 4)
    mv, dim = dense_matvec(a)
    errs = []
    for s in range(30):
        r = slq_density(mv, dim, n_vectors=4, n_iter=30, seed=s)
        errs.append((r.trace_estimate - lam.sum()) / r.trace_stderr)
    errs = np.array(errs)
    # Standardized errors: mean near 0, spread near 1 (t with 3 dof has sd sqrt(3) ~ 1.7).
    assert abs(errs.mean()) < 4 * errs.std(ddof=1) / np.sqrt(errs.size)
    assert 0.5 < errs.std(ddof=1) < 3.0


def test_small_matrix_quadrature_is_exact():
    """With as many steps as the dimension the quadrature reproduces v's spectral measure exactly."""
    lam = np.array([-1.0, 0.5, 2.0, 3.0])
    a = spectrum_matrix(lam, 5)
    mv, dim = dense_matvec(a)
    r = slq_density(mv, dim, n_vectors=2, n_iter=10, seed=0)
    assert r.extremes_converged
    np.testing.assert_allclose(np.sort(r.nodes[0][r.weights[0] > 0]), lam, atol=1e-10)
    np.testing.assert_allclose(r.weights.sum(axis=1), 1.0, atol=1e-12)


def test_unconverged_extremes_warn():
    lam = np.linspace(0.0, 1.0, 400)  # no gap at the edges: extremes converge slowly
    a = spectrum_matrix(lam, 6)
    mv, dim = dense_matvec(a)
    with pytest.warns(ConvergenceWarning, match="SLQ"):
        r = slq_density(mv, dim, n_vectors=2, n_iter=8, tol=1e-10, seed=0)
    assert not r.extremes_converged


def test_gaussian_density_of_one_node():
    g = np.linspace(-5, 5, 1001)
    d = gaussian_density(g, np.array([[0.0]]), np.array([[1.0]]), 1.0)
    assert d.max() == pytest.approx(1 / np.sqrt(2 * np.pi))


def test_bad_arguments():
    a = spectrum_matrix(np.arange(1.0, 11.0), 7)
    mv, dim = dense_matvec(a)
    with pytest.raises(ConfigError, match="`n_vectors`"):
        slq_density(mv, dim, n_vectors=1)
    with pytest.raises(ConfigError, match="`sigma`"):
        slq_density(mv, dim, sigma=-1.0)


@pytest.mark.filterwarnings("ignore:SLQ extremes not converged")
def test_blocking_does_not_change_the_quadrature():
    """The recurrences advanced 4 at a time (one block product per step) or one at a time give the
    same nodes and weights; the block products are counted as products."""
    rng = np.random.default_rng(8)
    a = spectrum_matrix(np.concatenate([[5.0, 3.0], rng.uniform(-1.0, 1.0, 98)]), 9)
    mv, dim = dense_matvec(a)
    r4 = slq_density(mv, dim, n_vectors=4, n_iter=20, seed=3, block_size=4)
    r1 = slq_density(lambda v: a @ v, dim, n_vectors=4, n_iter=20, seed=3, block_size=1)
    np.testing.assert_allclose(r4.nodes, r1.nodes, rtol=0, atol=1e-12)
    np.testing.assert_allclose(r4.weights, r1.weights, rtol=0, atol=1e-12)
    assert r4.n_matvec == r1.n_matvec == 80 and r4.n_blocks == 20 and r1.n_blocks == 0
