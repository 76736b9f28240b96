"""Lanczos and power iteration against dense eigh on matrices with constructed spectra."""

from __future__ import annotations

import numpy as np
import pytest

from multilens.errors import ConfigError, ConvergenceWarning, DataError
from multilens.linalg import dense_matvec, lanczos, power_iteration

RTOL = 1e-6  # the accuracy target for converged eigenvalues


def with_spectrum(lam: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((lam.size, lam.size)))
    a = (q * lam) @ q.T
    return 0.5 * (a + a.T)


@pytest.fixture(scope="module")
def indefinite() -> np.ndarray:
    rng = np.random.default_rng(7)
    lam = np.concatenate([[10.0, 9.5, 9.0], rng.uniform(-3.0, 5.0, 297)])
    return with_spectrum(lam, 8)


@pytest.mark.parametrize("which", ["LA", "SA", "LM"])
def test_lanczos_matches_eigh(indefinite, which):
    mv, dim = dense_matvec(indefinite)
    exact = np.linalg.eigvalsh(indefinite)
    want = {"LA": exact[::-1], "SA": exact, "LM": exact[np.argsort(-np.abs(exact))]}[which][:3]
    res = lanczos(mv, dim, 3, which, tol=1e-8, seed=0)
    assert res.converged
    np.testing.assert_allclose(res.eigenvalues, want, rtol=RTOL)
    # The reported residuals are the real ones, and they meet the tolerance.
    y = res.eigenvectors
    real = np.linalg.norm(indefinite @ y - y * res.eigenvalues, axis=0)
    np.testing.assert_allclose(res.residuals, real, rtol=1e-6, atol=1e-12)
    assert np.all(res.residuals <= 1e-8 * np.abs(res.eigenvalues))
    assert res.n_matvec >= res.n_iter > 0


def test_lanczos_eigenvectors_orthonormal(indefinite):
    mv, dim = dense_matvec(indefinite)
    res = lanczos(mv, dim, 4, "LA", seed=3)
    np.testing.assert_allclose(res.eigenvectors.T @ res.eigenvectors, np.eye(4), atol=1e-10)


def test_repeated_eigenvalue_found_by_deflation_check():
    """A start vector with no component on one copy of a repeated eigenvalue never sees it: plain
    Lanczos returns [100, 50, 10], converged with tiny residuals and wrong. The deflation check
    (a fresh start in the complement of the converged vectors) recovers the second 100."""
    rng = np.random.default_rng(0)
    lam = np.concatenate([[100.0, 100.0, 50.0, 10.0], rng.uniform(0.0, 1.0, 196)])
    a = np.diag(lam)  # diagonal: exact zeros stay exactly zero, rounding cannot seed the copy
    mv, dim = dense_matvec(a)
    v0 = rng.standard_normal(dim)
    v0[1] = 0.0
    plain = lanczos(mv, dim, 3, "LA", seed=1, v0=v0, deflation_check=False)
    assert plain.converged
    np.testing.assert_allclose(plain.eigenvalues, [100.0, 50.0, 10.0], rtol=1e-10)  # the trap
    ours = lanczos(mv, dim, 3, "LA", seed=1, v0=v0)
    assert ours.converged and ours.n_missed_found == 1
    np.testing.assert_allclose(ours.eigenvalues, [100.0, 100.0, 50.0], rtol=RTOL)
    assert "missed" in ours.note


def test_naive_few_iteration_lanczos_is_wrong_ours_is_right_or_warns():
    """A clustered top spectrum: 20 plain Lanczos steps (hessian-eigenthings' default) give a
    third eigenvalue off by far more than 1e-6, silently; ours converges, or warns at its cap."""
    lam = np.concatenate([1.0 - 0.004 * np.arange(40), np.linspace(-0.5, 0.8, 360)])
    a = with_spectrum(lam, 4)
    mv, dim = dense_matvec(a)
    exact = np.sort(lam)[::-1][:3]
    # The naive result: Ritz values of a 20-step Krylov space. Ours, capped there, says so.
    with pytest.warns(ConvergenceWarning):
        naive = lanczos(mv, dim, 3, "LA", max_iter=20, seed=5, deflation_check=False)
    assert not naive.converged
    assert abs(naive.eigenvalues[2] - exact[2]) / exact[2] > 1e-4
    ours = lanczos(mv, dim, 3, "LA", seed=5)
    assert ours.converged
    np.testing.assert_allclose(ours.eigenvalues, exact, rtol=RTOL)


