"""The distributed lens: real data-parallel training with torch.distributed against its theorem.

``measure(subject, settings, seed=...)`` collects the worker tasks of every part that is switched
on (each with its own seed), starts max(group size) worker processes ONCE (gloo on CPU, NCCL
with CUDA) to run them, then one small launch per injected fault, and turns the records into
one :class:`~multilens.results.Part` per part:

* ``parity``: synchronous gradient all-reduce and DDP (agreements), and local SGD with K = 1,
  the delay buffer at tau = 0 and top-k at ratio 1 (self-tests) against plain single-process
  large-batch SGD on the subject (float64);
* ``noise_floor``: the SGD noise floor on a strongly convex quadratic for each m against its exact
  stationary value (agreement) and the theorem's bound eta*sigma^2/(mu*m) (a bound, reported
  with bound/exact, about 4.2 at the defaults), the 1/m ratio with its interval, delayed noise
  against its Lyapunov floor;
* ``local_sgd``: local-SGD drift against the exact local-GD iterate (B.17);
* ``staleness``: delayed GD against its companion-matrix rate and the Levin-May stability bound;
* ``timing``: compute, idle and communication per step (batch-means intervals), the ring
  all-reduce model fitted to a size sweep, speedup, and the model's best worker count and step
  times, fitted on runs held out from the runs they are compared with; a straggler;
* ``modes``: local SGD, stale and compressed training of the subject: losses, bytes, time to a
  target loss;
* ``faults``: a worker that dies and one that hangs: detection, exit codes, no orphans;
* ``batch_floor``: the SGD loss floor of m workers at batch b against one process at batch m*b
  on least squares, each against its exact expectation (:mod:`.batch_floor`).

The subject is a :class:`~multilens.lenses.distributed.subject.DistributedProblem` (an importable
``"module:function"`` builder of the model, data and loss; see that module).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from multilens.errors import ConfigError
from multilens.lenses.contract import Runtime, finish, part_seed, run_parts
from multilens.lenses.distributed.batch_floor import batch_floor_part, batch_floor_tasks
from multilens.lenses.distributed.common import LENS, available_cores
from multilens.lenses.distributed.jobs import (
    local_sgd_tasks,
    main_job,
    modes_tasks,
    noise_tasks,
    parity_tasks,
    staleness_tasks,
    timing_tasks,
)
from multilens.lenses.distributed.launch import LaunchError, launch
from multilens.lenses.distributed.parts_model import faults_part, modes_part, parity_part, timing_part
from multilens.lenses.distributed.parts_quadratic import local_sgd_part, noise_floor_part, staleness_part
from multilens.lenses.distributed.settings import Settings
from multilens.lenses.distributed.subject import DistributedProblem, problem_rows
from multilens.results import LensResult, Part
from multilens.stats import json_safe

PARTS = ("parity", "noise_floor", "local_sgd", "staleness", "timing", "modes", "faults", "batch_floor")
DEFAULT_BUILDER = "multilens.lenses.distributed.subject:digits_mlp"


def default_subject(settings: Settings, *, seed: int, runtime: Runtime | None = None) -> DistributedProblem:
    """The bundled problem: an MLP with hidden ``settings.widths`` on the scikit-learn digits."""
    return DistributedProblem(DEFAULT_BUILDER, {"widths": list(settings.widths)}, name="digits MLP")


def _check_batches(subject: DistributedProblem, settings: Settings) -> None:
    wanted = []
    if settings.parity is not None:
        wanted.append(("parity.batch", settings.parity.batch))
    if settings.timing is not None:
        wanted.append(("timing.global_batch", settings.timing.global_batch))
    if settings.modes is not None:
        wanted.append(("modes.global_batch", settings.modes.global_batch))
    if settings.faults is not None:
        wanted.append(("faults.batch", settings.faults.batch))
    if not wanted:
        return
    n = problem_rows(subject)
    for key, b in wanted:
        if b > n:
            raise ConfigError(f"`{key}` must be an int <= {n} (the subject's training rows); got {b}.")


def collect_tasks(subject: DistributedProblem, settings: Settings, seed: int) -> list[dict[str, Any]]:
    """The worker tasks of every part that is switched on, each with its part's seed."""
    problem = subject.to_job()
    s = {name: part_seed(seed, LENS, name) for name in PARTS}
    tasks: list[dict[str, Any]] = []
    if settings.parity is not None:
        tasks += parity_tasks(settings.parity, s["parity"], problem)
    if settings.noise_floor is not None:
        tasks += noise_tasks(settings.noise_floor, s["noise_floor"])
    if settings.local_sgd is not None:
        tasks += local_sgd_tasks(settings.local_sgd, s["local_sgd"])
    if settings.staleness is not None:
        tasks += staleness_tasks(settings.staleness, s["staleness"])
    if settings.timing is not None:
        tasks += timing_tasks(settings.timing, s["timing"], problem)
    if settings.modes is not None:
        tasks += modes_tasks(settings.modes, s["modes"], problem)
    if settings.batch_floor is not None:
        tasks += batch_floor_tasks(settings.batch_floor, s["batch_floor"])
    return tasks


