"""Block Lanczos and the cheaper missed-eigenvalue re-check against dense eigh on constructed spectra."""

from __future__ import annotations

import numpy as np
import pytest

from multilens.errors import ConfigError
from multilens.linalg import DenseOperator, dense_matvec, lanczos

RTOL = 1e-6  # the accuracy target for converged eigenvalues


def with_spectrum(lam: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A dense symmetric matrix with eigenvalues ``lam`` and its eigenvectors (columns)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((lam.size, lam.size)))
    a = (q * lam) @ q.T
    return 0.5 * (a + a.T), q


class BlockCounter(DenseOperator):
    """A dense operator that records the width of every block product."""

    def __init__(self, a: np.ndarray) -> None:
        super().__init__(a)
        self.widths: list[int] = []

    def matmat(self, v: np.ndarray) -> np.ndarray:
        self.widths.append(int(v.shape[1]))
        return self.a @ v


@pytest.fixture(scope="module")
def indefinite() -> np.ndarray:
    rng = np.random.default_rng(7)
    lam = np.concatenate([[10.0, 9.5, 9.0], rng.uniform(-3.0, 5.0, 297)])
    return with_spectrum(lam, 8)[0]


@pytest.mark.parametrize("which", ["LA", "SA", "LM"])
@pytest.mark.parametrize("b", [2, 3])
def test_block_lanczos_matches_eigh(indefinite, which, b):
    exact = np.linalg.eigvalsh(indefinite)
    want = {"LA": exact[::-1], "SA": exact, "LM": exact[np.argsort(-np.abs(exact))]}[which][:3]
    res = lanczos(*dense_matvec(indefinite), 3, which, tol=1e-8, seed=0, method="block", block_size=b)
    assert res.converged and "block" in res.method
    np.testing.assert_allclose(res.eigenvalues, want, rtol=RTOL)
    y = res.eigenvectors
    real = np.linalg.norm(indefinite @ y - y * res.eigenvalues, axis=0)
    np.testing.assert_allclose(res.residuals, real, rtol=1e-6, atol=1e-12)
    assert np.all(res.residuals <= 1e-8 * np.abs(res.eigenvalues))
    np.testing.assert_allclose(y.T @ y, np.eye(3), atol=1e-10)


def test_each_block_step_is_one_block_product(indefinite):
    """The main run applies the operator through the block seam, b columns per step, one call each."""
    op = BlockCounter(indefinite)
    res = lanczos(op, op.dim, 3, "LA", tol=1e-8, seed=1, method="block", block_size=4, deflation_check=False)
    assert res.converged
    main = res.n_matvec - res.n_matvec_check
    assert main == 4 * res.n_iter
    assert op.widths[: res.n_iter] == [4] * res.n_iter
    assert len(op.widths) == res.n_iter + res.n_matvec_check // 3  # plus the explicit-residual block(s)


@pytest.mark.parametrize("mult", [2, 3])
def test_block_finds_a_repeated_top_eigenvalue_single_vector_misses(mult):
    """A dense symmetric matrix whose top eigenvalue 10 has multiplicity ``mult``; the start vector has
    no component on all but one copy. Single-vector Lanczos (no re-check) returns one 10 and
    converged; block Lanczos from the same start plus b - 1 random vectors finds every copy in its
    main run (no re-check needed)."""
    rng = np.random.default_rng(3)
    rest = np.concatenate([[10.0, 7.0, 6.0], rng.uniform(0.0, 5.0, 195)])
    a = np.zeros((rest.size + mult - 1, rest.size + mult - 1))
    # Copies 2..mult on their own coordinates (exact zeros: rounding cannot seed them into the
    # Krylov space, which happens with a rotated copy), the rest dense with a 10 among it.
    a[: mult - 1, : mult - 1] = 10.0 * np.eye(mult - 1)
    a[mult - 1 :, mult - 1 :] = with_spectrum(rest, 5)[0]
    lam = np.concatenate([[10.0] * (mult - 1), rest])
    v0 = rng.standard_normal(lam.size)
    v0[: mult - 1] = 0.0  # no component on copies 2..mult
    k = mult + 1
    exact = np.sort(lam)[::-1][:k]
    single = lanczos(*dense_matvec(a), k, "LA", tol=1e-8, seed=0, v0=v0, deflation_check=False)
    assert single.converged
    assert np.sum(np.abs(single.eigenvalues - 10.0) < 1e-6) == 1  # the trap: one copy only
    assert not np.allclose(single.eigenvalues, exact, rtol=RTOL)
    block = lanczos(
        *dense_matvec(a), k, "LA", tol=1e-8, seed=0, v0=v0, method="block", block_size=mult, deflation_check=False
    )
    assert block.converged
    np.testing.assert_allclose(block.eigenvalues, exact, rtol=RTOL)
    # The re-check of the single-vector run finds the missing copies as well.
    checked = lanczos(*dense_matvec(a), k, "LA", tol=1e-8, seed=0, v0=v0)
    assert checked.converged and checked.n_missed_found == mult - 1
    np.testing.assert_allclose(checked.eigenvalues, exact, rtol=RTOL)


