"""One run directory, one writer: an exclusive lock on ``<run dir>/.multilens.lock``.

The lock is an ``fcntl.flock`` on an open file, so the kernel releases it when the holder dies
(even by SIGKILL): a stale lock of a dead process is simply taken over. The file records the
holder's pid, host, command and start time so a second invocation can say who holds it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from multilens.errors import MultilensError

LOCK_NAME = ".multilens.lock"


class RunDirLocked(MultilensError):
    """Another process is writing to this run directory."""


class RunDirLock:
    """``with RunDirLock(out_dir): ...`` holds the directory's lock for the block."""

    def __init__(self, out_dir: str | Path) -> None:
        self.path = Path(out_dir) / LOCK_NAME
        self._fh = None

    def acquire(self) -> RunDirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held open while locked
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            try:
                holder = json.loads(fh.read() or "{}")
            except json.JSONDecodeError:
                holder = {}
            fh.close()
            raise RunDirLocked(
                f"run directory `{self.path.parent}` is in use by process {holder.get('pid', '?')} on "
                f"{holder.get('host', '?')} (since {holder.get('since', '?')}); wait for it to finish or pass "
                "another --out."
            ) from None
        fh.seek(0)
        fh.truncate()
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": since, "command": " ".join(sys.argv)}
        fh.write(json.dumps(info))
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self) -> RunDirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
