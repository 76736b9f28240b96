"""From the workers' raw records to summaries with intervals (pure functions, run in the parent).

Inputs are the per-rank JSON dicts the workers wrote; outputs are small frozen dataclasses that
``lens.py`` turns into estimates, checks, tables and figures. Nothing here launches anything, so
every function can be tested on hand-made records.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from scipy import stats

from multilens.lenses.distributed import theory
from multilens.lenses.distributed.problems import LeastSquaresShards, global_batch_indices
from multilens.lenses.distributed.tasks_mlp import load_problem
from multilens.lenses.distributed.timing import split_idle
from multilens.seeding import derive_seed
from multilens.stats import Interval, batch_means_ci, mean_ci


def task_records(outputs: tuple[dict[str, Any] | None, ...], name: str) -> list[dict[str, Any]]:
    """The records of task ``name`` from every rank that ran it, in rank order."""
    return [o["tasks"][name] for o in outputs if o is not None and name in o.get("tasks", {})]


# ---------------------------------------------------------------------------------------------
# Noise floor and delays
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FloorEstimate:
    workers: int
    variant: str
    value: float
    se: float
    ci_low: float
    ci_high: float
    n: int
    level: float
    method: str
    exact: float | None  # exact stationary E||e||^2 for this noise model (None when unstable)
    bound: float  # the theorem's eta*sigma^2/(mu*m)
    n_dropped: int = 0  # replicas left out as non-finite

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def floor_estimate(
    rec0: dict[str, Any], index: int, variant: str, workers: int, exact: float | None, bound: float, level: float
) -> FloorEstimate:
    """Mean over replicas of each replica's time-averaged E||theta_t - theta*||^2 after burn-in."""
    tail = np.asarray(rec0["tail_mean"][index], dtype=np.float64)  # (R,)
    ci = mean_ci(tail, level, unit="replicas")
    method = f"{ci.method}; each replica averaged over {rec0['n_tail']} post-burn-in steps"
    return FloorEstimate(
        workers, variant, ci.estimate, ci.stderr, ci.low, ci.high, ci.n, level, method, exact, bound, ci.n_dropped
    )


@dataclass(frozen=True)
class DelayDistribution:
    tau_max: int
    kind: str
    pmf: tuple[float, ...]
    realized_counts: tuple[int, ...]  # every applied gradient, all ranks
    window_counts: tuple[int, ...]  # draws early enough to be applied before the end (unbiased sample)
    pending_at_end: int
    chi2_pvalue: float | None
    n: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def delay_distribution(records: list[dict[str, Any]], index: int, kind: str) -> DelayDistribution:
    """Sum the ranks' delay histograms; chi-square goodness of fit of the window draws to the pmf."""
    ds = [r["delays"][index] for r in records]
    pmf = np.asarray(ds[0]["pmf"], dtype=np.float64)
    realized = np.sum([d["realized"] for d in ds], axis=0).astype(int)
    window = np.sum([d["drawn_applied_window"] for d in ds], axis=0).astype(int)
    n = int(window.sum())
    pval = None
    support = pmf > 0
    if n > 0 and support.sum() >= 2:
        expected = n * pmf[support]
        pval = float(stats.chisquare(window[support], expected).pvalue)
    return DelayDistribution(
        len(pmf) - 1,
        kind,
        tuple(float(v) for v in pmf),
        tuple(int(v) for v in realized),
        tuple(int(v) for v in window),
        int(sum(d["pending_at_end"] for d in ds)),
        pval,
        n,
    )


