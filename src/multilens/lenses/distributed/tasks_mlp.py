"""Worker-side data-parallel training of the subject (by default an MLP on the scikit-learn digits).

The model, data and loss come from the subject's builder (:mod:`.subject`), called with the
task's ``problem`` entry and ``problem_seed`` in every rank (and in the parent for the reference).

* ``mlp_parity``: float64, the same global batches split over the group, trained by each
  equivalent mode (gradient all-reduce, torch's DistributedDataParallel, local SGD with K = 1,
  the delay buffer with tau = 0, top-k at ratio 1); rank 0 returns the final parameters for the
  parent to compare with plain single-process large-batch SGD, and every mode reports how far
  the ranks' copies drifted apart.
* ``mlp_train``: one timed run of one mode (sync, local, stale, topk, randk), optionally with a
  straggler or an injected fault; returns per-collective timings, the local losses and the
  training-set loss of the averaged model at evaluation points (evaluation is not timed).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from multilens.lenses.distributed.faults import FaultPlan, straggle
from multilens.lenses.distributed.modes import (
    DelayBuffer,
    DelaySampler,
    ErrorFeedback,
    average_gradients,
    average_parameters,
    compressed_average,
    delayed_average,
    is_sync_step,
    realized_histogram,
)
from multilens.lenses.distributed.problems import global_batch_indices, heterogeneous_partition
from multilens.lenses.distributed.subject import TrainingProblem, build_problem
from multilens.lenses.distributed.tasks import TaskContext
from multilens.lenses.distributed.timing import TimedComm
from multilens.seeding import as_generator, derive_seed

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def load_problem(p: dict[str, Any], dtype: torch.dtype, device: torch.device) -> TrainingProblem:
    """The subject as the task describes it (every rank and the parent build the same one)."""
    return build_problem(p["problem"], int(p["problem_seed"]), dtype, device)


def flat_grad(prob: TrainingProblem, idx: torch.Tensor) -> tuple[torch.Tensor, float]:
    """(flattened gradient of the mean loss on the rows ``idx``, the loss)."""
    params = list(prob.model.parameters())
    loss = prob.loss(prob.model(prob.x[idx]), prob.y[idx])
    grads = torch.autograd.grad(loss, params)
    return torch.cat([g.reshape(-1) for g in grads]), float(loss.detach())


def get_flat(model: nn.Module) -> torch.Tensor:
    return nn.utils.parameters_to_vector(model.parameters()).detach().clone()


def set_flat(model: nn.Module, vec: torch.Tensor) -> None:
    with torch.no_grad():
        nn.utils.vector_to_parameters(vec, model.parameters())


def sgd_update(model: nn.Module, grad: torch.Tensor, lr: float) -> None:
    with torch.no_grad():
        offset = 0
        for p in model.parameters():
            n = p.numel()
            p -= lr * grad[offset : offset + n].view_as(p)
            offset += n


@torch.no_grad()
def full_loss(prob: TrainingProblem) -> float:
    return float(prob.loss(prob.model(prob.x), prob.y))


class BatchSource:
    """Where each rank's batches come from: its slice of a shared global batch, or its own shard."""

    def __init__(self, p: dict[str, Any], y: torch.Tensor, rank: int, m: int, seed: int) -> None:
        self.sampler = p.get("sampler", "global")
        self.local = int(p["batch"]) // m
        n = int(y.shape[0])
        if self.sampler == "global":
            self.rank = rank
            self.idx = global_batch_indices(
                n, int(p["batch"]), int(p["steps"]), derive_seed(seed, "batches", p["batch_seed"])
            )
        else:
            scores = y.reshape(n, -1)[:, 0].detach().cpu().numpy().astype(np.float64)
            parts = heterogeneous_partition(
                scores,
                m,
                float(p["heterogeneity"]),
                derive_seed(seed, "partition", p["batch_seed"]),
            )
            self.shard = parts[rank]
            self.rng = as_generator(derive_seed(seed, "shard-batches", p["batch_seed"], rank))
            self.label_counts = None
            if not y.is_floating_point() and y.ndim == 1:  # class labels: how skewed each shard is
                self.label_counts = np.bincount(y.cpu().numpy()[self.shard]).tolist()

    def batch(self, step: int) -> np.ndarray:
        if self.sampler == "global":
            return self.idx[step, self.rank * self.local : (self.rank + 1) * self.local]
        return self.shard[self.rng.choice(self.shard.size, size=self.local, replace=False)]