def test_invariant_subspace_restarts():
    """Three distinct eigenvalues: the Krylov space is invariant after 3 steps, so the fourth wanted
    pair (a second 0.5) needs a restart in the complement instead of a division by beta = 0."""
    rng = np.random.default_rng(2)
    u = np.linalg.qr(rng.standard_normal((50, 2)))[0]
    a = (u * np.array([3.0, 2.0])) @ u.T + 0.5 * np.eye(50)  # eigenvalues 3.5, 2.5, 0.5 (x48)
    mv, dim = dense_matvec(a)
    res = lanczos(mv, dim, 4, "LA", seed=0, tol=1e-10)
    assert res.converged
    np.testing.assert_allclose(res.eigenvalues, [3.5, 2.5, 0.5, 0.5], rtol=1e-9)
    assert res.n_restarts >= 1


def test_small_dimension_is_exact():
    a = with_spectrum(np.array([4.0, -1.0, 2.0, 0.5, 3.0]), 1)
    mv, dim = dense_matvec(a)
    res = lanczos(mv, dim, 5, "LA", seed=0)
    np.testing.assert_allclose(res.eigenvalues, [4.0, 3.0, 2.0, 0.5, -1.0], rtol=1e-12)


def test_cap_warns_and_reports_not_converged(indefinite):
    mv, dim = dense_matvec(indefinite)
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        res = lanczos(mv, dim, 3, "SA", max_iter=5, seed=0, deflation_check=False)
    assert not res.converged
    assert res.n_iter == 5


def test_bad_arguments_name_the_argument(indefinite):
    mv, dim = dense_matvec(indefinite)
    with pytest.raises(ConfigError, match="`k`"):
        lanczos(mv, dim, dim + 1)
    with pytest.raises(ConfigError, match="`k`"):
        lanczos(mv, dim, 0)
    with pytest.raises(ConfigError, match="`which`"):
        lanczos(mv, dim, 1, "BE")
    with pytest.raises(ConfigError, match="`tol`"):
        lanczos(mv, dim, 1, tol=-1.0)
    with pytest.raises(ConfigError, match="`seed`"):
        lanczos(mv, dim, 1, seed=-3)
    with pytest.raises(DataError, match="non-finite"):
        lanczos(lambda v: v * np.nan, dim, 1)


def test_power_iteration_matches_eigh_and_costs_more(indefinite):
    mv, dim = dense_matvec(indefinite)
    exact = np.linalg.eigvalsh(indefinite)[::-1][:3]
    pw = power_iteration(mv, dim, 3, tol=1e-8, max_iter=5000, seed=0)
    assert pw.converged
    np.testing.assert_allclose(pw.eigenvalues, exact, rtol=RTOL)
    lz = lanczos(mv, dim, 3, "LA", tol=1e-8, seed=0)
    # The target: at least 3x fewer products than power iteration at equal accuracy.
    assert 3 * lz.n_matvec <= pw.n_matvec


def test_power_iteration_warns_at_cap(indefinite):
    mv, dim = dense_matvec(indefinite)
    with pytest.warns(ConvergenceWarning):
        pw = power_iteration(mv, dim, 1, tol=1e-12, max_iter=3, seed=0)
    assert not pw.converged and pw.n_matvec == 3


def test_seed_reproducible(indefinite):
    mv, dim = dense_matvec(indefinite)
    a = lanczos(mv, dim, 2, seed=11)
    b = lanczos(mv, dim, 2, seed=11)
    assert a.n_matvec == b.n_matvec
    np.testing.assert_array_equal(a.eigenvalues, b.eigenvalues)
    assert a.to_dict()["converged"] is True