def curve_band(rec0: dict[str, Any], index: int, level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, ci_low, ci_high) of E||theta_t - theta*||^2 at every step, t interval over replicas."""
    mean = np.asarray(rec0["err_mean"][index], dtype=np.float64)
    sd = np.asarray(rec0["err_sd"][index], dtype=np.float64)
    r = len(rec0["tail_mean"][index])
    q = float(stats.t.ppf(0.5 + level / 2, r - 1))
    half = q * sd / math.sqrt(r)
    return mean, mean - half, mean + half


# ---------------------------------------------------------------------------------------------
# Parity with single-process SGD
# ---------------------------------------------------------------------------------------------


def reference_sgd(task: dict[str, Any]) -> np.ndarray:
    """Plain single-process large-batch SGD (torch.optim.SGD, float64) on the parity task's global batches."""
    prob = load_problem(task, torch.float64, torch.device("cpu"))
    model = prob.model
    opt = torch.optim.SGD(model.parameters(), lr=float(task["lr"]))
    steps, batch = int(task["steps"]), int(task["batch"])
    idx = global_batch_indices(
        int(prob.x.shape[0]), batch, steps, derive_seed(int(task["seed"]), "batches", task["batch_seed"])
    )
    for t in range(steps):
        opt.zero_grad(set_to_none=True)
        prob.loss(model(prob.x[idx[t]]), prob.y[idx[t]]).backward()
        opt.step()
    return torch.nn.utils.parameters_to_vector(model.parameters()).detach().numpy().copy()


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimingSummary:
    workers: int
    n_steps: int
    compute: Interval  # per step, mean over ranks; batch-means intervals
    comm: Interval
    idle: Interval
    step: Interval  # compute + idle + comm
    bytes_per_step: float  # ring-model bytes sent per rank per step
    per_rank_compute_s: tuple[float, ...]
    per_rank_idle_s: tuple[float, ...]
    per_rank_comm_s: tuple[float, ...]
    compute_samples: tuple[float, ...]  # per-step rank-mean compute (for the compute model)
    idle_by_rank: tuple[tuple[float, ...], ...] = ()  # (ranks, steps) per-step idle of each rank

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("compute_samples")
        d.pop("idle_by_rank")
        return d


def timing_summary(
    records: list[dict[str, Any]], steps: int, warmup: int, level: float, n_batches: int = 5
) -> TimingSummary:
    """Per-step compute / idle / comm from every rank's collective log (the first ``warmup`` steps dropped)."""
    logs = [r["log"] for r in records]
    m = len(logs)
    compute = np.array([lg["compute_s"] for lg in logs], dtype=np.float64)  # (m, calls)
    coll = np.array([lg["coll_s"] for lg in logs], dtype=np.float64)
    step_of = np.asarray(logs[0]["step"], dtype=np.int64)  # the same call sequence on every rank
    idle, comm = split_idle(compute, coll)
    moved = np.array([lg["moved_bytes"] for lg in logs], dtype=np.float64)

    def per_step(a: np.ndarray) -> np.ndarray:  # (m, calls) -> (m, steps): sum the calls of each step
        return np.stack([np.bincount(step_of, weights=row, minlength=steps)[:steps] for row in a])

    c, i, k, b = per_step(compute), per_step(idle), per_step(comm), per_step(moved)
    keep = slice(warmup, steps)
    c, i, k, b = c[:, keep], i[:, keep], k[:, keep], b[:, keep]
    total = c + i + k
    return TimingSummary(
        workers=m,
        n_steps=int(c.shape[1]),
        compute=batch_means_ci(c.mean(axis=0), n_batches, level),
        comm=batch_means_ci(k.mean(axis=0), n_batches, level),
        idle=batch_means_ci(i.mean(axis=0), n_batches, level),
        step=batch_means_ci(total.mean(axis=0), n_batches, level),
        bytes_per_step=float(b.mean()),
        per_rank_compute_s=tuple(float(v) for v in c.mean(axis=1)),
        per_rank_idle_s=tuple(float(v) for v in i.mean(axis=1)),
        per_rank_comm_s=tuple(float(v) for v in k.mean(axis=1)),
        compute_samples=tuple(float(v) for v in c.mean(axis=0)),
        idle_by_rank=tuple(tuple(float(v) for v in row) for row in i),
    )


def eval_curve(rec0: dict[str, Any]) -> tuple[list[int], list[float], list[float | None]]:
    """(steps, timed seconds, training-set loss) at the evaluation points of an MLP run."""
    ev = rec0.get("evals", [])
    return [int(e[0]) for e in ev], [float(e[1]) for e in ev], [None if e[2] is None else float(e[2]) for e in ev]


def loss_at_step(rec0: dict[str, Any], step: int) -> float | None:
    """Loss at the first evaluation at or after ``step``."""
    for s, _, loss in zip(*eval_curve(rec0)):
        if s >= step:
            return loss
    return None


