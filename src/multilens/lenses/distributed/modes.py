"""Data-parallel training modes as small functions and state objects over flat tensors.

* Synchronous: all-reduce (sum) of the gradients, divided by m. With equal shards of one global
  batch this is exactly large-batch SGD (up to the order of floating-point additions).
* Local SGD (Stich 2019; Lin et al. 2020): K local steps without any communication, then an
  all-reduce average of the parameters. torch's ``PostLocalSGDOptimizer`` is not used because it
  keeps all-reducing gradients during local steps unless its DDP comm hook is changed; here
  nothing is communicated between averages, and K = 1 is synchronous SGD.
* Bounded staleness: :class:`DelayBuffer` holds each rank's gradient and releases it tau steps
  later, tau drawn by :class:`DelaySampler` from a stated distribution on {0, ..., tau_max};
  every gradient is applied exactly once (the asynchronous parameter-server model of
  Recht et al. 2011 / Lian et al. 2015, realized with a synchronous all-reduce of what is due).
  tau = 0 is synchronous SGD.
* Compression with error feedback (Stich et al. 2018; Karimireddy et al. 2019): each rank adds
  its residual memory to the gradient, sends k = ratio * n coordinates and keeps the rest as the
  new residual. Top-k sends the k largest magnitudes (indices differ across ranks: an
  all-gather of values and indices); random-k uses indices shared by all ranks (an all-reduce of
  k values).

Each function takes a ``comm`` (``timing.TimedComm`` or ``timing.LocalComm``) so the same code
runs in a worker process and in a single-process test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from multilens.errors import ConfigError
from multilens.lenses.distributed.theory import delay_pmf
from multilens.seeding import SeedLike, as_generator, derive_seed, torch_generator
from multilens.validation import check_int


class Comm(Protocol):
    rank: int
    world_size: int

    def allreduce_sum(self, t: torch.Tensor) -> torch.Tensor: ...

    def allgather(self, t: torch.Tensor) -> list[torch.Tensor]: ...


def average_gradients(comm: Comm, grad: torch.Tensor) -> torch.Tensor:
    """Synchronous data parallelism: the mean of every rank's gradient (in place)."""
    comm.allreduce_sum(grad)
    return grad.div_(comm.world_size)


def average_parameters(comm: Comm, params: torch.Tensor) -> torch.Tensor:
    """Local SGD's synchronization: the mean of every rank's parameters (in place)."""
    comm.allreduce_sum(params)
    return params.div_(comm.world_size)


def is_sync_step(step: int, k: int) -> bool:
    """Local SGD averages after steps K-1, 2K-1, ... (0-based), i.e. every K local steps."""
    return (step + 1) % k == 0


# ---------------------------------------------------------------------------------------------
# Bounded staleness
# ---------------------------------------------------------------------------------------------


class DelaySampler:
    """Draws delays from ``delay_pmf(kind, tau_max, p)`` with a local generator (one per rank)."""

    def __init__(self, kind: str, tau_max: int, seed: SeedLike, p: float = 0.5) -> None:
        check_int("tau_max", tau_max, 0)
        self.kind = kind
        self.tau_max = tau_max
        self.pmf = delay_pmf(kind, tau_max, p)
        self._rng = as_generator(seed)

    def draw(self) -> int:
        if self.tau_max == 0:
            return 0
        return int(self._rng.choice(self.tau_max + 1, p=self.pmf))


@dataclass
class DelayBuffer:
    """Gradients waiting to be applied: ``push`` at step t with delay tau, ``pop`` at step t + tau.

    ``realized`` lists the delay of every gradient that was applied; ``drawn`` every delay that
    was drawn (gradients still pending at the end of training were drawn but never applied).
    """

    _due: dict[int, torch.Tensor] = field(default_factory=dict)
    _due_delays: dict[int, list[int]] = field(default_factory=dict)
    realized: list[int] = field(default_factory=list)
    drawn: list[int] = field(default_factory=list)

    def push(self, step: int, grad: torch.Tensor, tau: int) -> None:
        if tau < 0:
            raise ConfigError(f"`tau` must be an int >= 0; got {tau}.")
        when = step + tau
        if when in self._due:
            self._due[when] += grad
        else:
            self._due[when] = grad.clone()
        self._due_delays.setdefault(when, []).append(tau)
        self.drawn.append(tau)

    def pop(self, step: int, like: torch.Tensor) -> torch.Tensor:
        """The sum of gradients due at ``step`` (zeros when none are due)."""
        self.realized.extend(self._due_delays.pop(step, []))
        out = self._due.pop(step, None)
        return torch.zeros_like(like) if out is None else out

    @property
    def pending(self) -> int:
        return sum(len(v) for v in self._due_delays.values())


def delayed_average(comm: Comm, buffer: DelayBuffer, step: int, grad: torch.Tensor, tau: int) -> torch.Tensor:
    """Push this rank's gradient with delay tau, then all-reduce what is due now (mean over ranks)."""
    buffer.push(step, grad, tau)
    due = buffer.pop(step, grad)
    comm.allreduce_sum(due)
    return due.div_(comm.world_size)


# ---------------------------------------------------------------------------------------------
# Compression with error feedback
# ---------------------------------------------------------------------------------------------


@dataclass
class ErrorFeedback:
    """Residual memory e: send C(g + e), keep e <- (g + e) - C(g + e)."""

    kind: str  # "topk" or "randk"
    ratio: float
    seed: int  # random-k indices: the same seed on every rank, so indices agree
    memory: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("topk", "randk"):
            raise ConfigError(f"`kind` must be 'topk' or 'randk'; got {self.kind!r}.")
        if not 0.0 < self.ratio <= 1.0:
            raise ConfigError(f"`ratio` must be in (0, 1]; got {self.ratio}.")

    def k(self, n: int) -> int:
        return max(1, int(round(self.ratio * n)))

    def select(self, p: torch.Tensor, step: int) -> torch.Tensor:
        n = p.numel()
        if self.kind == "topk":
            return torch.topk(p.abs(), self.k(n), sorted=False).indices
        g = torch_generator(derive_seed(self.seed, "randk", step))
        return torch.randperm(n, generator=g)[: self.k(n)].to(p.device)


def compressed_average(comm: Comm, ef: ErrorFeedback, step: int, grad: torch.Tensor) -> torch.Tensor:
    """Mean over ranks of the compressed, error-corrected gradients (a dense tensor)."""
    p = grad if ef.memory is None else grad + ef.memory
    idx = ef.select(p, step)
    vals = p[idx].clone()
    ef.memory = p.clone()
    ef.memory[idx] = 0.0
    out = torch.zeros_like(grad)
    if ef.kind == "randk":  # shared indices: reduce the values only
        comm.allreduce_sum(vals)
        out[idx] = vals
    else:  # rank-specific indices: gather values and indices, then scatter-add in rank order
        all_vals = comm.allgather(vals)
        all_idx = comm.allgather(idx)
        for v, i in zip(all_vals, all_idx):
            out.index_add_(0, i, v)
    return out.div_(comm.world_size)


def realized_histogram(delays: list[int], tau_max: int) -> list[int]:
    """Counts of delays 0..tau_max (a delay above tau_max would be a bug in the bound)."""
    counts = (
        np.bincount(np.asarray(delays, dtype=np.int64), minlength=tau_max + 1) if delays else np.zeros(tau_max + 1, int)
    )
    return [int(c) for c in counts]
