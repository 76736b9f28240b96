"""Start N worker processes on this machine, wait for them with a deadline, and leave none behind.

Each worker is ``python -m multilens.lenses.distributed.worker`` with the torchrun environment
(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR=127.0.0.1, MASTER_PORT), so the launcher and torchrun
run the same code. The port is a free one picked by binding a socket to port 0; the short race
between closing that socket and rank 0 binding it is handled by retrying on a new port.

Every worker leads its own process group (``start_new_session``); the launcher kills whole
groups (SIGTERM, then SIGKILL) when the deadline passes, when a rank failed and the others have
not finished within a grace period, or when the launcher itself is interrupted, and then
checks that no pid and no group member is left.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from multilens.errors import MultilensError
from multilens.io import atomic_write_json
from multilens.lenses.distributed.faults import EXIT_INIT_FAILED, describe_exit, leftover_processes


class LaunchError(MultilensError):
    """A distributed launch failed (a worker crashed, or it missed its deadline)."""


@dataclass(frozen=True)
class LaunchResult:
    world_size: int
    port: int
    attempts: int
    returncodes: tuple[int | None, ...]
    outputs: tuple[dict[str, Any] | None, ...]
    pids: tuple[int, ...]
    killed: tuple[int, ...]  # ranks the launcher had to kill
    leftover: tuple[int, ...]  # pids still present after cleanup (must be empty)
    timed_out: bool
    wall_time_s: float
    stderr_tails: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return all(rc == 0 for rc in self.returncodes) and all(o is not None for o in self.outputs)

    def failure_message(self) -> str:
        """One line naming the first failing rank and its error."""
        for r, (rc, out) in enumerate(zip(self.returncodes, self.outputs)):
            if rc != 0 or out is None:
                err = (out or {}).get("error") or self.stderr_tails[r] or ""
                last = [ln for ln in str(err).strip().splitlines() if ln.strip()][-1:] or [""]
                why = "deadline passed" if self.timed_out else describe_exit(rc)
                return f"rank {r} of {self.world_size}: {why}: {last[0][:300]}"
        return "no failure"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (bind to port 0 and read what the OS chose)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _pythonpath() -> str:
    """This package's src first, then the parent's import path (so a user's subject module imports)."""
    src = str(Path(__file__).resolve().parents[3])  # .../src, so workers import this very package
    old = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    here = [str(Path(p).resolve()) for p in sys.path if p and Path(p).is_dir()]
    seen: list[str] = []
    for p in [src, *old, *here]:
        if p not in seen:
            seen.append(p)
    return os.pathsep.join(seen)


def worker_env(rank: int, world_size: int, port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        OMP_NUM_THREADS="1",  # one thread per worker: the workers share the machine's cores
        MKL_NUM_THREADS="1",
        PYTHONPATH=_pythonpath(),
        PYTHONUNBUFFERED="1",
    )
    return env


def _kill_groups(procs: list[subprocess.Popen], ranks: list[int]) -> None:
    for r in ranks:
        try:
            os.killpg(procs[r].pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    t_end = time.monotonic() + 2.0
    for r in ranks:
        try:
            procs[r].wait(timeout=max(0.0, t_end - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for r in ranks:
        try:
            os.killpg(procs[r].pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        procs[r].wait()


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-n:]
    except OSError:
        return ""


def _launch_once(
    job_path: Path, out_dir: Path, world_size: int, port: int, deadline_s: float, grace_s: float
) -> dict[str, Any]:
    procs: list[subprocess.Popen] = []
    logs = []
    killed: list[int] = []
    timed_out = False
    t0 = time.monotonic()
    try:
        for r in range(world_size):
            log = open(out_dir / f"rank{r}.log", "wb")  # noqa: SIM115 - closed in finally
            logs.append(log)
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "multilens.lenses.distributed.worker",
                        "--job",
                        str(job_path),
                        "--out",
                        str(out_dir),
                    ],
                    env=worker_env(r, world_size, port),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        kill_at = t0 + deadline_s
        while True:
            codes = [p.poll() for p in procs]
            if all(c is not None for c in codes):
                break
            now = time.monotonic()
            if any(c not in (None, 0) for c in codes):
                kill_at = min(kill_at, now + grace_s)  # a rank failed: the rest get a grace period
            if now >= kill_at:
                timed_out = now >= t0 + deadline_s
                killed = [r for r, c in enumerate(codes) if c is None]
                _kill_groups(procs, killed)
                break
            time.sleep(0.05)
    finally:
        alive = [r for r, p in enumerate(procs) if p.poll() is None]
        if alive:  # interrupted (Ctrl-C, an exception): never leave workers behind
            _kill_groups(procs, alive)
        for log in logs:
            log.close()
    pids = [p.pid for p in procs]
    return {
        "returncodes": tuple(p.returncode for p in procs),
        "pids": tuple(pids),
        "killed": tuple(killed),
        "timed_out": timed_out,
        "wall": time.monotonic() - t0,
        "leftover": tuple(leftover_processes(pids)),
    }


def read_outputs(out_dir: Path, world_size: int) -> tuple[dict[str, Any] | None, ...]:
    """Each rank's ``rank<k>.json`` (None where a rank wrote nothing, e.g. it was killed)."""
    outs = []
    for r in range(world_size):
        p = Path(out_dir) / f"rank{r}.json"
        outs.append(json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None)
    return tuple(outs)


def launch(
    job: dict[str, Any], world_size: int, *, deadline_s: float, grace_s: float, max_attempts: int = 3
) -> LaunchResult:
    """Run ``job`` on ``world_size`` fresh worker processes; always returns with every process gone."""
    if world_size < 1:
        raise LaunchError(f"`world_size` must be an int >= 1; got {world_size}.")
    with tempfile.TemporaryDirectory(prefix="multilens-dist-") as tmp:
        for attempt in range(1, max_attempts + 1):
            run_dir = Path(tmp) / f"attempt{attempt}"
            run_dir.mkdir()
            job_path = atomic_write_json(run_dir / "job.json", job)
            port = free_port()
            res = _launch_once(job_path, run_dir, world_size, port, deadline_s, grace_s)
            outputs = read_outputs(run_dir, world_size)
            init_failed = any(c == EXIT_INIT_FAILED for c in res["returncodes"])
            if init_failed and attempt < max_attempts:
                continue  # most likely the port was taken between free_port() and the bind: retry
            tails = tuple(_tail(run_dir / f"rank{r}.log") for r in range(world_size))
            return LaunchResult(
                world_size=world_size,
                port=port,
                attempts=attempt,
                returncodes=res["returncodes"],
                outputs=outputs,
                pids=res["pids"],
                killed=res["killed"],
                leftover=res["leftover"],
                timed_out=res["timed_out"],
                wall_time_s=res["wall"],
                stderr_tails=tails,
            )
    raise LaunchError("unreachable: launch attempts exhausted without a result")  # pragma: no cover


def write_job(path: str | Path, job: dict[str, Any]) -> Path:
    """Write a job file for ``torchrun ... -m multilens.lenses.distributed.worker --job PATH``."""
    return atomic_write_json(path, job)
