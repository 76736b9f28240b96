"""Entry point of one data-parallel worker process: ``python -m multilens.lenses.distributed.worker``.

Reads its identity from the environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT), exactly as ``torchrun`` sets it, so the same command runs under the multilens
launcher on one machine and under torchrun on a cluster::

    torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint HOST:29400 \\
        -m multilens.lenses.distributed.worker --job job.json --out results/

The job file (written by ``multilens.lenses.distributed.launch.write_job``) lists the process
groups to create and the tasks to run; each rank writes ``rank<k>.json`` into ``--out``.

Shutdown is always explicit: a healthy group is torn down with ``destroy_process_group`` and
the process leaves with ``os._exit`` (after flushing), so gloo's teardown at interpreter exit
cannot turn a finished run into an abort. A broken group (a peer died or hung) is not torn
down; the survivor records the failure and exits with EXIT_PEER_FAILURE. A watchdog thread
exits the worker if its launcher disappears, so no worker outlives the run that started it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from multilens.io import atomic_write_json
from multilens.lenses.distributed.batch_floor import ls_batch_floor
from multilens.lenses.distributed.faults import (
    EXIT_INIT_FAILED,
    EXIT_OK,
    EXIT_ORPHANED,
    EXIT_PEER_FAILURE,
    EXIT_TASK_ERROR,
    PeerFailure,
)
from multilens.lenses.distributed.tasks import TaskContext, comm_sweep, quad_local, quad_noise, quad_stale
from multilens.lenses.distributed.tasks_mlp import mlp_parity, mlp_train
from multilens.lenses.distributed.timing import TimedComm

TASKS: dict[str, Callable[[dict[str, Any], TimedComm, TaskContext], dict[str, Any]]] = {
    "quad_noise": quad_noise,
    "quad_local": quad_local,
    "quad_stale": quad_stale,
    "comm_sweep": comm_sweep,
    "mlp_parity": mlp_parity,
    "mlp_train": mlp_train,
    "ls_batch_floor": ls_batch_floor,
}


def json_safe(obj: Any) -> Any:
    """Replace non-finite floats by None, recursively (results are written with allow_nan=False)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def _watch_parent(interval_s: float = 0.5) -> None:
    """Exit if the launcher (our parent) goes away; a reparented worker must not linger."""
    parent = os.getppid()

    def loop() -> None:
        while True:
            time.sleep(interval_s)
            if os.getppid() != parent:
                os._exit(EXIT_ORPHANED)

    threading.Thread(target=loop, name="multilens-parent-watchdog", daemon=True).start()


def _exit(code: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_worker(job: dict[str, Any], out_dir: Path) -> int:
    """Run the job as this rank; returns the exit code (the caller exits with it)."""
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    torch.set_num_threads(int(job.get("threads", 1)))
    backend = job["backend"]
    device = torch.device(f"cuda:{local_rank}") if backend == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    out: dict[str, Any] = {"rank": rank, "world_size": world, "pid": os.getpid(), "backend": backend, "tasks": {}}
    out_path = out_dir / f"rank{rank}.json"
    t_start = time.perf_counter()
    try:
        dist.init_process_group(
            backend,
            init_method="env://",
            rank=rank,
            world_size=world,
            timeout=datetime.timedelta(seconds=float(job["timeout_s"])),
        )
    except Exception as e:  # noqa: BLE001 - any init failure is reported, then the launcher decides
        out["error"] = f"init_process_group failed: {type(e).__name__}: {e}"
        atomic_write_json(out_path, json_safe(out))
        return EXIT_INIT_FAILED
    code = EXIT_OK
    try:
        groups = {}
        group_timeout = job.get("group_timeout_s")
        for ranks in job["groups"]:  # every rank creates every group, in the same order
            key = tuple(int(r) for r in ranks)
            if group_timeout is None and len(key) == world:
                groups[key] = dist.group.WORLD
            elif group_timeout is None:
                groups[key] = dist.new_group(list(key))
            else:  # a shorter timeout for training than for start-up (imports can be slow)
                groups[key] = dist.new_group(list(key), timeout=datetime.timedelta(seconds=float(group_timeout)))
        for task in job["tasks"]:
            key = tuple(int(r) for r in task["ranks"])
            if rank in key:
                # each task draws from its own seed (its part's), so parts never share random streams
                ctx = TaskContext(seed=int(task.get("seed", job["seed"])), global_rank=rank, device=device)
                comm = TimedComm(groups[key], device)
                t0 = time.perf_counter()
                load0 = os.getloadavg()[0]
                res = TASKS[task["kind"]](task, comm, ctx)
                res["task_wall_s"] = time.perf_counter() - t0
                res["load_average_1m"] = [load0, os.getloadavg()[0]]  # the machine is shared: say how busy it was
                out["tasks"][task["name"]] = res
            try:
                dist.barrier()  # tasks never overlap; waiting here is not part of any measurement
            except RuntimeError as e:
                raise PeerFailure(-1, 0.0, e) from None
    except PeerFailure as e:
        out["fault_event"] = e.record()
        code = EXIT_PEER_FAILURE
    except Exception:  # noqa: BLE001 - the traceback goes to the launcher, which raises it
        out["error"] = traceback.format_exc(limit=8)
        code = EXIT_TASK_ERROR
    out["wall_s"] = time.perf_counter() - t_start
    atomic_write_json(out_path, json_safe(out))
    if code == EXIT_OK:
        dist.destroy_process_group()
    return code


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m multilens.lenses.distributed.worker", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--job", required=True, help="job JSON written by launch.write_job")
    parser.add_argument("--out", required=True, help="folder for rank<k>.json results")
    args = parser.parse_args(argv)
    _watch_parent()
    job = json.loads(Path(args.job).read_text(encoding="utf-8"))
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    _exit(run_worker(job, out_dir))


if __name__ == "__main__":
    main()
