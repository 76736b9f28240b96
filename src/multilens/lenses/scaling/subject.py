"""What the scaling lens measures: a table of finished runs, or a ``train_fn`` that produces one.

:class:`Runs` is the subject of :func:`multilens.lenses.scaling.measure`: one row per finished
training run with its parameter count ``N``, training examples (tokens) ``D`` and held-out
``loss``, and optionally the seed, the compute budget the run belongs to (runs of one iso-FLOP
profile share a budget; by default budgets are found by grouping C = 6ND), the number of
distinct examples it saw (to count repeats), the training FLOPs counted from the model (to test
C = 6ND), how many runs of the design failed, and a known irreducible loss (Bayes risk). Build
one from arrays, from a CSV (:meth:`Runs.from_csv`, columns ``N,D,loss`` or ``N,C,loss``,
optional ``seed``, ``budget``, ``distinct``, ``flops``), or from a
:class:`~multilens.lenses.scaling.data.ScalingData`.

:class:`TrainFn` wraps a user's training function::

    def train_fn(config: dict, seed: int) -> dict:
        # train one model as ``config`` says (the keys are yours, e.g. {"width": 64, "budget": 1e8})
        return {"N": n_params, "D": examples_seen, "loss": held_out_loss}   # "distinct": optional

Every ``config`` in ``configs`` is run once per seed in ``seeds``, serially in this process; a
run that raises or returns a non-finite loss counts as failed (``Runs.n_failed``). The budget
of a run is ``config["budget"]`` when present, else it is grouped from C = 6ND.

:func:`default_subject` runs the bundled iso-FLOP sweep (:mod:`.study`) through
``runtime.executor`` into ``runtime.store`` (resumable: runs already ``done`` in the store are
not recomputed); with neither, it runs serially in this process with a temporary store that
lives as long as the process.
"""

from __future__ import annotations

import atexit
import csv
import dataclasses
import math
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from multilens.config import config_hash
from multilens.errors import ConfigError, DataError
from multilens.experiments.executors import resolve
from multilens.experiments.store import Store
from multilens.experiments.sweep import run_sweep
from multilens.lenses.scaling.data import MIN_POINTS_CHINCHILLA, ScalingData, load_scaling_csv
from multilens.lenses.scaling.settings import Settings
from multilens.lenses.scaling.study import TASK, design
from multilens.seeding import derive_seed

SWEEP = "scaling"
BUDGET_GAP_LOG10 = 0.01  # runs whose log10 C differ by less than this (2.3%) share a budget


def _array(name: str, x: Any, n: int | None) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).ravel()
    if n is not None and a.size != n:
        raise DataError(f"`{name}` has {a.size} values but `loss` has {n}; give one value per run.")
    if not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise DataError(f"`{name}` must be finite and > 0 for every run.")
    a.setflags(write=False)
    return a


def group_budgets(compute: np.ndarray) -> np.ndarray:
    """Budget label (geometric mean C of the group) per run: sorted log10 C split at gaps > 0.01."""
    lc = np.log10(np.asarray(compute, dtype=np.float64))
    order = np.argsort(lc, kind="stable")
    group = np.zeros(len(lc), dtype=np.intp)
    g = 0
    for i in range(1, len(order)):
        if lc[order[i]] - lc[order[i - 1]] > BUDGET_GAP_LOG10:
            g += 1
        group[order[i]] = g
    labels = np.array([10 ** lc[group == k].mean() for k in range(g + 1)])
    return labels[group]


