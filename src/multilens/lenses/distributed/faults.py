"""Faults injected into data-parallel training and how their aftermath is recorded.

Two faults, both real: a straggler (one rank sleeps every step, so the others wait inside the
all-reduce) and a worker that dies (``os._exit`` mid-training) or hangs (sleeps forever). A
surviving rank sees the broken collective as an exception (gloo reports the closed connection,
or its timeout fires); it records what happened and leaves with :data:`EXIT_PEER_FAILURE`. The
launcher reaps or kills every process and this module checks that none is left.

Exit codes are the vocabulary shared by workers and the launcher.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

EXIT_OK = 0
EXIT_PEER_FAILURE = 3  # a collective failed because another rank died or hung; recorded, not a crash
EXIT_INIT_FAILED = 4  # init_process_group failed (e.g. the port was taken); the launcher retries
EXIT_TASK_ERROR = 5  # a task raised; the traceback is in the rank's output
EXIT_INJECTED = 17  # the rank that was told to die
EXIT_ORPHANED = 70  # the launcher disappeared; the worker exits rather than linger

EXIT_MEANING = {
    EXIT_OK: "finished",
    EXIT_PEER_FAILURE: "detected a failed peer and exited",
    EXIT_INIT_FAILED: "process-group initialization failed",
    EXIT_TASK_ERROR: "a task raised an error",
    EXIT_INJECTED: "injected death (os._exit)",
    EXIT_ORPHANED: "launcher vanished; exited",
}


class PeerFailure(Exception):
    """A collective failed: another rank died, hung past the timeout, or the network broke."""

    def __init__(self, step: int, latency_s: float, error: BaseException) -> None:
        first = (str(error).strip().splitlines() or [""])[0]
        super().__init__(f"collective failed at step {step} after {latency_s:.3g} s: {type(error).__name__}: {first}")
        self.step = step
        self.latency_s = latency_s
        self.error = f"{type(error).__name__}: {first[:200]}"

    def record(self) -> dict[str, Any]:
        return {"detected": True, "step": self.step, "latency_s": self.latency_s, "error": self.error}


def describe_exit(code: int | None) -> str:
    """Words for a return code (negative: killed by that signal; None: still running)."""
    if code is None:
        return "still running"
    if code < 0:
        return f"killed by signal {-code}"
    return EXIT_MEANING.get(code, f"exit code {code}")


@dataclass(frozen=True)
class FaultPlan:
    """Which rank fails, how ("exit" or "hang") and at which training step."""

    kind: str
    rank: int
    step: int

    def maybe_fail(self, rank: int, step: int) -> None:
        """Called by every rank at the top of each step; the chosen rank fails here."""
        if rank != self.rank or step != self.step:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        if self.kind == "exit":
            os._exit(EXIT_INJECTED)  # no cleanup, no goodbye: as a crashed or OOM-killed worker
        while True:  # "hang": alive but never reaching the next collective
            time.sleep(3600)


def straggle(rank: int, slow_rank: int, sleep_s: float) -> None:
    """The straggler sleeps inside its compute phase, so the others wait in the collective."""
    if rank == slow_rank and sleep_s > 0:
        time.sleep(sleep_s)


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def group_alive(pgid: int) -> bool:
    """True if any process is left in the process group ``pgid`` (each worker leads its own)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def leftover_processes(pids: list[int] | tuple[int, ...]) -> list[int]:
    """The pids (or members of their process groups) that still exist."""
    return [p for p in pids if pid_alive(p) or group_alive(p)]


@dataclass(frozen=True)
class FaultEvent:
    """What happened in one fault-injection launch, as recorded by the launcher and the survivors."""

    kind: str
    victim_rank: int
    fault_step: int
    world_size: int
    timeout_s: float
    detected: bool  # every survivor saw the failure as an exception (not a hang)
    detected_by: tuple[int, ...]
    detect_step: int | None
    detect_latency_s: float | None  # max over survivors: collective start -> exception
    error: str  # first survivor's exception, one line
    exit_codes: tuple[int | None, ...]
    exit_meanings: tuple[str, ...]
    killed_by_launcher: tuple[int, ...]
    leftover_pids: tuple[int, ...]
    pids: tuple[int, ...]  # every worker process started (all checked gone)
    clean_exits: bool  # no rank aborted on a signal it was not sent
    wall_time_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def summary(self) -> str:
        if self.detected:
            det = (
                f"detected by rank(s) {list(self.detected_by)} at step {self.detect_step} after "
                f"{self.detect_latency_s:.3g} s ({self.error})"
            )
        else:
            det = "NOT detected by the survivors"
        left = "no process left behind" if not self.leftover_pids else f"LEFTOVER pids {list(self.leftover_pids)}"
        killed = f"; launcher killed rank(s) {list(self.killed_by_launcher)}" if self.killed_by_launcher else ""
        return (
            f"{self.kind}: rank {self.victim_rank} of {self.world_size} failed at step {self.fault_step}; "
            f"{det}; exits {list(self.exit_meanings)}{killed}; {left}"
        )


def summarize_fault(
    kind: str,
    victim: int,
    fault_step: int,
    timeout_s: float,
    outputs: tuple[dict | None, ...],
    returncodes: tuple[int | None, ...],
    killed: tuple[int, ...],
    leftover: tuple[int, ...],
    wall_time_s: float,
    pids: tuple[int, ...] = (),
) -> FaultEvent:
    """Combine survivors' records and the launcher's view into one :class:`FaultEvent`."""
    survivors = [r for r in range(len(returncodes)) if r != victim]
    events = {}
    for r in survivors:
        out = outputs[r] if r < len(outputs) else None
        ev = (out or {}).get("fault_event")
        if ev and ev.get("detected"):
            events[r] = ev
    detected = len(events) == len(survivors) and len(survivors) > 0
    first = events[min(events)] if events else {}
    latencies = [float(e["latency_s"]) for e in events.values() if e.get("latency_s") is not None]
    steps = [int(e["step"]) for e in events.values() if e.get("step") is not None]
    # A survivor killed by the launcher, or any rank dying on a signal it was not sent, is unclean.
    clean = all(
        (rc is not None and rc >= 0) or r in killed and r == victim for r, rc in enumerate(returncodes)
    ) and not any(r in killed for r in survivors)
    return FaultEvent(
        kind=kind,
        victim_rank=victim,
        fault_step=fault_step,
        world_size=len(returncodes),
        timeout_s=timeout_s,
        detected=detected,
        detected_by=tuple(sorted(events)),
        detect_step=min(steps) if steps else None,
        detect_latency_s=max(latencies) if latencies else None,
        error=str(first.get("error", ""))[:240],
        exit_codes=tuple(returncodes),
        exit_meanings=tuple(describe_exit(c) for c in returncodes),
        killed_by_launcher=tuple(killed),
        leftover_pids=tuple(leftover),
        pids=tuple(pids),
        clean_exits=bool(clean),
        wall_time_s=float(wall_time_s),
    )
