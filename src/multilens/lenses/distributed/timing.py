"""Timing of data-parallel steps: compute, communication and idle time, and the models fitted to them.

Recording. :class:`TimedComm` wraps the collectives of one process group. For every collective
call it records the compute time since the previous collective ended, the collective's wall
time and the bytes it moved. A collective cannot finish before the slowest rank arrives, so its
wall time mixes waiting and transfer. After a run, :func:`split_idle` separates them per call:
idle_r = max_j compute_j - compute_r (time rank r waited for the slowest rank, the straggler
time), comm_r = collective_r - idle_r (transfer and reduction).

Bytes follow the ring algorithms (Patarasuk & Yuan 2009): an all-reduce of P bytes over m ranks
sends 2(m-1)/m * P bytes per rank, and an all-gather of P bytes per rank sends (m-1) * P.

Models. :func:`fit_ring_model` fits t = a + 2(m-1)/m * bytes / bandwidth (latency a) by least
squares with bootstrap intervals. :func:`fit_compute_model` fits per-step compute
c(m) = (c0 + c1/m) * max(1, m/n_cores): a fixed part plus the per-worker share of the batch,
slowed down when more workers than cores share the machine. Together they predict the step
time and the best worker count (B.6: T(m) = N_iter * (T_comp + T_comm(m)), minimized over m).
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from multilens.errors import ConfigError
from multilens.lenses.distributed.faults import PeerFailure
from multilens.seeding import SeedLike, as_generator


def ring_allreduce_bytes(payload: int, m: int) -> float:
    """Bytes each rank sends in a ring all-reduce of ``payload`` bytes over m ranks."""
    return 2.0 * (m - 1) / m * payload if m > 1 else 0.0


def ring_allgather_bytes(payload_per_rank: int, m: int) -> float:
    """Bytes each rank sends in a ring all-gather of ``payload_per_rank`` bytes per rank."""
    return float((m - 1) * payload_per_rank)


# ---------------------------------------------------------------------------------------------
# Recording
# ---------------------------------------------------------------------------------------------


@dataclass
class CollectiveLog:
    """Per-collective records of one rank (mutable while a run is being recorded)."""

    step: list[int] = field(default_factory=list)
    compute_s: list[float] = field(default_factory=list)
    coll_s: list[float] = field(default_factory=list)
    payload_bytes: list[int] = field(default_factory=list)
    moved_bytes: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, list]:
        return asdict(self)


class _RecordingComm(ABC):
    """Shared bookkeeping: the clock, the current step, pauses for untimed evaluation."""

    rank: int
    world_size: int

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.log = CollectiveLog()
        self._step = 0
        self._last = time.perf_counter()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def start(self, step: int = 0) -> None:
        """Reset the log and start the clock (call right after a barrier)."""
        self.log = CollectiveLog()
        self._step = step
        self._sync()
        self._last = time.perf_counter()

    def set_step(self, step: int) -> None:
        self._step = step

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Time spent inside (evaluation, logging) counts as neither compute nor communication."""
        self._sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self._last += time.perf_counter() - t0

    def elapsed(self) -> float:
        """Timed seconds since ``start`` (compute + communication, pauses excluded)."""
        return float(sum(self.log.compute_s) + sum(self.log.coll_s) + (time.perf_counter() - self._last))

    def _record(self, t_begin: float, t_end: float, payload: int, moved: float) -> None:
        self.log.step.append(self._step)
        self.log.compute_s.append(t_begin - self._last)
        self.log.coll_s.append(t_end - t_begin)
        self.log.payload_bytes.append(int(payload))
        self.log.moved_bytes.append(float(moved))
        self._last = t_end

    def _guarded(self, fn: Any, *args: Any) -> Any:
        """Run a collective; a failure (dead or hung peer, timeout) becomes a PeerFailure."""
        t0 = time.perf_counter()
        try:
            return fn(*args)
        except RuntimeError as e:  # gloo/NCCL errors (DistBackendError) derive from RuntimeError
            raise PeerFailure(self._step, time.perf_counter() - t0, e) from None

    def allreduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        self._sync()
        t0 = time.perf_counter()
        self._guarded(self._allreduce, t)
        self._sync()
        t1 = time.perf_counter()
        payload = t.numel() * t.element_size()
        self._record(t0, t1, payload, ring_allreduce_bytes(payload, self.world_size))
        return t

    def allgather(self, t: torch.Tensor) -> list[torch.Tensor]:
        self._sync()
        t0 = time.perf_counter()
        out = self._guarded(self._allgather, t)
        self._sync()
        t1 = time.perf_counter()
        payload = t.numel() * t.element_size()
        self._record(t0, t1, payload, ring_allgather_bytes(payload, self.world_size))
        return out

    @abstractmethod
    def _allreduce(self, t: torch.Tensor) -> None:
        """Sum ``t`` across ranks in place (the backend's collective)."""

    @abstractmethod
    def _allgather(self, t: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's ``t``, in rank order."""


class TimedComm(_RecordingComm):
    """Collectives over a torch.distributed process group, timed."""

    def __init__(self, group: Any, device: torch.device) -> None:
        import torch.distributed as dist

        super().__init__(device)
        self._dist = dist
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)

    def _allreduce(self, t: torch.Tensor) -> None:
        if self.world_size == 1:  # a group of one has nothing to exchange (the m = 1 baseline)
            return
        self._dist.all_reduce(t, op=self._dist.ReduceOp.SUM, group=self.group)

    def _allgather(self, t: torch.Tensor) -> list[torch.Tensor]:
        if self.world_size == 1:
            return [t.clone()]
        out = [torch.empty_like(t) for _ in range(self.world_size)]
        self._dist.all_gather(out, t, group=self.group)
        return out

    def barrier(self) -> None:
        self._guarded(self._dist.barrier, self.group)

    def allreduce_max_untimed(self, t: torch.Tensor) -> torch.Tensor:
        self._guarded(lambda: self._dist.all_reduce(t, op=self._dist.ReduceOp.MAX, group=self.group))
        return t

    def broadcast_first_untimed(self, t: torch.Tensor) -> torch.Tensor:
        """Overwrite ``t`` with group rank 0's copy (a consistency check, not part of training)."""
        src = self._dist.get_global_rank(self.group, 0)
        self._guarded(lambda: self._dist.broadcast(t, src=src, group=self.group))
        return t