def test_one_lanczos_recurrence_serves_eigenvalues_slq_and_the_check():
    """Issue 8: one recurrence. Lanczos, the re-check and SLQ all advance krylov.LanczosProcess; a
    tridiagonalization from the same start gives the same Ritz values as the eigen-solver's basis."""
    import importlib

    krylov, lanczos_mod, slq = (importlib.import_module(f"multilens.linalg.{m}") for m in ("krylov", "lanczos", "slq"))
    assert lanczos_mod.LanczosProcess is krylov.LanczosProcess is slq.LanczosProcess
    lam = np.linspace(1.0, 2.0, 30)
    a = with_spectrum(lam, 3)
    mv, dim = dense_matvec(a)
    from multilens.linalg import tridiagonalize

    tri = tridiagonalize(mv, np.ones(dim), dim)
    assert tri.invariant and tri.n_matvec == dim
    t = np.diag(tri.alphas) + np.diag(tri.betas, 1) + np.diag(tri.betas, -1)
    np.testing.assert_allclose(np.linalg.eigvalsh(t), lam, rtol=1e-12)


def arpack_count(a: np.ndarray, k: int, tol: float, v0: np.ndarray) -> tuple[int, np.ndarray]:
    from scipy.sparse.linalg import LinearOperator, eigsh

    n = [0]

    def mv(v):
        n[0] += 1
        return a @ v

    w = eigsh(LinearOperator(a.shape, matvec=mv, dtype=np.float64), k=k, which="LA", tol=tol, v0=v0)[0]
    return n[0], np.sort(w)[::-1]


@pytest.mark.parametrize(
    "name,k",
    [("indefinite", 3), ("cluster", 3), ("flat", 1), ("flat", 6)],
)
def test_main_run_needs_no_more_products_than_arpack(indefinite, name, k):
    """Issue 15: thick-restart Lanczos reaches top-k to 1e-6 of eigh with no more products in its main
    run than scipy's ARPACK (eigsh, which="LA", same tol and start vector); the residual products and
    the re-check are counted apart in n_matvec_check."""
    mats = {
        "indefinite": indefinite,
        "cluster": with_spectrum(np.concatenate([1.0 - 0.004 * np.arange(40), np.linspace(-0.5, 0.8, 360)]), 4),
        "flat": with_spectrum(np.linspace(0.0, 1.0, 500), 3),
    }
    a = mats[name]
    exact = np.linalg.eigvalsh(a)[::-1][:k]
    v0 = np.random.default_rng(1).standard_normal(a.shape[0])
    n_arpack, w = arpack_count(a, k, 1e-8, v0)
    # ncv = ARPACK's max(2k+1, 20): the same memory, so thick restarts happen as ARPACK's restarts do.
    res = lanczos(*dense_matvec(a), k, "LA", tol=1e-8, v0=v0, seed=0, ncv=max(2 * k + 1, 20))
    assert res.converged and res.deflation_checked
    np.testing.assert_allclose(res.eigenvalues, exact, rtol=1e-6)
    np.testing.assert_allclose(w, exact, rtol=1e-6)  # ARPACK reached the same accuracy
    main = res.n_matvec - res.n_matvec_check
    assert 0 < res.n_matvec_check < res.n_matvec
    assert main <= n_arpack, (main, n_arpack)
    assert res.to_dict()["n_matvec_main"] == main
    if name != "indefinite":
        assert res.n_restarts >= 1  # the thick restart was exercised


def test_thick_restart_bounds_the_basis(indefinite):
    """A basis of ncv = 8 vectors forces restarts; the answer is still eigh's."""
    mv, dim = dense_matvec(indefinite)
    res = lanczos(mv, dim, 3, "LA", tol=1e-9, seed=4, ncv=8)
    assert res.converged and res.n_restarts >= 1 and res.ncv == 8
    np.testing.assert_allclose(res.eigenvalues, np.linalg.eigvalsh(indefinite)[::-1][:3], rtol=1e-8)
    with pytest.raises(ConfigError, match="`ncv`"):
        lanczos(mv, dim, 3, ncv=4)