def _train_loop(p: dict[str, Any], comm: TimedComm, ctx: TaskContext, prob: TrainingProblem) -> dict[str, Any]:
    """One run of ``p["mode"]``; the model is trained in place."""
    model, y = prob.model, prob.y
    mode, lr, steps, m = p["mode"], float(p["lr"]), int(p["steps"]), comm.world_size
    src = BatchSource(p, y, comm.rank, m, ctx.seed)
    k = int(p.get("k", 1))
    buffer = DelayBuffer() if mode == "stale" else None
    sampler = (
        DelaySampler(
            p["tau_kind"],
            int(p["tau_max"]),
            derive_seed(ctx.seed, "mlp-delay", p["name"], ctx.global_rank),
            float(p.get("p", 0.5)),
        )
        if mode == "stale"
        else None
    )
    ef = (
        ErrorFeedback(mode, float(p["ratio"]), derive_seed(ctx.seed, "randk", p["name"]))
        if mode in ("topk", "randk")
        else None
    )
    fault = FaultPlan(**p["fault"]) if p.get("fault") else None
    strag = p.get("straggler")
    eval_every = int(p.get("eval_every", 0))
    local_losses: list[float] = []
    evals: list[list[float]] = []
    next_eval = 0
    comm.barrier()
    comm.start()
    if eval_every:
        with comm.paused():
            evals.append([0, 0.0, full_loss(prob)])
            next_eval = eval_every
    for t in range(steps):
        comm.set_step(t)
        if fault is not None:
            fault.maybe_fail(comm.rank, t)
        if strag:
            straggle(comm.rank, int(strag["rank"]), float(strag["sleep_s"]))
        idx = torch.as_tensor(src.batch(t), device=y.device)
        grad, loss = flat_grad(prob, idx)
        local_losses.append(loss)
        synced = True
        if mode == "sync":
            sgd_update(model, average_gradients(comm, grad), lr)
        elif mode == "local":
            sgd_update(model, grad, lr)
            synced = is_sync_step(t, k) or t == steps - 1  # the last step always averages
            if synced:
                set_flat(model, average_parameters(comm, get_flat(model)))
        elif mode == "stale":
            assert buffer is not None and sampler is not None
            sgd_update(model, delayed_average(comm, buffer, t, grad, sampler.draw()), lr)
        elif mode in ("topk", "randk"):
            assert ef is not None
            sgd_update(model, compressed_average(comm, ef, t, grad), lr)
        else:
            raise ValueError(f"unknown mode {mode!r}")
        if eval_every and synced and (t + 1 >= next_eval or t == steps - 1):
            elapsed = comm.elapsed()
            with comm.paused():
                evals.append([t + 1, elapsed, full_loss(prob)])
                next_eval = t + 1 + eval_every
    out: dict[str, Any] = {"log": comm.log.to_dict(), "local_losses": local_losses, "wall_timed_s": comm.elapsed()}
    if buffer is not None and sampler is not None:
        out["delays"] = {
            "realized": realized_histogram(buffer.realized, sampler.tau_max),
            "pending_at_end": buffer.pending,
        }
    if src.sampler == "shard":
        out["label_counts"] = src.label_counts
    if comm.rank == 0:
        out["evals"] = evals
    return out


def mlp_train(p: dict[str, Any], comm: TimedComm, ctx: TaskContext) -> dict[str, Any]:
    dtype = DTYPES[p.get("dtype", "float32")]
    prob = load_problem(p, dtype, ctx.device)
    out = _train_loop(p, comm, ctx, prob)
    out["n_params"] = int(get_flat(prob.model).numel())
    return out


def _ddp_run(p: dict[str, Any], comm: TimedComm, ctx: TaskContext, prob: TrainingProblem) -> None:
    """torch's DistributedDataParallel + torch.optim.SGD on the same shards of the same global batches."""
    from torch.nn.parallel import DistributedDataParallel

    ddp = DistributedDataParallel(prob.model, process_group=comm.group)
    opt = torch.optim.SGD(ddp.parameters(), lr=float(p["lr"]))
    src = BatchSource(p | {"sampler": "global"}, prob.y, comm.rank, comm.world_size, ctx.seed)
    for t in range(int(p["steps"])):
        idx = torch.as_tensor(src.batch(t), device=prob.y.device)
        opt.zero_grad(set_to_none=True)
        prob.loss(ddp(prob.x[idx]), prob.y[idx]).backward()  # DDP averages gradients over the group
        opt.step()


def mlp_parity(p: dict[str, Any], comm: TimedComm, ctx: TaskContext) -> dict[str, Any]:
    """Every mode that should equal large-batch SGD, on identical batches and initialization."""
    dtype = DTYPES[p.get("dtype", "float64")]
    base = {"sampler": "global", "eval_every": 0}
    variants = {
        "sync": {"mode": "sync"},
        "local_k1": {"mode": "local", "k": 1},
        "stale_tau0": {"mode": "stale", "tau_kind": "const", "tau_max": 0},
        "topk_ratio1": {"mode": "topk", "ratio": 1.0},
        "ddp": {"mode": "ddp"},
    }
    out: dict[str, Any] = {"params": {}, "rank_spread": {}}
    for name, v in variants.items():
        prob = load_problem(p, dtype, ctx.device)
        q = p | base | v | {"name": f"{p['name']}-{name}"}
        if name == "ddp":
            _ddp_run(q, comm, ctx, prob)
        else:
            _train_loop(q, comm, ctx, prob)
        theta = get_flat(prob.model)
        first = comm.broadcast_first_untimed(theta.clone())
        spread = comm.allreduce_max_untimed((theta - first).abs().max().reshape(1))
        out["rank_spread"][name] = float(spread.item())
        if comm.rank == 0:
            out["params"][name] = theta.cpu().tolist()
    return out
