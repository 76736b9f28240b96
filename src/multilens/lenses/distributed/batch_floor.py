"""m workers at batch b against one process at batch m*b: the SGD loss floor (protocol consistency 9).

The problem: least squares on fixed data, L(theta) = ||X theta - y||^2 / (2 n), with minimiser
theta_hat (lstsq) and residuals r_i = y_i - x_i^T theta_hat. Synchronous data-parallel SGD with m
gloo workers: each rank draws b rows with replacement (``sampler="global"``: from all n rows;
``"shards"``: from its own contiguous n/m rows, like a DistributedSampler), computes the mean
gradient of its rows, the ranks all-reduce and average, and every rank takes the step
theta <- theta - eta g. The comparison: one process drawing m*b rows from all n rows at the same
eta. The measured *floor* is the excess loss L(theta_t) - L(theta_hat) averaged over the steps after
``burn_in`` (each replica's time average; the interval is Student-t over independent replicas).

The prediction is exact (no asymptotics). With e = theta - theta_hat, the averaged gradient is
g = H e + xi with E[xi | e] = 0 and, for a_i = x_i x_i^T e - x_i r_i drawn from shard k,

    Cov(g | e) = 1/(m^2 b) sum_k [E_k a a^T - E_k a E_k a^T],

which is affine in e e^T and e. So mu_t = E e_t follows mu_{t+1} = (I - eta H) mu_t and
S_t = E e_t e_t^T a linear recursion S_{t+1} = A S_t A + eta^2 (D(S_t) + L(mu_t) + C) with
A = I - eta H, D(S) = 1/(m^2 b) sum_k [F_k(S) - H_k S H_k], F_k(S) = mean_{i in k} x_i x_i^T S x_i x_i^T,
C = 1/(m^2 b) sum_k [mean_{i in k} r_i^2 x_i x_i^T - c_k c_k^T], c_k = mean_{i in k} x_i r_i, and
L(mu) the terms linear in mu. E[excess loss] = tr(H S_t) / 2. With global sampling the m workers'
average is the mean of m*b rows drawn with replacement from all rows: the same law as one process
at batch m*b (the noise-floor theorem's 1/(m b) scaling); with shards the stratified noise differs
by the c_k c_k^T and H_k terms, which the exact recursion includes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from multilens.seeding import as_generator, derive_seed, torch_generator

SAMPLERS = ("global", "shards")


# ---------------------------------------------------------------------------------------------
# The problem and its exact floor


@dataclass(frozen=True)
class Regression:
    x: np.ndarray  # (n, d)
    y: np.ndarray  # (n,)
    theta_hat: np.ndarray
    hessian: np.ndarray  # X^T X / n

    @property
    def lam_max(self) -> float:
        return float(np.linalg.eigvalsh(self.hessian)[-1])

    def eta(self, eta_l: float) -> float:
        return eta_l / self.lam_max


def make_regression(n: int, dim: int, kappa: float, noise: float, seed: int) -> Regression:
    """x ~ N(0, diag(linspace(1/kappa, 1))), y = x w + noise N(0, 1): a well-specified regression."""
    g = as_generator(seed)
    scale = np.sqrt(np.linspace(1.0 / kappa, 1.0, dim))
    x = g.standard_normal((n, dim)) * scale[None, :]
    w = g.standard_normal(dim) / np.sqrt(dim)
    y = x @ w + noise * g.standard_normal(n)
    theta_hat = np.linalg.lstsq(x, y, rcond=None)[0]
    h = x.T @ x / n
    return Regression(x, y, theta_hat, 0.5 * (h + h.T))


def shard_slices(n: int, m: int, sampler: str) -> list[tuple[int, int]]:
    """The rows each rank samples from: all n (global) or contiguous n/m (shards)."""
    if sampler == "global":
        return [(0, n)] * m
    size = n // m
    return [(k * size, (k + 1) * size) for k in range(m)]


@dataclass(frozen=True)
class ExactFloor:
    floor: float  # stationary E[excess loss]
    curve: np.ndarray  # E[excess loss] at steps 0..steps
    tail_mean: float  # mean of curve over steps burn_in+1..steps (what the measurement averages)
    spectral_radius: float  # of the second-moment map; < 1: a stationary floor exists


def exact_floor(
    prob: Regression, eta: float, m: int, b: int, sampler: str, steps: int, burn_in: int
) -> ExactFloor:  # fmt: skip
    """The exact expected excess-loss curve and stationary floor of averaged SGD (see the module docstring)."""
    x, n, d = prob.x, prob.x.shape[0], prob.x.shape[1]
    r = prob.y - x @ prob.theta_hat
    h = prob.hessian
    eye = np.eye(d)
    a = eye - eta * h
    dd = d * d
    lin_s = np.kron(a, a)  # vec(A S A) = (A kron A) vec(S) (A symmetric)
    const = np.zeros((d, d))
    lin_mu = np.zeros((dd, d))  # vec of the terms linear in mu
    w = eta * eta / (m * m * b)
    for lo, hi in shard_slices(n, m, sampler):
        xs, rs = x[lo:hi], r[lo:hi]
        nk = hi - lo
        hk = xs.T @ xs / nk
        ck = xs.T @ rs / nk
        z = np.einsum("id,ie->ide", xs, xs).reshape(nk, dd)  # rows vec(x x^T)
        lin_s += w * (z.T @ z / nk - np.kron(hk, hk))  # F_k(S) - H_k S H_k
        const += w * ((xs * (rs**2)[:, None]).T @ xs / nk - np.outer(ck, ck))
        # - G_k(mu) - G_k(mu)^T + H_k mu c_k^T + c_k mu^T H_k, G_k(mu) = mean r_i (x_i . mu) x_i x_i^T (symmetric)
        g_op = np.einsum("i,ij,ik->jk", rs, xs, z).T / nk  # (dd, d): vec(G_k(mu)) = g_op @ mu
        hc = np.einsum("ab,c->acb", hk, ck).reshape(dd, d) + np.einsum("a,cb->acb", ck, hk).reshape(dd, d)
        lin_mu += w * (-2.0 * g_op + hc)
    rho = float(np.max(np.abs(np.linalg.eigvals(lin_s))))
    floor = float("nan")
    if rho < 1.0:
        s_inf = np.linalg.solve(np.eye(dd) - lin_s, const.reshape(dd)).reshape(d, d)
        floor = 0.5 * float(np.sum(h * s_inf))
    e0 = -prob.theta_hat  # theta_0 = 0
    mu = e0.copy()
    s = np.outer(e0, e0).reshape(dd)
    curve = np.empty(steps + 1)
    hv = h.reshape(dd)
    curve[0] = 0.5 * float(hv @ s)
    for t in range(steps):
        s = lin_s @ s + const.reshape(dd) + lin_mu @ mu
        mu = a @ mu
        curve[t + 1] = 0.5 * float(hv @ s)
    return ExactFloor(floor, curve, float(np.mean(curve[burn_in + 1 :])), rho)


# ---------------------------------------------------------------------------------------------
# The worker task


def ls_batch_floor(p: dict[str, Any], comm: Any, ctx: Any) -> dict[str, Any]:
    """Averaged minibatch SGD on the regression, ``replicas`` independent runs in lockstep."""
    prob = make_regression(int(p["n"]), int(p["dim"]), float(p["kappa"]), float(p["noise"]), int(p["problem_seed"]))
    x = torch.as_tensor(prob.x, dtype=torch.float64, device=ctx.device)
    y = torch.as_tensor(prob.y, dtype=torch.float64, device=ctx.device)
    h = torch.as_tensor(prob.hessian, dtype=torch.float64, device=ctx.device)
    th_hat = torch.as_tensor(prob.theta_hat, dtype=torch.float64, device=ctx.device)
    m, reps, b, steps, burn = comm.world_size, int(p["replicas"]), int(p["batch"]), int(p["steps"]), int(p["burn_in"])
    eta = float(p["eta"])
    lo, hi = shard_slices(x.shape[0], m, p["sampler"])[comm.rank]
    gen = torch_generator(derive_seed(ctx.seed, "batch-floor", p["name"], ctx.global_rank))
    theta = torch.zeros((reps, x.shape[1]), dtype=torch.float64, device=ctx.device)
    curve = np.empty(steps + 1)
    tail = np.zeros(reps)

    def excess() -> np.ndarray:
        e = theta - th_hat
        return 0.5 * ((e @ h) * e).sum(1).cpu().numpy()

    curve[0] = float(excess().mean())
    comm.barrier()
    comm.start()
    for t in range(steps):
        comm.set_step(t)
        idx = torch.randint(lo, hi, (reps, b), generator=gen).to(ctx.device)
        xb = x[idx]  # (R, b, d)
        res = torch.einsum("rbd,rd->rb", xb, theta) - y[idx]
        grad = torch.einsum("rbd,rb->rd", xb, res) / b
        comm.allreduce_sum(grad)
        theta -= eta * grad / m
        with comm.paused():
            ex = excess()
            curve[t + 1] = float(ex.mean())
            if t + 1 > burn:
                tail += ex
    out: dict[str, Any] = {"log": comm.log.to_dict()}
    if comm.rank == 0:
        out["curve"] = curve.tolist()
        out["tail_mean"] = (tail / (steps - burn)).tolist()
        out["n_tail"] = steps - burn
    return out


def batch_floor_tasks(ps: Any, seed: int) -> list[dict[str, Any]]:
    """Two tasks: m workers at batch b, and one process at batch m*b (the same problem and eta)."""
    prob_seed = derive_seed(seed, "batch-floor-problem")
    prob = make_regression(ps.n_rows, ps.dim, ps.kappa, ps.noise, prob_seed)
    common = {
        "kind": "ls_batch_floor", "seed": seed, "n": ps.n_rows, "dim": ps.dim, "kappa": ps.kappa, "noise": ps.noise,
        "problem_seed": prob_seed, "eta": prob.eta(ps.eta_l), "replicas": ps.replicas, "steps": ps.steps,
        "burn_in": ps.burn_in,
    }  # fmt: skip
    return [
        {**common, "name": "bfloor_workers", "ranks": list(range(ps.workers)), "batch": ps.batch,
         "sampler": ps.sampler},
        {**common, "name": "bfloor_single", "ranks": [0], "batch": ps.workers * ps.batch, "sampler": "global"},
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# The part


def batch_floor_part(ps: Any, seed: int, outputs: Any) -> Any:
    from multilens.lenses.distributed.analysis import task_records
    from multilens.lenses.distributed.common import f, layout, subsample, trace
    from multilens.results import Assumption, Check, Estimate, Figure, Part, Table, check_in_interval
    from multilens.results import metric_with_interval as mwi
    from multilens.stats import DETERMINISTIC, mean_ci

    prob = make_regression(ps.n_rows, ps.dim, ps.kappa, ps.noise, derive_seed(seed, "batch-floor-problem"))
    eta = prob.eta(ps.eta_l)
    m, b = ps.workers, ps.batch
    runs = (("workers", "bfloor_workers", m, b, ps.sampler), ("single_big_batch", "bfloor_single", 1, m * b, "global"))
    est: list[Estimate] = []
    checks: list[Check] = []
    metrics: dict[str, float] = {}
    rows, traces = [], []
    for key, task, mm, bb, sampler in runs:
        rec0 = task_records(outputs, task)[0]
        ex = exact_floor(prob, eta, mm, bb, sampler, ps.steps, ps.burn_in)
        ci = mean_ci(np.asarray(rec0["tail_mean"], dtype=np.float64), ps.level, unit="replicas")
        e = ci.to_estimate(
            f"distributed.floor_{key}",
            unit="excess loss",
            note=f"{mm} process(es) x batch {bb} ({sampler} sampling), eta = {eta:.4g}: excess loss averaged over "
            f"steps {ps.burn_in + 1}..{ps.steps}, Student t over {ps.replicas} replicas",
            converged=None,
            n_iter=ps.steps,
        )
        est.append(e)
        est.append(
            Estimate(
                f"exact_floor_{key}",
                f(ex.floor),
                n=1,
                unit="excess loss",
                no_interval_reason=DETERMINISTIC,
                note="stationary E[excess loss], exact linear recursion",
            )
        )
        metrics |= mwi(f"distributed.floor_{key}", e)
        checks.append(
            Check(
                f"batch_floor_stationary_{key}",
                ex.spectral_radius < 1.0,
                ex.spectral_radius,
                1.0,
                0.0,
                f"spectral radius of the exact second-moment map = {ex.spectral_radius:.4g} (a floor exists iff < 1)",
                kind="sanity",
                criterion="spectral radius of the second-moment recursion < 1",
            )
        )
        checks.append(
            check_in_interval(
                f"batch_floor_exact_{key}",
                ex.tail_mean,
                e.ci_low,
                e.ci_high,
                kind="agreement",
                what=f"exact expected tail-averaged excess loss ({mm} x batch {bb}) in the measured interval",
            )
        )
        rows.append([key, mm, bb, mm * bb, sampler, eta, e.value, e.ci_low, e.ci_high, ex.tail_mean, f(ex.floor)])
        curve = np.asarray(rec0["curve"], dtype=np.float64)
        idx = subsample(curve.size)
        traces += [
            trace(idx, curve[idx], f"measured: {mm} x batch {bb}", "lines"),
            trace(idx, ex.curve[idx], f"exact: {mm} x batch {bb}", "lines", line={"dash": "dash"}),
        ]
    table = Table(
        "batch_floor",
        "SGD loss floor: m workers at batch b against one process at batch m*b",
        ["run", "processes", "batch per process", "global batch", "sampler", "eta", "measured floor", "ci_low",
         "ci_high", "exact tail mean", "exact stationary floor"],
        rows,
        caption=f"m = {m}, b = {b}; least squares with n = {ps.n_rows}, d = {ps.dim}; the protocol compares the two "
        "measured floors (consistency 9)",
    )  # fmt: skip
    fig = Figure(
        "batch_floor_curves",
        "Excess loss vs steps: m workers at batch b and one process at batch m*b",
        traces,
        layout("step", "E[L(theta_t) - L(theta_hat)]", ylog=True),
        f"Mean over {ps.replicas} replicas; dashed: the exact expectation.",
    )
    return Part(
        "batch_floor",
        tuple(est),
        tuple(checks),
        (fig,),
        (table,),
        (
            Assumption(
                "the averaged gradient of m workers at batch b has the noise of one batch of m*b (global sampling)",
                "noise-floor theorem: floor proportional to eta sigma^2 / (m b)",
                ("batch_floor_exact_*",),
            ),
        ),
        metrics=metrics,
        data={"m": m, "b": b, "eta": eta, "sampler": ps.sampler},
    )