@dataclass(frozen=True, eq=False)
class Runs:
    """A table of finished runs (the lens's subject); see the module docstring."""

    N: Any
    D: Any
    loss: Any
    seed: Any = None  # per run; None: all runs one seed
    budget: Any = None  # per run compute budget label; None: grouped from C = 6ND
    distinct: Any = None  # per run distinct training examples seen; None: unknown
    flops: Any = None  # per run training FLOPs counted from the model (forward + backward); None: unknown
    n_failed: int = 0  # runs of the design that did not finish (not in the table)
    bayes_risk: float | None = None  # a known irreducible loss (e.g. noise variance), if any
    source: str = ""
    sweep: dict | None = None  # how the bundled sweep ran this time (executed now, reused), for provenance
    data: ScalingData = field(init=False, repr=False)

    def __post_init__(self) -> None:
        data = ScalingData(self.N, self.D, self.loss, source=self.source)  # validates N, D, loss
        n = data.n_points
        if n < MIN_POINTS_CHINCHILLA:
            raise DataError(f"the runs table has {n} runs; the L(N, D) fit needs at least {MIN_POINTS_CHINCHILLA}.")
        object.__setattr__(self, "data", data)
        for k in ("N", "D", "loss"):
            object.__setattr__(self, k, getattr(data, k))
        seed = np.zeros(n) if self.seed is None else np.asarray(self.seed, dtype=np.float64).ravel()
        if seed.size != n or not np.all(np.isfinite(seed)):
            raise DataError(f"`seed` must have one finite value per run ({n}); got {seed.size}.")
        object.__setattr__(self, "seed", seed.astype(np.int64))
        budget = group_budgets(data.compute) if self.budget is None else _array("budget", self.budget, n)
        object.__setattr__(self, "budget", budget)
        if self.distinct is not None:
            object.__setattr__(self, "distinct", _array("distinct", self.distinct, n))
        if self.flops is not None:
            object.__setattr__(self, "flops", _array("flops", self.flops, n))
        if isinstance(self.n_failed, bool) or not isinstance(self.n_failed, (int, np.integer)) or self.n_failed < 0:
            raise DataError(f"`n_failed` must be an int >= 0; got {self.n_failed!r}.")
        if self.bayes_risk is not None and not (math.isfinite(self.bayes_risk) and self.bayes_risk >= 0):
            raise DataError(f"`bayes_risk` must be a finite number >= 0 or None; got {self.bayes_risk!r}.")

    @property
    def n_runs(self) -> int:
        return self.data.n_points

    @property
    def compute(self) -> np.ndarray:
        return self.data.compute

    @classmethod
    def from_data(cls, data: ScalingData, **kw: Any) -> Runs:
        return cls(data.N, data.D, data.loss, source=data.source, **kw)

    @classmethod
    def from_csv(cls, path: str | Path, **kw: Any) -> Runs:
        """Runs from a CSV (see :func:`load_scaling_csv`); optional columns seed, budget, distinct, flops."""
        data = load_scaling_csv(path)
        with open(path, encoding="utf-8-sig", newline="") as f:
            rows = [r for r in csv.reader(f) if any(c.strip() for c in r)]
        header = [h.strip().lower() for h in rows[0]]
        extra: dict[str, Any] = {}
        for col in ("seed", "budget", "distinct", "flops"):
            if col in header and col not in kw:
                j = header.index(col)
                try:
                    extra[col] = [float(r[j]) for r in rows[1:]]
                except ValueError:
                    raise DataError(f"scaling CSV `{path}`: column `{col}` has a cell that is not a number.") from None
        return cls.from_data(data, **extra, **kw)

    def rows(self) -> list[dict[str, float]]:
        """One dict per run (N, D, C, loss, seed, budget[, distinct])."""
        out = []
        for i in range(self.n_runs):
            r = {"N": float(self.N[i]), "D": float(self.D[i]), "C": float(self.compute[i]),
                 "loss": float(self.loss[i]), "seed": int(self.seed[i]), "budget": float(self.budget[i])}  # fmt: skip
            if self.distinct is not None:
                r["distinct"] = float(self.distinct[i])
            if self.flops is not None:
                r["flops"] = float(self.flops[i])
            out.append(r)
        return out


@dataclass(frozen=True, eq=False)
class TrainFn:
    """A user's ``train_fn(config, seed) -> {"N", "D", "loss"[, "distinct"]}`` and the grid to run."""

    train_fn: Callable[[dict[str, Any], int], Mapping[str, Any]]
    configs: Sequence[dict[str, Any]]
    seeds: Sequence[int] = (0,)
    bayes_risk: float | None = None

    def __post_init__(self) -> None:
        if not callable(self.train_fn):
            raise ConfigError("`train_fn` must be callable as train_fn(config, seed).")
        if not self.configs or not self.seeds:
            raise ConfigError("`configs` and `seeds` must each hold at least one item.")

    def run(self) -> Runs:
        """Run every config x seed serially; failures are counted, never dropped silently."""
        cols: dict[str, list[float]] = {k: [] for k in ("N", "D", "loss", "seed", "budget", "distinct")}
        failed = 0
        has_budget = all("budget" in c for c in self.configs)
        for cfg in self.configs:
            for s in self.seeds:
                try:
                    out = self.train_fn(dict(cfg), int(s))
                    vals = [float(out[k]) for k in ("N", "D", "loss")]
                except Exception:  # a failing run is data: counted in n_failed
                    failed += 1
                    continue
                if not all(math.isfinite(v) and v > 0 for v in vals):
                    failed += 1
                    continue
                for k, v in zip(("N", "D", "loss"), vals):
                    cols[k].append(v)
                cols["seed"].append(int(s))
                cols["budget"].append(float(cfg["budget"]) if has_budget else float("nan"))
                cols["distinct"].append(float(out.get("distinct", float("nan"))))
        distinct = cols["distinct"] if cols["distinct"] and all(math.isfinite(v) for v in cols["distinct"]) else None
        budget = cols["budget"] if has_budget else None
        return Runs(cols["N"], cols["D"], cols["loss"], seed=cols["seed"], budget=budget, distinct=distinct,
                    n_failed=failed, bayes_risk=self.bayes_risk, source="train_fn")  # fmt: skip


