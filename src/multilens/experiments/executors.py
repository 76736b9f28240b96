"""Executors: where the runs of a sweep execute.

``LocalExecutor`` is a process pool (spawned workers, one torch thread each, so runs do not
oversubscribe the cores and give the same floating-point results as in any other worker).
``RayExecutor`` sends the same task function to a Ray cluster (``address``), or to a local Ray
it starts. Both yield ``(index, outcome)`` pairs as runs finish; an outcome is a JSON-able dict
``{"ok": True, "result": ...}`` or ``{"ok": False, "error": "..."}``: a run that raises never
stops the sweep. Task functions are referred to by ``"module:function"`` so nothing is pickled
but plain JSON-able specs.

Speed. The pool of an executor starts once (lazily, or by :meth:`LocalExecutor.warm`) and is reused
by every sweep sent through that executor; its workers import torch, multilens and the task's
module in their initializer, so the first run does not pay for the imports. Runs are sent in
chunks (``chunk_size``; by default about four chunks per worker, so the per-call pickling and
IPC is amortised while the chunks still balance): chunk ``k`` of ``m`` holds runs ``k, k+m,
k+2m, ...``, so a sweep ordered by size spreads its large runs over all chunks. Torch's thread
count is set only inside the workers; :func:`execute_task` called in the caller's process sets it
for the call and restores it afterwards.

Ray clusters with token authentication. Ray 2.60 turns token authentication on by default for a
cluster started on a machine that has a token (``~/.ray/auth_token``), but a client connecting to
an explicit ``address`` sends no token unless told to. multilens sends the token when the user
gives one: ``token=`` (``make_executor("ray", address=..., token=...)``) or the environment
variable ``RAY_AUTH_TOKEN`` (or ``RAY_AUTH_TOKEN_PATH`` naming a file holding it); either turns on
Ray's token mode (``RAY_AUTH_MODE=token``) for this process while the executor is open.
``ray get-auth-token`` on the head node prints the cluster's token. A connection refused for a
missing or wrong token raises a one-line :class:`~multilens.errors.ConfigError` that says so.
The cluster's workers run the tasks with their own Python: multilens (the same version) must be
importable there. For a single-machine head on the loopback address Ray needs
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` for the head and the client (else it rewrites 127.0.0.1 to
the machine's outward address, where a loopback head does not listen).
"""

from __future__ import annotations

import importlib
import math
import os
import socket
import tempfile
import time
import traceback
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Protocol

from multilens.errors import ConfigError

#: Environment variables Ray 2.60 reads for token authentication.
RAY_TOKEN_ENV = "RAY_AUTH_TOKEN"
RAY_TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
RAY_AUTH_MODE_ENV = "RAY_AUTH_MODE"


def resolve(task: str) -> Any:
    """Import ``"package.module:function"``."""
    mod, _, fn = task.partition(":")
    if not fn:
        raise ConfigError(f"task `{task}` must look like 'package.module:function'.")
    return getattr(importlib.import_module(mod), fn)


def _init_worker(threads: int, preload: Sequence[str] = ()) -> None:
    """Initializer of a pool or Ray worker process (never called in the caller's process)."""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    import torch

    torch.set_num_threads(threads)
    import multilens.experiments.store  # noqa: F401  (warm the imports a run needs)

    for mod in preload:
        try:
            importlib.import_module(mod)
        except Exception:  # an import error surfaces, with its traceback, in the run itself
            pass