def run_main_launch(settings: Settings, seed: int, tasks: list[dict[str, Any]]) -> tuple[tuple, dict[str, Any]]:
    """One launch for every task; raises LaunchError unless every rank finished and none is left."""
    if not tasks:
        return (), {}
    job = main_job(settings, seed, tasks)
    world = max(len(g) for g in job["groups"])
    res = launch(job, world, deadline_s=settings.launch_timeout_s, grace_s=settings.collective_timeout_s + 5.0)
    if not res.ok:
        raise LaunchError(f"distributed lens: the main launch failed: {res.failure_message()}")
    if res.leftover:
        raise LaunchError(f"distributed lens: worker processes {list(res.leftover)} were left after the main launch.")
    info = {
        "world_size": world,
        "wall_time_s": res.wall_time_s,
        "attempts": res.attempts,
        "exit_codes": list(res.returncodes),
        "backend": job["backend"],
    }
    return res.outputs, info


def measure(
    subject: DistributedProblem, settings: Settings, *, seed: int, runtime: Runtime | None = None
) -> LensResult:
    """Run every part that is switched on against ``subject`` (see the module docstring)."""
    if not isinstance(subject, DistributedProblem):
        raise ConfigError(
            f"`subject` must be a DistributedProblem (an importable 'module:function' builder); got "
            f"{type(subject).__name__}."
        )
    t0 = time.perf_counter()
    _check_batches(subject, settings)
    outputs, launch_info = run_main_launch(settings, seed, collect_tasks(subject, settings, seed))
    return analyze_outputs(subject, settings, seed, outputs, launch_info=launch_info, t_start=t0)


def analyze_outputs(
    subject: DistributedProblem,
    settings: Settings,
    seed: int,
    outputs: tuple[dict[str, Any] | None, ...],
    *,
    launch_info: dict[str, Any] | None = None,
    t_start: float | None = None,
) -> LensResult:
    """The parts from the workers' records (``rank<k>.json`` of every rank, in rank order).

    For a cluster: write ``main_job(settings, seed, collect_tasks(subject, settings, seed))`` with
    ``launch.write_job``, run it under torchrun, read the outputs with ``launch.read_outputs`` and
    pass them here. The ``faults`` part, when on, still launches its own small local jobs.
    """
    t0 = time.perf_counter() if t_start is None else t_start
    problem = subject.to_job()
    cores = available_cores(settings.n_cores)
    steps = [
        ("parity", settings.parity, lambda ps, s: _safe(parity_part(ps, s, outputs, problem))),
        ("noise_floor", settings.noise_floor, lambda ps, s: _safe(noise_floor_part(ps, s, outputs))),
        ("local_sgd", settings.local_sgd, lambda ps, s: _safe(local_sgd_part(ps, s, outputs))),
        ("staleness", settings.staleness, lambda ps, s: _safe(staleness_part(ps, s, outputs))),
        ("timing", settings.timing, lambda ps, s: _safe(timing_part(ps, s, outputs, cores))),
        ("modes", settings.modes, lambda ps, s: _safe(modes_part(ps, s, outputs))),
        ("faults", settings.faults, lambda ps, s: _safe(faults_part(ps, s, settings, problem))),
        ("batch_floor", settings.batch_floor, lambda ps, s: _safe(batch_floor_part(ps, s, outputs))),
    ]
    parts, notes = run_parts(LENS, steps, seed)
    data = json_safe({"subject": problem, "launch_timing": dict(launch_info or {}) | {"n_cores": cores}})
    return finish(LENS, parts, settings, seed, t0, notes=notes, data=data)


def _safe(p: Part) -> Part:
    """The part with plain JSON types in its data, tables, figures and predictions (no NaN, no numpy)."""
    return replace(
        p,
        data=json_safe(p.data),
        predictions=json_safe(p.predictions),
        tables=tuple(replace(t, rows=json_safe(t.rows), columns=list(t.columns)) for t in p.tables),
        figures=tuple(replace(fg, data=json_safe(fg.data), layout=json_safe(fg.layout)) for fg in p.figures),
    )


def run(settings: Settings, seed: int) -> LensResult:
    """``measure(default_subject(settings))``."""
    return measure(default_subject(settings, seed=seed), settings, seed=seed)