class InProcessExecutor:
    """Runs sweep tasks one after another in this process (no pool, no global state changed)."""

    name = "in-process"
    workers = 1

    def map_unordered(self, task: str, specs: Sequence[dict[str, Any]]) -> Iterator[tuple[int, dict[str, Any]]]:
        fn = resolve(task)
        for i, spec in enumerate(specs):
            t0 = time.perf_counter()
            try:
                out = {"ok": True, "result": fn(spec)}
            except Exception as e:  # a failing run is data, recorded as failed
                out = {"ok": False, "error": f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=4)}"}
            yield i, out | {"wall_time_s": time.perf_counter() - t0}

    def close(self) -> None:
        pass


def sweep_seeds(seed: int, n: int) -> list[int]:
    return [derive_seed(seed, "scaling-run", i) for i in range(n)]


def runs_from_store(settings: Settings, store: Store, seeds: list[int]) -> Runs:
    """The finished runs of this design in the store (failed or unfinished ones counted)."""
    wanted = {config_hash(c) for c in design(settings)}
    rows, failed = [], 0
    for r in store.runs(sweep=SWEEP):
        if r.config_hash not in wanted or r.seed not in seeds:
            continue
        m = r.metrics or {}
        loss = m.get("test_loss")
        if r.status == "done" and loss is not None and math.isfinite(loss) and loss > 0:
            rows.append(m | {"seed": r.seed})
        else:
            failed += 1
    if len(rows) < MIN_POINTS_CHINCHILLA:
        raise DataError(
            f"only {len(rows)} sweep runs finished ({failed} failed); the fits need {MIN_POINTS_CHINCHILLA}."
        )
    have_distinct = all(r.get("distinct_examples") for r in rows)
    have_flops = all(r.get("C_exact_fwd_bwd") for r in rows)
    return Runs(
        [r["N"] for r in rows],
        [r["D"] for r in rows],
        [r["test_loss"] for r in rows],
        seed=[r["seed"] for r in rows],
        budget=[r["budget"] for r in rows],
        distinct=[r["distinct_examples"] for r in rows] if have_distinct else None,
        flops=[r["C_exact_fwd_bwd"] for r in rows] if have_flops else None,
        n_failed=failed,
        bayes_risk=settings.noise_std**2 if settings.task == "teacher_student" else None,
        source=f"iso-FLOP sweep ({settings.task}, {len(settings.budgets)} budgets, {settings.seeds} seeds)",
    )


_PROCESS_STORE: tuple[tempfile.TemporaryDirectory, Store] | None = None


def process_store() -> Store:
    """A temporary store shared by every call in this process that is given no store.

    Runs are pure functions of their config and seed, so a run already done here is reused
    (the sweep resumes) instead of retrained; the directory is removed when the process exits.
    """
    global _PROCESS_STORE
    if _PROCESS_STORE is None:
        tmp = tempfile.TemporaryDirectory(prefix="multilens-scaling-")
        store = Store(Path(tmp.name) / "results.sqlite")
        atexit.register(lambda: (store.close(), tmp.cleanup()))
        _PROCESS_STORE = (tmp, store)
    return _PROCESS_STORE[1]


def default_subject(settings: Settings, *, seed: int, runtime: Any = None) -> Runs:
    """Run (or resume) the bundled iso-FLOP sweep and return its table of finished runs.

    The sweep goes through ``runtime.executor`` (None: serially in this process) into
    ``runtime.store`` (None: a temporary store of this process, see :func:`process_store`).
    """
    executor = getattr(runtime, "executor", None)
    store = getattr(runtime, "store", None) or process_store()
    progress = getattr(runtime, "progress", None)
    seeds = sweep_seeds(seed, settings.seeds)
    rep = run_sweep(SWEEP, TASK, design(settings), seeds, store, executor or InProcessExecutor(), progress)
    runs = runs_from_store(settings, store, seeds)
    sweep = {
        "total": rep.total,
        "reused_done": rep.skipped_done,
        "executed_now": rep.executed,
        "failed_now": rep.failed,
    }
    return dataclasses.replace(runs, sweep=sweep)