def _run(task: str, spec: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        result = resolve(task)(spec)
        return {"ok": True, "result": result, "wall_time_s": time.perf_counter() - t0, "pid": os.getpid()}
    except Exception as e:  # a failing run is data, recorded as failed
        tb = traceback.format_exc(limit=4)
        return {"ok": False, "error": f"{type(e).__name__}: {e}\n{tb}", "wall_time_s": time.perf_counter() - t0}


def execute_task(task: str, spec: dict[str, Any], threads: int | None = 1) -> dict[str, Any]:
    """Run one task in the current process and wrap its outcome; never raises.

    With ``threads`` set, torch runs the task on that many threads (the workers' setting, so the
    numbers equal a worker's) and the caller's thread count is restored afterwards; ``None`` leaves
    torch's threads alone.
    """
    if threads is None:
        return _run(task, spec)
    import torch

    before = torch.get_num_threads()
    if before != threads:
        torch.set_num_threads(threads)
    try:
        return _run(task, spec)
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def execute_chunk(task: str, items: Sequence[tuple[int, dict[str, Any]]]) -> list[tuple[int, dict[str, Any]]]:
    """Run several ``(index, spec)`` in a worker (threads already set by its initializer)."""
    return [(i, _run(task, s)) for i, s in items]


_RAY_WORKER_READY = False


def _ray_execute_chunk(
    task: str, items: Sequence[tuple[int, dict[str, Any]]], threads: int
) -> list[tuple[int, dict[str, Any]]]:
    global _RAY_WORKER_READY
    if not _RAY_WORKER_READY:  # a Ray worker process: set up once, kept for its later tasks
        _init_worker(threads, (task.partition(":")[0],))
        _RAY_WORKER_READY = True
    return execute_chunk(task, items)


def chunks(
    n: int, workers: int, chunk_size: int | None = None, costs: Sequence[float] | None = None
) -> list[list[int]]:
    """Indices ``0..n-1`` in chunks, in the order they are to be submitted.

    Without ``costs``: strided chunks, about four per worker (or of ``chunk_size`` runs). With
    ``costs`` (an estimate of each run's time, any scale): longest first, in guided chunks, so the
    costliest runs start first and the tail is made of small chunks that fill the workers evenly
    (longest-processing-time-first list scheduling): each chunk takes runs in decreasing cost until
    its cost reaches the remaining cost / (4 x workers), at least one run and at most ``chunk_size``.
    """
    if n == 0:
        return []
    if costs is None:
        size = chunk_size if chunk_size is not None else max(1, n // (4 * workers))
        m = math.ceil(n / size)
        return [list(range(k, n, m)) for k in range(m)]
    if len(costs) != n:
        raise ConfigError(f"`costs` must have one entry per spec ({n}); got {len(costs)}.")
    c = [x if math.isfinite(x) and x > 0 else 0.0 for x in map(float, costs)]
    order = sorted(range(n), key=lambda i: (-c[i], i))
    remaining = sum(c)
    out: list[list[int]] = []
    k = 0
    while k < n:
        target = remaining / (4 * workers)
        chunk, cost = [order[k]], c[order[k]]
        k += 1
        while k < n and cost + c[order[k]] <= target and (chunk_size is None or len(chunk) < chunk_size):
            chunk.append(order[k])
            cost += c[order[k]]
            k += 1
        remaining -= cost
        out.append(chunk)
    return out


def _check_workers(workers: int | None) -> int:
    n = (os.cpu_count() or 1) if workers is None else workers
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"`workers` must be an int >= 1; got {workers!r}.")
    return n


def _check_chunk(chunk_size: int | None) -> int | None:
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ConfigError(f"`chunk_size` must be an int >= 1 or None; got {chunk_size!r}.")
    return chunk_size


def _ping(rendezvous: str, n: int, timeout: float = 120.0) -> int:
    """Hold this worker until ``n`` workers have checked in under ``rendezvous``; return its pid."""
    Path(rendezvous, str(os.getpid())).touch()
    deadline = time.monotonic() + timeout
    while len(os.listdir(rendezvous)) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    return os.getpid()


class Executor(Protocol):
    name: str
    workers: int

    def map_unordered(
        self, task: str, specs: Sequence[dict[str, Any]], costs: Sequence[float] | None = None
    ) -> Iterator[tuple[int, dict[str, Any]]]: ...

    def close(self) -> None: ...


class LocalExecutor:
    """A local process pool of ``workers`` spawned processes (default: number of cores).

    The pool starts on the first sweep (or :meth:`warm`) and serves every later sweep until
    :meth:`close`; ``preload`` names modules its workers import at start (the first task's module
    is added when the pool starts on a sweep).
    """

    name = "local"

    def __init__(
        self,
        workers: int | None = None,
        threads_per_worker: int = 1,
        chunk_size: int | None = None,
        preload: Sequence[str] = (),
    ) -> None:
        self.workers = _check_workers(workers)
        self.threads = threads_per_worker
        self.chunk_size = _check_chunk(chunk_size)
        self.preload = tuple(preload)
        self._pool: ProcessPoolExecutor | None = None

    def _get_pool(self, task: str | None = None) -> ProcessPoolExecutor:
        if self._pool is None:
            preload = self.preload + ((task.partition(":")[0],) if task else ())
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=get_context("spawn"),
                initializer=_init_worker,
                initargs=(self.threads, preload),
            )
        return self._pool

    def warm(self, task: str | None = None) -> list[int]:
        """Start every worker now (imports done) and return their process ids."""
        pool = self._get_pool(task)
        with tempfile.TemporaryDirectory(prefix="multilens-warm-") as d:  # every worker must check in
            futs = [pool.submit(_ping, d, self.workers) for _ in range(self.workers)]
            return sorted({f.result() for f in futs})

    def map_unordered(
        self, task: str, specs: Sequence[dict[str, Any]], costs: Sequence[float] | None = None
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(index, outcome)`` of every spec as they finish; ``costs`` (estimated run times) orders the
        work longest first in guided chunks (see :func:`chunks`); the outcomes do not depend on it."""
        resolve(task)  # fail fast on a bad task name, in the parent
        pool = self._get_pool(task)
        futures = {
            pool.submit(execute_chunk, task, [(i, specs[i]) for i in idx]): idx
            for idx in chunks(len(specs), self.workers, self.chunk_size, costs)
        }
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                try:
                    yield from f.result()
                except Exception as e:  # the worker process itself died
                    err = f"worker process failed: {type(e).__name__}: {e}"
                    for i in futures[f]:
                        yield i, {"ok": False, "error": err, "wall_time_s": 0.0}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _is_token_error(text: str) -> bool:
    low = text.lower()
    return any(k in low for k in ("invalidauthtoken", "authenticationerror", "unauthenticated", "authentication token"))


def token_error_message(address: str, token_sent: bool) -> str:
    """The one-line error for a Ray cluster that refused this client's token (or its lack of one)."""
    what = "rejected the token multilens sent" if token_sent else "requires an authentication token and none was sent"
    return (
        f"`--address {address}`: the Ray cluster {what} (Ray >= 2.60 turns token authentication on by default); "
        f"pass the cluster's token in the environment variable {RAY_TOKEN_ENV}=<token> (or {RAY_TOKEN_PATH_ENV}="
        "<file>) or as token=... to make_executor; `ray get-auth-token` on the head node prints it."
    )


def _host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a plain ``host:port`` address (not ``auto`` or ``ray://...``)."""
    if "://" in address:
        return None
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return None
    return host.strip("[]"), int(port)


def _listening(host: str, port: int, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _ray_rewrites(address: str) -> str | None:
    """The address Ray will really dial for ``address``, if it differs (Ray turns 127.0.0.1 into
    the machine's outward IP unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``)."""
    try:
        from ray._private.services import canonicalize_bootstrap_address

        moved = canonicalize_bootstrap_address(address)
    except Exception:  # a Ray without this private API, or an address Ray itself will reject
        return None
    return moved if moved and moved != address else None


def _probe_gcs(address: str) -> Exception | None:
    """Ask the cluster's GCS for its id once; return the authentication error, if that is what it is.

    ``ray.init`` retries a refused connection for ~20 s and then reports only "Failed to connect";
    this one call tells in about a second whether the cluster refuses us for the token.
    """
    try:
        from ray._raylet import GcsClient
    except Exception:  # a Ray without this private API: let ray.init report
        return None
    try:
        GcsClient(address=address)  # Ray's client waits ~40 s if nothing listens: call after _listening
    except Exception as e:
        return e if _is_token_error(f"{type(e).__name__}: {e}") else None
    return None


class RayExecutor:
    """Ray tasks, one CPU each; connects to ``address`` or starts a local Ray with ``workers`` CPUs.

    ``token``: the cluster's authentication token (else ``RAY_AUTH_TOKEN`` / ``RAY_AUTH_TOKEN_PATH``
    from the environment, if set); see the module docstring.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        workers: int | None = None,
        threads_per_worker: int = 1,
        chunk_size: int | None = None,
        token: str | None = None,
    ) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("`--executor ray` needs Ray; install it with `pip install 'multilens[ray]'`.") from None
        self.workers = _check_workers(workers)
        self.threads = threads_per_worker
        self.chunk_size = _check_chunk(chunk_size)
        self._ray = ray
        self._started = False
        self._saved_env: dict[str, str | None] = {}
        if token is not None and (not isinstance(token, str) or not token.strip()):
            raise ConfigError("`token` must be a non-empty string (the Ray cluster's authentication token).")
        if not ray.is_initialized():
            kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
            token_sent = False
            if address:
                kwargs["address"] = address
                hp = _host_port(address)
                if hp is not None and not _listening(*hp):
                    raise ConfigError(
                        f"`--address {address}`: could not connect to Ray (nothing accepts connections at "
                        f"{hp[0]}:{hp[1]}); check the address and that the cluster is up (`ray status` on its head)."
                    )
                moved = _ray_rewrites(address)
                if moved is not None and (mhp := _host_port(moved)) is not None and not _listening(*mhp):
                    raise ConfigError(
                        f"`--address {address}`: could not connect to Ray: Ray rewrites this loopback address to "
                        f"{moved}, where nothing listens (a head started on 127.0.0.1 only); set "
                        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 in this process's environment, as for the head."
                    )
                token_sent = self._use_token(token)
                if hp is not None and _probe_gcs(address) is not None:
                    self._restore_env()
                    raise ConfigError(token_error_message(address, token_sent)) from None
            else:
                kwargs["num_cpus"] = self.workers
            try:
                ray.init(**kwargs)
            except Exception as e:
                self._restore_env()
                chain, c = [], e
                while c is not None:
                    chain.append(f"{type(c).__name__}: {c}")
                    c = c.__cause__ or c.__context__
                if address and _is_token_error("\n".join(chain)):
                    raise ConfigError(token_error_message(address, token_sent)) from None
                first = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise ConfigError(
                    f"`--address {address}`: could not connect to Ray ({first}); check the address."
                ) from None
            self._started = True
        self._remote = ray.remote(num_cpus=1, max_retries=0)(_ray_execute_chunk)

    def _use_token(self, token: str | None) -> bool:
        """Turn on Ray's token mode for this process if a token is given; True if one will be sent."""
        env_token = os.environ.get(RAY_TOKEN_ENV) or os.environ.get(RAY_TOKEN_PATH_ENV)
        mode = os.environ.get(RAY_AUTH_MODE_ENV)
        if token is None and not env_token:
            return (mode or "").lower() == "token"
        if mode is not None and mode.lower() != "token" and token is None:
            return False  # the user chose a mode explicitly; respect it
        changes = {RAY_AUTH_MODE_ENV: "token"}
        if token is not None:
            changes[RAY_TOKEN_ENV] = token.strip()
        for k, v in changes.items():
            self._saved_env[k] = os.environ.get(k)
            os.environ[k] = v
        self._reload_ray_auth()
        return True

    def _restore_env(self) -> None:
        if not self._saved_env:
            return
        for k, v in self._saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        self._saved_env = {}
        self._reload_ray_auth()

    @staticmethod
    def _reload_ray_auth() -> None:
        try:  # Ray caches its config and token; make it read the environment again
            from ray._raylet import AuthenticationTokenLoader, Config

            Config.initialize("")
            AuthenticationTokenLoader.instance().reset_cache()
        except Exception:
            pass

    def map_unordered(
        self, task: str, specs: Sequence[dict[str, Any]], costs: Sequence[float] | None = None
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        resolve(task)
        refs = {
            self._remote.remote(task, [(i, specs[i]) for i in idx], self.threads): idx
            for idx in chunks(len(specs), self.workers, self.chunk_size, costs)
        }
        pending = list(refs)
        while pending:
            done, pending = self._ray.wait(pending, num_returns=1)
            for r in done:
                try:
                    results = self._ray.get(r)
                except Exception as e:
                    err = f"ray task failed: {type(e).__name__}: {e}"
                    if "failed to import" in str(e):
                        err = (
                            "ray task failed: the cluster's workers cannot import the task (multilens must be "
                            f"installed in the cluster's Python, or on its PYTHONPATH, when its nodes start): {e}"
                        )
                    results = [(i, {"ok": False, "error": err, "wall_time_s": 0.0}) for i in refs[r]]
                yield from results

    def close(self) -> None:
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
        self._started = False
        self._restore_env()


def make_executor(
    kind: str,
    workers: int | None = None,
    address: str | None = None,
    *,
    chunk_size: int | None = None,
    token: str | None = None,
) -> Executor:
    if kind == "local":
        if address:
            raise ConfigError("`--address` only applies to `--executor ray`; drop it or use ray.")
        if token is not None:
            raise ConfigError("`token` only applies to `--executor ray`; drop it or use ray.")
        return LocalExecutor(workers, chunk_size=chunk_size)
    if kind == "ray":
        return RayExecutor(address, workers, chunk_size=chunk_size, token=token)
    raise ConfigError(f"`--executor` must be 'local' or 'ray'; got {kind!r}.")
