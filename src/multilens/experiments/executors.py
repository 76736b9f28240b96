"""Executors: where the runs of a sweep execute.

``LocalExecutor`` is a process pool (spawned workers, one torch thread each, so runs do not
oversubscribe the cores and give the same floating-point results as in any other worker).
``RayExecutor`` sends the same task function to a Ray cluster (``address``), or to a local Ray
it starts. Both yield ``(index, outcome)`` pairs as runs finish; an outcome is a JSON-able dict
``{"ok": True, "result": ...}`` or ``{"ok": False, "error": "..."}``: a run that raises never
stops the sweep. Task functions are referred to by ``"module:function"`` so nothing is pickled
but plain JSON-able specs.
"""

from __future__ import annotations

import importlib
import os
import time
import traceback
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from typing import Any, Protocol

from multilens.errors import ConfigError


def resolve(task: str) -> Any:
    """Import ``"package.module:function"``."""
    mod, _, fn = task.partition(":")
    if not fn:
        raise ConfigError(f"task `{task}` must look like 'package.module:function'.")
    return getattr(importlib.import_module(mod), fn)


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))


def execute_task(task: str, spec: dict[str, Any], threads: int = 1) -> dict[str, Any]:
    """Run one task in the current process and wrap its outcome; never raises."""
    t0 = time.perf_counter()
    try:
        _init_worker(threads)
        result = resolve(task)(spec)
        return {"ok": True, "result": result, "wall_time_s": time.perf_counter() - t0, "pid": os.getpid()}
    except Exception as e:  # a failing run is data, recorded as failed
        tb = traceback.format_exc(limit=4)
        return {"ok": False, "error": f"{type(e).__name__}: {e}\n{tb}", "wall_time_s": time.perf_counter() - t0}


class Executor(Protocol):
    name: str
    workers: int

    def map_unordered(self, task: str, specs: Sequence[dict[str, Any]]) -> Iterator[tuple[int, dict[str, Any]]]: ...

    def close(self) -> None: ...


class LocalExecutor:
    """A local process pool of ``workers`` spawned processes (default: number of cores)."""

    name = "local"

    def __init__(self, workers: int | None = None, threads_per_worker: int = 1) -> None:
        n = (os.cpu_count() or 1) if workers is None else workers
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"`workers` must be an int >= 1; got {workers!r}.")
        self.workers = n
        self.threads = threads_per_worker
        self._pool: ProcessPoolExecutor | None = None

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=get_context("spawn"),
                initializer=_init_worker,
                initargs=(self.threads,),
            )
        return self._pool

    def map_unordered(self, task: str, specs: Sequence[dict[str, Any]]) -> Iterator[tuple[int, dict[str, Any]]]:
        resolve(task)  # fail fast on a bad task name, in the parent
        pool = self._get_pool()
        futures = {pool.submit(execute_task, task, s, self.threads): i for i, s in enumerate(specs)}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                try:
                    out = f.result()
                except Exception as e:  # the worker process itself died
                    out = {"ok": False, "error": f"worker process failed: {type(e).__name__}: {e}", "wall_time_s": 0.0}
                yield futures[f], out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class RayExecutor:
    """Ray tasks, one CPU each; connects to ``address`` or starts a local Ray with ``workers`` CPUs."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, threads_per_worker: int = 1) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("`--executor ray` needs Ray; install it with `pip install 'multilens[ray]'`.") from None
        n = (os.cpu_count() or 1) if workers is None else workers
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"`workers` must be an int >= 1; got {workers!r}.")
        self.workers = n
        self.threads = threads_per_worker
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
            if address:
                kwargs["address"] = address
            else:
                kwargs["num_cpus"] = n
            try:
                ray.init(**kwargs)
            except Exception as e:
                raise ConfigError(
                    f"`--address {address}`: could not connect to Ray ({e}); check the address."
                ) from None
            self._started = True
        self._remote = ray.remote(num_cpus=1, max_retries=0)(execute_task)

    def map_unordered(self, task: str, specs: Sequence[dict[str, Any]]) -> Iterator[tuple[int, dict[str, Any]]]:
        resolve(task)
        refs = {self._remote.remote(task, s, self.threads): i for i, s in enumerate(specs)}
        pending = list(refs)
        while pending:
            done, pending = self._ray.wait(pending, num_returns=1)
            for r in done:
                try:
                    out = self._ray.get(r)
                except Exception as e:
                    out = {"ok": False, "error": f"ray task failed: {type(e).__name__}: {e}", "wall_time_s": 0.0}
                yield refs[r], out

    def close(self) -> None:
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
        self._started = False


def make_executor(kind: str, workers: int | None = None, address: str | None = None) -> Executor:
    if kind == "local":
        if address:
            raise ConfigError("`--address` only applies to `--executor ray`; drop it or use ray.")
        return LocalExecutor(workers)
    if kind == "ray":
        return RayExecutor(address, workers)
    raise ConfigError(f"`--executor` must be 'local' or 'ray'; got {kind!r}.")