class LocalComm(_RecordingComm):
    """A group of one process without torch.distributed (the single-process reference)."""

    def __init__(self, device: torch.device | None = None) -> None:
        super().__init__(device or torch.device("cpu"))
        self.rank = 0
        self.world_size = 1

    def _allreduce(self, t: torch.Tensor) -> None:
        return None

    def _allgather(self, t: torch.Tensor) -> list[torch.Tensor]:
        return [t.clone()]

    def barrier(self) -> None:
        return None

    def allreduce_max_untimed(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def broadcast_first_untimed(self, t: torch.Tensor) -> torch.Tensor:
        return t


# ---------------------------------------------------------------------------------------------
# Decomposition and intervals
# ---------------------------------------------------------------------------------------------


def split_idle(compute: np.ndarray, coll: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(idle, comm), each (ranks, calls), from per-call compute and collective times of every rank."""
    c = np.asarray(compute, dtype=np.float64)
    a = np.asarray(coll, dtype=np.float64)
    if c.shape != a.shape or c.ndim != 2:
        raise ConfigError(f"`compute` and `coll` must both be (ranks, calls); got {c.shape} and {a.shape}.")
    idle = c.max(axis=0, keepdims=True) - c  # waiting for the slowest rank of that call
    idle = np.minimum(idle, a)  # a rank cannot wait longer than its collective took
    return idle, a - idle


def ratio_ci(num: float, se_num: float, den: float, se_den: float, level: float = 0.95) -> tuple[float, float, float]:
    """num/den with a delta-method interval on the log scale (independent estimates)."""
    from scipy import stats  # imported here: worker processes never need scipy

    if not (num > 0 and den > 0) or not all(math.isfinite(v) for v in (se_num, se_den)):
        return (num / den if den else math.nan), math.nan, math.nan
    r = num / den
    s = math.sqrt((se_num / num) ** 2 + (se_den / den) ** 2)
    z = float(stats.norm.ppf(0.5 + level / 2))
    return r, r * math.exp(-z * s), r * math.exp(z * s)


# ---------------------------------------------------------------------------------------------
# Communication and compute models
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RingFit:
    """t = latency + 2(m-1)/m * bytes / bandwidth, with bootstrap percentile intervals."""

    latency_s: float
    latency_ci: tuple[float, float]
    bandwidth_Bps: float | None  # None when the fitted slope is not positive
    bandwidth_ci: tuple[float | None, float | None]
    r2: float
    n: int
    n_boot: int
    level: float
    method: str = ""

    def predict(self, m: int, payload_bytes: float) -> float:
        """Predicted all-reduce time; 0 for a single worker (nothing to communicate)."""
        if m <= 1:
            return 0.0
        inv_bw = 0.0 if self.bandwidth_Bps is None else 1.0 / self.bandwidth_Bps
        return self.latency_s + ring_allreduce_bytes(int(payload_bytes), m) * inv_bw

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ols(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    a = np.column_stack([np.ones_like(x), x])
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    return float(coef[0]), float(coef[1])


def fit_ring_model(
    world_sizes: np.ndarray,
    payload_bytes: np.ndarray,
    seconds: np.ndarray,
    seed: SeedLike,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    quantile: float = 0.5,
) -> RingFit:
    """Fit the ring all-reduce model to measured (m, bytes, seconds) triples with m >= 2.

    Timings on a shared machine are bimodal (a descheduled rank stalls the collective for a
    scheduler time slice), so the model is fitted to a ``quantile`` of each (m, bytes) cell: a
    low quantile measures the collective when every rank is running. The bootstrap resamples
    the repetitions within each cell and refits, which keeps the cell design fixed.
    """
    if not 0.0 < quantile < 1.0:
        raise ConfigError(f"`quantile` must be in (0, 1); got {quantile}.")
    m = np.asarray(world_sizes, dtype=np.float64)
    p = np.asarray(payload_bytes, dtype=np.float64)
    t = np.asarray(seconds, dtype=np.float64)
    keep = (m >= 2) & np.isfinite(t)
    m, p, t = m[keep], p[keep], t[keep]
    cells = sorted(set(zip(m.tolist(), p.tolist())))
    if t.size < 3 or len(cells) < 2 or len({2 * (mi - 1) / mi * pi for mi, pi in cells}) < 2:
        raise ConfigError("`seconds` must hold at least 3 measurements at 2 or more distinct message sizes (m >= 2).")
    groups = [t[(m == mi) & (p == pi)] for mi, pi in cells]
    x = np.array([2.0 * (mi - 1) / mi * pi for mi, pi in cells])
    med = np.array([np.quantile(gr, quantile) for gr in groups])
    a, s = _ols(x, med)
    resid = med - (a + s * x)
    r2 = float(1.0 - resid @ resid / np.sum((med - med.mean()) ** 2)) if np.ptp(med) > 0 else math.nan
    g = as_generator(seed)
    boots = np.empty((n_boot, 2))
    for i in range(n_boot):
        bm = np.array([np.quantile(g.choice(gr, size=gr.size), quantile) for gr in groups])
        boots[i] = _ols(x, bm)
    lo_q, hi_q = 100 * (0.5 - level / 2), 100 * (0.5 + level / 2)
    a_lo, a_hi = np.percentile(boots[:, 0], [lo_q, hi_q])
    s_lo, s_hi = np.percentile(boots[:, 1], [lo_q, hi_q])
    bw = 1.0 / s if s > 0 else None
    # bandwidth = 1/slope: the interval inverts (a non-positive slope bound means unbounded bandwidth)
    bw_lo = 1.0 / s_hi if s_hi > 0 else None
    bw_hi = 1.0 / s_lo if s_lo > 0 else None
    method = (
        f"OLS of the per-(m, bytes) {quantile:g}-quantile of the times on (1, ring bytes); "
        "bootstrap over repetitions within cells, percentile intervals"
    )
    return RingFit(a, (float(a_lo), float(a_hi)), bw, (bw_lo, bw_hi), r2, int(t.size), n_boot, level, method)


@dataclass(frozen=True)
class ComputeFit:
    """Per-step compute c(m) = (c0 + c1/m) * max(1, m/n_cores), bootstrap intervals over steps."""

    c0_s: float
    c1_s: float
    c0_ci: tuple[float, float]
    c1_ci: tuple[float, float]
    n_cores: int
    n: int
    level: float
    method: str = "non-negative least squares on per-m means; bootstrap over steps within each m"

    def predict(self, m: int) -> float:
        return (self.c0_s + self.c1_s / m) * max(1.0, m / self.n_cores)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _compute_design(ms: np.ndarray, n_cores: int) -> np.ndarray:
    f = np.maximum(1.0, ms / n_cores)
    return np.column_stack([f, f / ms])


def fit_compute_model(
    samples: dict[int, np.ndarray], n_cores: int, seed: SeedLike, *, n_boot: int = 1000, level: float = 0.95
) -> ComputeFit:
    """Fit c(m) to per-step compute samples keyed by worker count (needs >= 2 distinct counts)."""
    from scipy.optimize import nnls

    if len(samples) < 2:
        raise ConfigError("`samples` must hold compute times for at least 2 distinct worker counts.")
    ms = np.array(sorted(samples), dtype=np.float64)
    design = _compute_design(ms, n_cores)
    means = np.array([np.mean(samples[int(m)]) for m in ms])
    coef, _ = nnls(design, means)  # both parts are times: non-negative
    g = as_generator(seed)
    boots = np.empty((n_boot, 2))
    for i in range(n_boot):
        bm = np.array([np.mean(g.choice(samples[int(m)], size=len(samples[int(m)]))) for m in ms])
        boots[i], _ = nnls(design, bm)
    lo_q, hi_q = 100 * (0.5 - level / 2), 100 * (0.5 + level / 2)
    c0 = tuple(float(v) for v in np.percentile(boots[:, 0], [lo_q, hi_q]))
    c1 = tuple(float(v) for v in np.percentile(boots[:, 1], [lo_q, hi_q]))
    n = int(sum(len(v) for v in samples.values()))
    return ComputeFit(float(coef[0]), float(coef[1]), c0, c1, n_cores, n, level)  # type: ignore[arg-type]


def predicted_step_time(m: int, compute: ComputeFit, comm: RingFit | None, grad_bytes: int) -> float | None:
    """Model step time: compute(m) + all-reduce of the gradient (idle time is not modelled).

    None when there is no communication model for m (m >= 2 without a fit).
    """
    if m == 1:
        return compute.predict(1)
    if comm is None:
        return None
    return compute.predict(m) + comm.predict(m, grad_bytes)


def time_to_target(
    times: list[float], losses: list[float], target: float
) -> tuple[float | None, float | None, float | None]:
    """First evaluated time with loss <= target, bracketed by the previous evaluation's time.

    Returns (time, low, high): the crossing lies in (low, high] on the evaluation grid; all None
    when the target is never reached.
    """
    for i, (t, loss) in enumerate(zip(times, losses)):
        if loss is not None and math.isfinite(loss) and loss <= target:
            lo = times[i - 1] if i > 0 else 0.0
            return float(t), float(lo), float(t)
    return None, None, None
