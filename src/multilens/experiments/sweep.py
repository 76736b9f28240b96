"""Sweeps: a list of run configs x seeds, executed by an executor and persisted in the store.

``run_sweep`` skips runs the store already has as ``done`` by this code (resume; a run done by
other code is stale and redone, see :class:`~multilens.experiments.store.Store`), claims the rest as
``running``, executes them, and records each outcome as it arrives (``done`` with metrics and
curves in one transaction, or ``failed`` with its error). A failing run never stops the sweep.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from multilens.config import config_hash
from multilens.experiments.executors import Executor
from multilens.experiments.store import Store


@dataclass(frozen=True)
class SweepReport:
    sweep: str
    total: int
    skipped_done: int
    executed: int
    failed: int


def run_sweep(
    sweep: str,
    task: str,
    configs: Sequence[dict[str, Any]],
    seeds: Sequence[int],
    store: Store,
    executor: Executor,
    progress: Callable[[str, int, int], None] | None = None,
    cost: Callable[[dict[str, Any]], float] | None = None,
) -> SweepReport:
    """Execute ``task(config | {"seed": s})`` for every config and seed not already done.

    The task returns ``{"metrics": {...}, "curves": {...}}``; both must be JSON-able. ``cost``
    estimates a config's run time (any scale): the executor then starts the costliest runs first
    (the results do not depend on it; the wall time does, when run times differ a lot).
    """
    store.put_meta(f"task:{sweep}", task)  # lets a reproducibility check re-execute a run
    todo: list[tuple[str, int, dict[str, Any]]] = []
    skipped = 0
    for cfg in configs:
        h = config_hash(cfg)
        for s in seeds:
            if store.status(h, s) == "done":
                skipped += 1
            else:
                todo.append((h, s, cfg))
    total = skipped + len(todo)
    for h, s, cfg in todo:
        store.mark_running(h, s, sweep, cfg)
    done = skipped
    failed = 0
    if progress:
        progress(sweep, done, total)
    specs = [dict(cfg, seed=s) for _, s, cfg in todo]
    costs = [float(cost(cfg)) for _, _, cfg in todo] if cost is not None else None
    it = executor.map_unordered(task, specs, costs) if costs is not None else executor.map_unordered(task, specs)
    for i, out in it:
        h, s, _ = todo[i]
        if out["ok"]:
            res = out["result"]
            store.mark_done(h, s, res.get("metrics", {}), res.get("curves", {}), out["wall_time_s"])
        else:
            store.mark_failed(h, s, out["error"], out["wall_time_s"])
            failed += 1
        done += 1
        if progress:
            progress(sweep, done, total)
    return SweepReport(sweep, total, skipped, len(todo), failed)
