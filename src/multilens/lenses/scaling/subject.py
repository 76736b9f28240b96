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
import functools
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
from multilens.data.family import FamilySpec
from multilens.errors import ConfigError, DataError
from multilens.experiments.executors import resolve
from multilens.experiments.store import Store
from multilens.experiments.sweep import run_sweep
from multilens.lenses.scaling.data import MIN_POINTS_CHINCHILLA, ScalingData, load_scaling_csv
from multilens.lenses.scaling.settings import Settings
from multilens.lenses.scaling.study import TASK, design, run_config, run_cost
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
    # Optional per-run columns (the bundled sweep records them; a user's table may give them).
    width: Any = None  # hidden width of each run's model
    lr: Any = None  # learning rate each run trained with
    train_loss: Any = None  # loss on the run's own training examples (for the generalization gap)
    split_offset: Any = None  # teacher's loss on the test split - on the run's training sample (known teachers)
    wall_time: Any = None  # training wall time of each run (s), monitored as a confounder
    n_diverged: int = 0  # runs of the design whose training diverged (counted in n_failed too)
    bayes_risk_ci: tuple[float, float] | None = None  # interval of a Monte Carlo Bayes risk
    # What the bundled sweep adds beside the main table (None for a user's table).
    untuned: Runs | None = None  # the same grid at the single settings lr (the lr_tuning part's comparison)
    lr_tuning: tuple[dict, ...] | None = None  # one row per (width, lr factor) of the tuning runs
    variants: dict | None = None  # invariance part: {"main"|"sgd"|"large_batch": Runs} on a reduced grid
    recipe: dict | None = None  # optimizer, batch_size, schedule, depth, activation, d_in, d_out, lr
    family: dict | None = None  # FamilySpec.to_dict() of the data family the runs were trained on
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
        for col in ("width", "lr", "wall_time"):
            if getattr(self, col) is not None:
                object.__setattr__(self, col, _array(col, getattr(self, col), n))
        for col in ("train_loss", "split_offset"):
            if getattr(self, col) is not None:
                tl = np.asarray(getattr(self, col), dtype=np.float64).ravel()
                if tl.size != n:
                    raise DataError(f"`{col}` has {tl.size} values but `loss` has {n}; give one value per run.")
                tl.setflags(write=False)
                object.__setattr__(self, col, tl)  # NaN allowed: not recorded for that run

    def subset(self, mask: Any) -> Runs:
        """The runs where ``mask`` is True (the per-run columns restricted; the sweep's extras dropped)."""
        m = np.asarray(mask, dtype=bool)
        if m.shape != (self.n_runs,):
            raise DataError(f"`mask` must have one bool per run ({self.n_runs}); got shape {m.shape}.")
        cols = {}
        for k in ("seed", "budget", "distinct", "flops", "width", "lr", "train_loss", "split_offset", "wall_time"):
            v = getattr(self, k)
            cols[k] = None if v is None else np.asarray(v)[m]
        return Runs(self.N[m], self.D[m], self.loss[m], n_failed=self.n_failed, bayes_risk=self.bayes_risk,
                    source=self.source, n_diverged=self.n_diverged, bayes_risk_ci=self.bayes_risk_ci,
                    recipe=self.recipe, family=self.family, **cols)  # fmt: skip

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
            for k in ("width", "lr", "train_loss"):
                v = getattr(self, k)
                if v is not None and math.isfinite(v[i]):
                    r[k] = int(v[i]) if k == "width" else float(v[i])
            out.append(r)
        return out

    def handoff_rows(self) -> list[dict[str, Any]]:
        """The finished runs as the ``scaling.runs`` hand-off: N, D, loss, train_loss, seed, budget, width, lr."""
        out = []
        for r in self.rows():
            keep = {k: r.get(k) for k in ("N", "D", "loss", "train_loss", "seed", "budget", "width", "lr")}
            out.append(keep)
        return out

    @classmethod
    def from_rows(cls, rows: Sequence[Mapping[str, Any]], **kw: Any) -> Runs:
        """Runs from dicts with N, D, loss[, seed, budget, width, lr, train_loss] (e.g. the ``scaling.runs``)."""
        if not rows:
            raise DataError("`rows` is empty; give one dict per finished run.")
        cols: dict[str, Any] = {}
        for k in ("seed", "budget", "width", "lr", "train_loss"):
            vals = [r.get(k) for r in rows]
            if all(v is not None for v in vals):
                cols[k] = [float(v) for v in vals]
        return cls([r["N"] for r in rows], [r["D"] for r in rows], [r["loss"] for r in rows], **(cols | kw))


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

    def map_unordered(
        self, task: str, specs: Sequence[dict[str, Any]], costs: Sequence[float] | None = None
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        fn = resolve(task)  # one after another: ``costs`` changes nothing here
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


def bayes_risk_of(settings: Settings) -> tuple[float | None, tuple[float, float] | None]:
    """The known irreducible loss of the sweep's task and its interval (Monte Carlo for the family)."""
    if settings.task == "family":
        m, lo, hi = _family_bayes()
        return m, (lo, hi)
    if settings.task == "teacher_student":
        return settings.noise_std**2, None
    return None, None


@functools.lru_cache(maxsize=4)
def _family_bayes() -> tuple[float, float, float]:
    return tuple(FamilySpec().bayes_risk()["ce"])  # type: ignore[return-value]


def recipe_of(settings: Settings) -> dict[str, Any]:
    """The training recipe of the sweep's MLPs (what the hand-off allocation trains)."""
    d_in, d_out = settings.data_shape
    return {"optimizer": settings.optimizer, "batch_size": settings.batch_size, "schedule": settings.schedule,
            "depth": settings.depth, "activation": "relu", "d_in": d_in, "d_out": d_out, "lr": settings.lr,
            "epochs": 1, "loss": "mse" if settings.task == "teacher_student" else "ce"}  # fmt: skip


def runs_from_store(
    settings: Settings, store: Store, seeds: list[int], configs: list[dict[str, Any]] | None = None
) -> Runs:
    """The finished runs of ``configs`` (default: the untuned design) x ``seeds`` in the store.

    Failed, diverged or unfinished runs are counted in ``n_failed`` (diverged ones also in ``n_diverged``).
    """
    wanted = {config_hash(c) for c in (design(settings) if configs is None else configs)}
    rows, failed, diverged = [], 0, 0
    for r in store.runs(sweep=SWEEP):
        if r.config_hash not in wanted or r.seed not in seeds:
            continue
        m = r.metrics or {}
        loss = m.get("test_loss")
        if r.status == "done" and loss is not None and math.isfinite(loss) and loss > 0:
            rows.append(m | {"seed": r.seed, "lr": m.get("lr", r.config["train"]["lr"])})
        else:
            failed += 1
            diverged += int(bool(m.get("diverged")))
    if len(rows) < MIN_POINTS_CHINCHILLA:
        raise DataError(
            f"only {len(rows)} sweep runs finished ({failed} failed); the fits need {MIN_POINTS_CHINCHILLA}."
        )
    rows.sort(key=lambda r: (r["budget"], r["width"], r["seed"]))  # a fixed order, whatever the store's
    have_distinct = all(r.get("distinct_examples") for r in rows)
    have_flops = all(r.get("C_exact_fwd_bwd") for r in rows)
    bayes, bayes_ci = bayes_risk_of(settings)
    train_loss = [r.get("train_loss") for r in rows]
    return Runs(
        [r["N"] for r in rows],
        [r["D"] for r in rows],
        [r["test_loss"] for r in rows],
        seed=[r["seed"] for r in rows],
        budget=[r["budget"] for r in rows],
        distinct=[r["distinct_examples"] for r in rows] if have_distinct else None,
        flops=[r["C_exact_fwd_bwd"] for r in rows] if have_flops else None,
        n_failed=failed,
        bayes_risk=bayes,
        bayes_risk_ci=bayes_ci,
        source=f"iso-FLOP sweep ({settings.task}, {len(settings.budgets)} budgets, {len(seeds)} seeds)",
        width=[r["width"] for r in rows],
        lr=[r["lr"] for r in rows],
        train_loss=[float("nan") if v is None else v for v in train_loss],
        split_offset=[float("nan") if r.get("split_offset") is None else r["split_offset"] for r in rows],
        wall_time=[max(r.get("train_wall_time_s") or 1e-9, 1e-9) for r in rows],
        n_diverged=diverged,
        recipe=recipe_of(settings),
        family=FamilySpec().to_dict() if settings.task == "family" else None,
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


def tuning_design(settings: Settings) -> list[dict[str, Any]]:
    """Each width at its smallest budget of the grid, at lr x every factor of ``lr_factors``."""
    out = []
    for w in settings.widths:
        for b in settings.budgets:
            if run_config(settings, b, w) is not None:
                out += [run_config(settings, b, w, lr=settings.lr * f) for f in settings.lr_factors]
                break
    return out  # type: ignore[return-value]


def tune_lrs(
    settings: Settings, store: Store, executor: Any, seeds: list[int], progress: Any = None
) -> tuple[dict[int, float], tuple[dict[str, Any], ...]]:
    """Per-width learning rates chosen by the lowest mean VALIDATION loss over ``seeds`` (never the test split).

    A diverged or failed tuning run counts as an infinite validation loss; ties go to the factor closest to 1.
    """
    configs = tuning_design(settings)
    run_sweep(SWEEP, TASK, configs, seeds, store, executor, progress, run_cost)
    wanted = {config_hash(c): c for c in configs}
    vals: dict[tuple[int, float], list[float]] = {(c["width"], c["train"]["lr"]): [] for c in configs}
    for r in store.runs(sweep=SWEEP):
        c = wanted.get(r.config_hash)
        if c is None or r.seed not in seeds:
            continue
        v = (r.metrics or {}).get("val_loss") if r.status == "done" else None
        vals[(c["width"], c["train"]["lr"])].append(float(v) if v is not None and math.isfinite(v) else math.inf)
    rows, lrs = [], {}
    for c in configs:
        w, lr = c["width"], c["train"]["lr"]
        v = vals[(w, lr)]
        mean = float(np.mean(v)) if v and all(math.isfinite(x) for x in v) else math.inf
        rows.append({"width": w, "budget": c["budget"], "N": c["N"], "D": c["D"], "lr": lr,
                     "factor": lr / settings.lr, "val_loss": mean if math.isfinite(mean) else None,
                     "n_seeds": len(v), "chosen": False})  # fmt: skip
    for w in {r["width"] for r in rows}:
        mine = [r for r in rows if r["width"] == w]
        finite = [r for r in mine if r["val_loss"] is not None]
        pick = (min(finite, key=lambda r: (r["val_loss"], abs(math.log(r["factor"])))) if finite
                else min(mine, key=lambda r: abs(math.log(r["factor"]))))  # fmt: skip
        pick["chosen"] = True
        lrs[w] = pick["lr"]
    return lrs, tuple(rows)


def variant_designs(settings: Settings, lrs: dict[int, float] | None) -> dict[str, list[dict[str, Any]]]:
    """The invariance part's reduced grid (the smallest budgets) for the main recipe, SGD and a larger batch."""
    ps = settings.invariance
    assert ps is not None
    out: dict[str, list[dict[str, Any]]] = {"main": [], "sgd": [], "large_batch": []}
    for b in settings.budgets[: ps.n_budgets]:
        for w in settings.widths:
            lr = None if lrs is None else lrs.get(w)
            main = run_config(settings, b, w, lr=lr)
            if main is None:
                continue
            out["main"].append(main)
            sgd = run_config(settings, b, w, lr=ps.sgd_lr, optimizer="sgd")
            sgd["train"]["momentum"] = ps.sgd_momentum  # type: ignore[index]
            out["sgd"].append(sgd)  # type: ignore[arg-type]
            out["large_batch"].append(
                run_config(settings, b, w, lr=lr, batch_size=settings.batch_size * ps.batch_factor)
            )  # type: ignore[arg-type]
    return out


def default_subject(settings: Settings, *, seed: int, runtime: Any = None) -> Runs:
    """Run (or resume) the bundled iso-FLOP sweep and return its table of finished runs.

    Steps, all through ``runtime.executor`` (None: serially in this process) into ``runtime.store``
    (None: a temporary store of this process, see :func:`process_store`), so an interrupted sweep
    resumes: (1) per-width lr tuning at each width's smallest budget (when ``lr_factors`` has more
    than one factor and the task has a validation split); (2) the sweep at the tuned lrs; (3) when
    the ``lr_tuning`` part is on, the same grid at the single ``lr`` (the untuned comparison); (4)
    when the ``invariance`` part is on, its reduced grid with SGD and with a larger batch.
    """
    executor = getattr(runtime, "executor", None) or InProcessExecutor()
    store = getattr(runtime, "store", None) or process_store()
    progress = getattr(runtime, "progress", None)
    seeds = sweep_seeds(seed, settings.seeds)
    lrs, tuning = None, None
    if len(settings.lr_factors) > 1 and settings.task != "digits":
        lrs, tuning = tune_lrs(settings, store, executor, seeds[: settings.tune_seeds], progress)
    main = design(settings, lrs)
    rep = run_sweep(SWEEP, TASK, main, seeds, store, executor, progress, run_cost)
    runs = runs_from_store(settings, store, seeds, main)
    untuned = None
    if settings.lr_tuning is not None and lrs is not None:
        useeds = seeds[: settings.lr_tuning.untuned_seeds]
        run_sweep(SWEEP, TASK, design(settings), useeds, store, executor, progress, run_cost)
        untuned = runs_from_store(settings, store, useeds)
    variants = None
    if settings.invariance is not None:
        vseeds = seeds[: settings.invariance.seeds]
        variants = {}
        for name, configs in variant_designs(settings, lrs).items():
            run_sweep(SWEEP, TASK, configs, vseeds, store, executor, progress, run_cost)
            try:
                variants[name] = runs_from_store(settings, store, vseeds, configs)
            except DataError as e:  # too few finished runs: the invariance part says so
                variants[name] = str(e)
    sweep = {
        "total": rep.total,
        "reused_done": rep.skipped_done,
        "executed_now": rep.executed,
        "failed_now": rep.failed,
    }
    return dataclasses.replace(runs, sweep=sweep, untuned=untuned, lr_tuning=tuning, variants=variants)