def test_block_thick_restart_and_exhaustion(indefinite):
    res = lanczos(*dense_matvec(indefinite), 3, "LA", tol=1e-9, seed=4, method="block", block_size=2, ncv=10)
    assert res.converged and res.n_restarts >= 1 and res.ncv == 10
    np.testing.assert_allclose(res.eigenvalues, np.linalg.eigvalsh(indefinite)[::-1][:3], rtol=1e-8)
    small, _ = with_spectrum(np.array([4.0, -1.0, 2.0, 0.5, 3.0]), 1)
    ex = lanczos(*dense_matvec(small), 5, "LA", seed=0, method="block", block_size=2, ncv=9)
    np.testing.assert_allclose(ex.eigenvalues, [4.0, 3.0, 2.0, 0.5, -1.0], rtol=1e-12)


def test_block_bad_arguments(indefinite):
    mv, dim = dense_matvec(indefinite)
    with pytest.raises(ConfigError, match="`method`"):
        lanczos(mv, dim, 2, method="arnoldi")
    with pytest.raises(ConfigError, match="`block_size`"):
        lanczos(mv, dim, 2, method="block", block_size=0)
    with pytest.raises(ConfigError, match="`block_size`"):
        lanczos(mv, dim, 2, block_size=3)
    with pytest.raises(ConfigError, match="`ncv`"):
        lanczos(mv, dim, 2, method="block", block_size=4, ncv=9)
    with pytest.raises(ConfigError, match="`deflation_check`"):
        lanczos(mv, dim, 2, deflation_check="maybe")
    with pytest.raises(ConfigError, match="`check_delta`"):
        lanczos(mv, dim, 2, check_delta=1.5)


# --- the cheaper re-check ---------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["LA", "SA"])
def test_cheap_check_catches_a_missed_copy_of_an_inner_eigenvalue(which):
    """The hard case: the missed copy is of the SECOND wanted eigenvalue (8, just above the third, 7.5),
    so the probe must resolve a small gap. The default check (complement of the main run's basis,
    Kuczynski-Wozniakowski stopping) catches it for every seed tried."""
    rng = np.random.default_rng(11)
    top = np.array([10.0, 8.0, 8.0, 7.5])
    lam = np.concatenate([top, rng.uniform(-2.0, 6.0, 296)])
    sign = 1.0 if which == "LA" else -1.0
    a, q = with_spectrum(sign * lam, 2)
    exact = sign * top[:3]
    for seed in range(5):
        v0 = np.random.default_rng(100 + seed).standard_normal(lam.size)
        v0 -= q[:, 2] * (q[:, 2] @ v0)  # no component on the second copy of 8
        plain = lanczos(*dense_matvec(a), 3, which, tol=1e-8, seed=seed, v0=v0, deflation_check=False)
        np.testing.assert_allclose(plain.eigenvalues, sign * np.array([10.0, 8.0, 7.5]), rtol=RTOL)  # the trap
        res = lanczos(*dense_matvec(a), 3, which, tol=1e-8, seed=seed, v0=v0)
        assert res.converged and res.n_missed_found == 1, res.note
        np.testing.assert_allclose(res.eigenvalues, exact, rtol=RTOL)


@pytest.mark.parametrize("name", ["indefinite", "cluster", "flat"])
def test_cheap_check_costs_fewer_products_than_the_gap_check(indefinite, name):
    """Nothing missed: the default check stops once the K-W bound reaches check_delta (reported as
    miss_bound <= 0.01) and needs fewer products than converging the next eigenvalue ("gap")."""
    mats = {
        "indefinite": indefinite,
        "cluster": with_spectrum(np.concatenate([1.0 - 0.004 * np.arange(40), np.linspace(-0.5, 0.8, 360)]), 4)[0],
        "flat": with_spectrum(np.linspace(0.0, 1.0, 500), 3)[0],
    }
    a = mats[name]
    exact = np.linalg.eigvalsh(a)[::-1][:3]
    cheap = lanczos(*dense_matvec(a), 3, "LA", tol=1e-8, seed=0)
    gap = lanczos(*dense_matvec(a), 3, "LA", tol=1e-8, seed=0, deflation_check="gap")
    for r in (cheap, gap):
        assert r.converged and r.deflation_checked and r.n_missed_found == 0
        np.testing.assert_allclose(r.eigenvalues, exact, rtol=RTOL)
    assert cheap.miss_bound is not None and cheap.miss_bound <= 0.01
    assert gap.miss_bound is None
    # Same main run, so the difference is the check alone.
    assert cheap.n_matvec - cheap.n_matvec_check == gap.n_matvec - gap.n_matvec_check
    assert cheap.n_matvec_check < gap.n_matvec_check, (cheap.n_matvec_check, gap.n_matvec_check)