def comm_points(
    outputs: tuple[dict[str, Any] | None, ...], workers: list[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(m, payload bytes, seconds) from every comm sweep; seconds are the mean over ranks per rep."""
    ms, ps, ts = [], [], []
    for m in workers:
        recs = task_records(outputs, f"sweep_m{m}")
        if not recs:
            continue
        sizes = recs[0]["sizes_bytes"]
        sec = np.mean([r["seconds"] for r in recs], axis=0)  # (sizes, reps)
        for s, row in zip(sizes, sec):
            for t in row:
                ms.append(m)
                ps.append(s)
                ts.append(t)
    return np.array(ms, dtype=np.float64), np.array(ps, dtype=np.float64), np.array(ts, dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# Local SGD drift and staleness
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftRow:
    heterogeneity: float
    k: int  # 0 = synchronous gradient averaging
    measured: float  # ||theta_bar_T - theta*||^2
    predicted: float  # exact iterate of the same number of rounds
    asymptotic: float  # ||fixed point - theta*||^2 (the drift itself)
    max_abs_diff_vs_exact: float
    bytes_sent: float
    contraction: float  # spectral radius of the round map ** rounds: what is left of the start
    converged: bool  # contraction <= 1e-3: the final iterate is the fixed point to that factor
    n_iter: int  # local steps run

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def drift_rows(rec0: dict[str, Any], shards: LeastSquaresShards, eta: float, steps: int) -> list[DriftRow]:
    star = shards.theta_star
    rows = []
    for (lev, k), theta, sent in zip(rec0["combos"], rec0["final"], rec0["bytes_per_combo"]):
        li = shards.levels.index(float(lev))
        hs, bs = list(shards.hessians[li]), list(shards.linear[li])
        kk = max(int(k), 1)  # synchronous GD is the K = 1 map
        pred = theory.local_sgd_iterate(hs, bs, eta, kk, np.zeros_like(star), steps // kk)
        fixed = theory.local_sgd_fixed_point(hs, bs, eta, kk)
        m_mat, _ = theory.local_sgd_round_map(hs, bs, eta, kk)
        contraction = float(np.max(np.abs(np.linalg.eigvals(m_mat))) ** (steps // kk))
        th = np.asarray(theta, dtype=np.float64)
        rows.append(
            DriftRow(
                float(lev),
                int(k),
                float(np.sum((th - star) ** 2)),
                float(np.sum((pred - star) ** 2)),
                float(np.sum((fixed - star) ** 2)),
                float(np.max(np.abs(th - pred))),
                float(sent),
                contraction,
                bool(contraction <= 1e-3),
                int(steps),
            )
        )
    return rows


@dataclass(frozen=True)
class StaleRow:
    kappa: float
    tau: int
    eta_l: float
    measured_rate: float | None  # slope of ln||e_t|| per step over the fit window
    predicted_rate: float  # ln(spectral radius of the delayed iteration)
    measured_stable: bool | None
    predicted_stable: bool
    classifiable: bool  # far enough from the stability boundary to tell in this many steps
    diverged_at: int | None
    n_fit: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def stale_rows(rec0: dict[str, Any], eta: float, dim: int, steps: int) -> list[StaleRow]:
    rows = []
    for (kappa, tau), le in zip(rec0["combos"], rec0["log_err"]):
        lam = np.linspace(1.0, float(kappa), dim)
        rho = theory.delayed_spectral_radius(lam, eta, int(tau))
        pred = math.log(rho)
        vals = np.array([np.nan if v is None else v for v in le], dtype=np.float64)
        finite = np.flatnonzero(np.isfinite(vals))
        last = int(finite[-1]) if finite.size else 0
        diverged_at = None if last == steps else last + 1
        start = last // 2
        t = np.arange(start, last + 1)
        y = vals[start : last + 1]
        ok = np.isfinite(y)
        rate = None
        if ok.sum() >= 5:
            rate = float(np.polyfit(t[ok], y[ok], 1)[0] / 2.0)  # ln||e||^2 -> ln||e||
        # Over the window the predicted norm changes by a factor exp(|pred| * window); below e^2 the
        # sign of a rate this close to 0 cannot be read off a run this short.
        classifiable = abs(pred) * max(last - start, 1) >= 2.0
        measured_stable = None if rate is None else bool(rate < 0 and diverged_at is None)
        rows.append(
            StaleRow(
                float(kappa),
                int(tau),
                float(eta * kappa),
                rate,
                pred,
                measured_stable,
                bool(rho < 1.0),
                bool(classifiable),
                diverged_at,
                int(ok.sum()),
            )
        )
    return rows
