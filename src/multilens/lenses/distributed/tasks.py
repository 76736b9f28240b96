"""Worker-side experiments on quadratics and the all-reduce sweep (run inside each rank).

Every task runs R independent replicas and all its variants in lockstep and puts everything
that must be communicated in one step into ONE all-reduce: the collective is real (replicas'
noise is averaged across processes), and on an oversubscribed 2-core machine the number of
collectives, not their size, is what costs time.

* ``quad_noise``: synchronous SGD on the quadratic with additive Gaussian gradient noise drawn
  independently on every rank, optionally through a delay buffer (constant or random delays).
* ``quad_local``: noise-free local GD on non-IID least-squares shards for every (level, K), and
  synchronous GD per level (K = 1 must equal it).
* ``quad_stale``: noise-free delayed GD on diagonal quadratics of several condition numbers.
* ``comm_sweep``: barrier-separated all-reduces of several sizes (pure communication time).

Each task returns a JSON-able dict; rank 0 returns the curves, every rank its timing and delays.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from multilens.lenses.distributed.modes import DelayBuffer, DelaySampler, is_sync_step, realized_histogram
from multilens.lenses.distributed.problems import diagonal_quadratic, make_least_squares_shards, make_quadratic
from multilens.lenses.distributed.timing import TimedComm
from multilens.seeding import derive_seed, torch_generator

DIVERGED_NORM2 = 1e200  # a replica whose squared error passes this stops moving (it has diverged)


@dataclass(frozen=True)
class TaskContext:
    seed: int
    global_rank: int
    device: torch.device


def _t(a: np.ndarray, ctx: TaskContext) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64), device=ctx.device)


def quad_noise(p: dict[str, Any], comm: TimedComm, ctx: TaskContext) -> dict[str, Any]:
    """Averaged SGD with per-rank Gaussian noise; variants differ only in their delay rule."""
    q = make_quadratic(p["dim"], p["kappa"], p["init_dist"], p["problem_seed"])
    h, star = _t(q.hessian, ctx), _t(q.theta_star, ctx)
    variants = p["variants"]
    n_var, reps, d, steps = len(variants), int(p["replicas"]), q.dim, int(p["steps"])
    eta, m = float(p["eta"]), comm.world_size
    noise_sd = math.sqrt(float(p["sigma2"]) / d)  # isotropic: E||xi||^2 = sigma2
    theta = _t(q.theta0, ctx).expand(n_var, reps, d).clone()  # (V, R, d)
    gen = torch_generator(derive_seed(ctx.seed, "quad-noise", p["name"], ctx.global_rank))
    samplers, buffers = [], []
    for v in variants:
        kind = v["delay"]
        if kind == "none":
            samplers.append(None)
            buffers.append(None)
            continue
        tau_max = int(v["tau"] if kind == "const" else v["tau_max"])
        seed_v = derive_seed(ctx.seed, "delay", p["name"], v["name"], ctx.global_rank)
        samplers.append(DelaySampler(kind, tau_max, seed_v, float(v.get("p", 0.5))))
        buffers.append(DelayBuffer())
    burn = int(p["burn_in"])
    err_mean = np.empty((n_var, steps + 1))
    err_sd = np.empty((n_var, steps + 1))
    tail_sum = np.zeros((n_var, reps))
    drawn_in_window: list[list[int]] = [[] for _ in variants]

    def record(t: int) -> None:
        e2 = ((theta - star) ** 2).sum(dim=2).cpu().numpy()  # (V, R)
        err_mean[:, t] = e2.mean(axis=1)
        err_sd[:, t] = e2.std(axis=1, ddof=1)
        if t > burn:
            tail_sum[:] += e2

    record(0)
    comm.barrier()
    comm.start()
    for t in range(steps):
        comm.set_step(t)
        noise = torch.randn((n_var, reps, d), generator=gen, dtype=torch.float64).to(ctx.device) * noise_sd
        grad = (theta - star) @ h + noise  # (V, R, d); H symmetric
        parts = []
        for i, (smp, buf) in enumerate(zip(samplers, buffers)):
            if buf is None:
                parts.append(grad[i])
                continue
            tau = smp.draw()
            if t < steps - smp.tau_max:  # every draw in this window is applied before the end
                drawn_in_window[i].append(tau)
            buf.push(t, grad[i], tau)
            parts.append(buf.pop(t, grad[i]))
        flat = torch.stack(parts)  # (V, R, d)
        comm.allreduce_sum(flat)
        theta -= eta * flat / m
        with comm.paused():
            record(t + 1)
    n_tail = steps - burn
    out: dict[str, Any] = {"log": comm.log.to_dict(), "delays": []}
    for i, (smp, buf) in enumerate(zip(samplers, buffers)):
        if buf is None:
            out["delays"].append(None)
            continue
        out["delays"].append(
            {
                "realized": realized_histogram(buf.realized, smp.tau_max),
                "drawn_applied_window": realized_histogram(drawn_in_window[i], smp.tau_max),
                "pending_at_end": buf.pending,
                "pmf": [float(x) for x in smp.pmf],
            }
        )
    if comm.rank == 0:
        out["err_mean"] = err_mean.tolist()
        out["err_sd"] = err_sd.tolist()
        out["tail_mean"] = (tail_sum / n_tail).tolist()  # (V, R): per-replica time average after burn-in
        out["n_tail"] = n_tail
    return out


def quad_local(p: dict[str, Any], comm: TimedComm, ctx: TaskContext) -> dict[str, Any]:
    """Noise-free local GD (every (level, K)) and synchronous GD (every level) on non-IID shards."""
    m = comm.world_size
    shards = make_least_squares_shards(p["dim"], m, p["rows_per_worker"], tuple(p["levels"]), p["problem_seed"])
    eta, steps, ks = float(p["eta"]), int(p["steps"]), [int(k) for k in p["ks"]]
    d = shards.theta_star.size
    star = _t(shards.theta_star, ctx)
    # combos: for each level, one synchronous run then one local run per K
    combos = [(li, 0) for li in range(len(shards.levels))] + [(li, k) for li in range(len(shards.levels)) for k in ks]
    h_r = torch.stack([_t(shards.hessians[li][comm.rank], ctx) for li, _ in combos])  # (C, d, d)
    b_r = torch.stack([_t(shards.linear[li][comm.rank], ctx) for li, _ in combos])  # (C, d)
    theta = torch.zeros((len(combos), d), dtype=torch.float64, device=ctx.device)
    sync_idx = [c for c, (_, k) in enumerate(combos) if k == 0]
    curve: list[list[float]] = [[] for _ in combos]  # ||theta_bar - theta*||^2 at each synchronization
    bytes_per_combo = np.zeros(len(combos))
    comm.barrier()
    comm.start()
    for t in range(steps):
        comm.set_step(t)
        grad = torch.einsum("cij,cj->ci", h_r, theta) - b_r  # (C, d)
        local_now = [c for c, (_, k) in enumerate(combos) if k > 0 and is_sync_step(t, k)]
        theta_local = theta - eta * grad  # local steps of every local combo (sync combos overwritten)
        for c, (_, k) in enumerate(combos):
            if k > 0:
                theta[c] = theta_local[c]
        payload = torch.cat([grad[sync_idx], theta[local_now]])  # what is communicated this step
        comm.allreduce_sum(payload)
        payload /= m
        theta[sync_idx] -= eta * payload[: len(sync_idx)]
        theta[local_now] = payload[len(sync_idx) :]
        for c in sync_idx + local_now:
            bytes_per_combo[c] += d * 8
        with comm.paused():
            for c in sync_idx + local_now:
                curve[c].append(float(((theta[c] - star) ** 2).sum()))
    out: dict[str, Any] = {"log": comm.log.to_dict(), "bytes_per_combo": bytes_per_combo.tolist()}
    if comm.rank == 0:
        out["combos"] = [[float(shards.levels[li]), int(k)] for li, k in combos]
        out["final"] = theta.cpu().numpy().tolist()
        out["curve"] = curve
    return out


def quad_stale(p: dict[str, Any], comm: TimedComm, ctx: TaskContext) -> dict[str, Any]:
    """Noise-free GD with a constant gradient delay on diagonal quadratics (mu = 1, L = kappa)."""
    d, steps, eta, m = int(p["dim"]), int(p["steps"]), float(p["eta"]), comm.world_size
    kappas, taus = [float(k) for k in p["kappas"]], [int(t) for t in p["taus"]]
    combos = [(k, tau) for k in kappas for tau in taus]
    lam = torch.stack([_t(np.linspace(1.0, k, d), ctx) for k, _ in combos])  # (C, d)
    theta = torch.stack(
        [
            _t(diagonal_quadratic(np.linspace(1.0, k, d), p["init_dist"], p["problem_seed"]).theta0, ctx)
            for k, _ in combos
        ]
    )
    buffers = [DelayBuffer() for _ in combos]
    alive = torch.ones(len(combos), dtype=torch.bool, device=ctx.device)
    log_err = np.full((len(combos), steps + 1), np.nan)
    log_err[:, 0] = np.log(((theta**2).sum(dim=1)).cpu().numpy())
    comm.barrier()
    comm.start()
    for t in range(steps):
        comm.set_step(t)
        grad = lam * theta * alive[:, None]  # a diverged combo contributes nothing
        parts = []
        for c, (buf, (_, tau)) in enumerate(zip(buffers, combos)):
            buf.push(t, grad[c], tau)
            parts.append(buf.pop(t, grad[c]))
        due = torch.stack(parts)
        comm.allreduce_sum(due)
        theta -= eta * due / m * alive[:, None]
        with comm.paused():
            e2 = (theta**2).sum(dim=1)
            alive &= e2 < DIVERGED_NORM2
            log_err[:, t + 1] = np.where(alive.cpu().numpy(), np.log(e2.cpu().numpy()), np.nan)
    out: dict[str, Any] = {"log": comm.log.to_dict()}
    if comm.rank == 0:
        out["combos"] = [[k, tau] for k, tau in combos]
        out["log_err"] = [[None if not math.isfinite(v) else float(v) for v in row] for row in log_err]
    return out


def comm_sweep(p: dict[str, Any], comm: TimedComm, ctx: TaskContext) -> dict[str, Any]:
    """Pure all-reduce time: a barrier, then one timed all-reduce; sizes interleaved within each rep.

    Interleaving (rep-major order) spreads a burst of load from other processes over every size
    instead of spoiling one size's cell.
    """
    sizes = [int(s) for s in p["sizes_bytes"]]
    dtype = {"float32": torch.float32, "float64": torch.float64}[p.get("dtype", "float32")]
    elem = torch.tensor([], dtype=dtype).element_size()
    bufs = [torch.ones(max(1, s // elem), dtype=dtype, device=ctx.device) for s in sizes]
    for x in bufs:
        comm.allreduce_sum(x)  # warm-up: connection setup and buffer allocation
    times: list[list[float]] = [[] for _ in sizes]
    for _ in range(int(p["reps"])):
        for i, x in enumerate(bufs):
            comm.barrier()
            t0 = time.perf_counter()
            comm.allreduce_sum(x)
            times[i].append(time.perf_counter() - t0)
    return {"sizes_bytes": [x.numel() * elem for x in bufs], "seconds": times}
