"""Stress tests of the protocol's decisions (C.20): distribution shift, hardware contention, budget contraction.

Each stress test is predeclared in the policy's ``[[stress]]`` tables: its kind, the expected outcome
in words, and the numbers its verdict uses, fixed before the run. ``multilens run --stress`` runs
them (the full profile runs them by default) after every phase, on the phases' hand-offs:

* ``shift``: the main model (the compute-optimal model of the allocation phase) is re-evaluated on
  a covariate-shifted test set of the shared family (target drawn from the family with density
  ratio w(x) = exp(beta x_0) / E[exp(beta x_0)], known exactly). Prediction: the importance-weighted
  source loss with the known ratio (the shift lens's estimator) covers the measured shifted loss
  (intervals overlap); decision: the release decisions this model's calibration and accuracy feed
  (ECE after temperature scaling <= the gate's threshold; accuracy drop <= ``max_accuracy_drop``) are
  re-evaluated on the shifted data and must not change.
* ``contention``: the scaling sweep's smallest runs are rerun while a CPU-bound competing process
  runs, and the distributed lens's timing part (which includes a throttled worker) is rerun under
  the same competitor. Expected: the runs' results are bit-identical (they do not depend on time)
  and the timing-based recommendation (the fastest worker count) does not change.
* ``budget``: the scaling fit redone on the sweep restricted to the budgets that fit in half of its
  compute. Expected: the compute-optimal N* at the target budget stays inside the full sweep's
  interval.

A stress test that cannot run (its hand-off is missing) is "not evaluated" with the reason, never a pass.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import time
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Iterator, Literal

import numpy as np

from multilens.config import from_dict
from multilens.errors import ConfigError
from multilens.seeding import derive_seed

StressKind = Literal["shift", "contention", "budget"]


@dataclass(frozen=True)
class StressRule:
    name: str
    kind: StressKind
    expected: str  # the predeclared expected outcome, in words
    description: str = ""
    # shift
    beta: float = 1.0  # strength of the covariate shift along x_0
    n_target: int = 2048
    max_accuracy_drop: float = 0.05
    ece_threshold: float = 0.05
    # contention
    n_runs: int = 4  # scaling runs rerun under contention
    competitors: int = 1  # CPU-bound competing processes
    # budget
    fraction: float = 0.5

    def __post_init__(self) -> None:
        if self.kind not in ("shift", "contention", "budget"):
            raise ConfigError(f"stress `{self.name}`: `kind` must be shift, contention or budget; got {self.kind!r}.")
        if not self.expected:
            raise ConfigError(f"stress `{self.name}`: state the `expected` outcome before the run.")
        if not 0 < self.fraction < 1:
            raise ConfigError(f"stress `{self.name}`: `fraction` must be in (0, 1); got {self.fraction}.")
        if self.n_runs < 1 or self.competitors < 1 or self.n_target < 64:
            raise ConfigError(f"stress `{self.name}`: n_runs, competitors >= 1 and n_target >= 64 are required.")


def stress_rules(tables: Any, source: str = "") -> tuple[StressRule, ...]:
    if not isinstance(tables, list):
        raise ConfigError(f"policy `{source}`: `stress` must be an array of tables ([[stress]]).")
    out = []
    for i, t in enumerate(tables):
        if not isinstance(t, dict) or "name" not in t:
            raise ConfigError(f"policy `{source}`: stress[{i}] needs a `name`.")
        out.append(from_dict(StressRule, t, where=f"stress[{i}]"))
    return tuple(out)


def _result(rule: StressRule, passed: bool | None, verdict: str, **data: Any) -> dict[str, Any]:
    return {
        "name": rule.name,
        "kind": rule.kind,
        "expected": rule.expected,
        "passed": passed,
        "verdict": verdict,
        "description": rule.description,
        **data,
    }


def _not_evaluated(rule: StressRule, why: str) -> dict[str, Any]:
    return _result(rule, None, f"not evaluated: {why}")


# ---- shift -------------------------------------------------------------------------------------


def _mean_ci(v: np.ndarray, w: np.ndarray | None = None) -> tuple[float, float, float]:
    """Mean (or self-normalised weighted mean) with a normal 95% interval (delta method for weights)."""
    v = np.asarray(v, np.float64)
    if w is None:
        m, se = float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v)))
    else:
        w = np.asarray(w, np.float64) / np.mean(w)
        m = float(np.mean(w * v))
        se = float(np.std(w * (v - m), ddof=1) / math.sqrt(len(v)))
    return m, m - 1.959964 * se, m + 1.959964 * se


def shift_stress(rule: StressRule, artifacts: Mapping[str, Any], seed: int) -> dict[str, Any]:
    path = artifacts.get("allocation.model_path")
    if not path:
        return _not_evaluated(rule, "no main model (the allocation phase did not run or failed)")
    import torch

    from multilens.calibration import ece, fit_temperature
    from multilens.data.family import FamilySpec
    from multilens.lenses.allocation import load_main_model

    model, spec = load_main_model(path)
    family = FamilySpec.from_dict(spec["family"])
    xs, ys = family.test()
    pool_x, pool_y = family.train(8 * rule.n_target, seed=derive_seed(seed, "stress-shift-pool"))
    # Target: the pool resampled with probability proportional to exp(beta x_0): density ratio known.
    logw_pool = rule.beta * pool_x[:, 0].double().numpy()
    p = np.exp(logw_pool - logw_pool.max())
    rng = np.random.default_rng(derive_seed(seed, "stress-shift-draw"))
    idx = rng.choice(len(p), size=rule.n_target, replace=False, p=p / p.sum())
    xt, yt = pool_x[idx], pool_y[idx]
    with torch.no_grad():
        zs = model(xs.to(next(model.parameters()).dtype)).double()
        zt = model(xt.to(next(model.parameters()).dtype)).double()
        xv, yv = family.val()
        zv = model(xv.to(next(model.parameters()).dtype)).double()
    ls = torch.nn.functional.cross_entropy(zs, ys, reduction="none").numpy()
    lt = torch.nn.functional.cross_entropy(zt, yt, reduction="none").numpy()
    w = np.exp(rule.beta * xs[:, 0].double().numpy())  # unnormalised ratio on the source test set
    pred = _mean_ci(ls, w)
    meas = _mean_ci(lt)
    overlap = pred[1] <= meas[2] and meas[1] <= pred[2]
    acc_s = float((zs.argmax(1) == ys).double().mean())
    acc_t = float((zt.argmax(1) == yt).double().mean())
    temp = fit_temperature(yv.numpy(), zv.numpy())
    t = float(temp.temperature)
    ece_s = ece(ys.numpy(), logits=zs.numpy() / t, seed=derive_seed(seed, "stress-ece-s"))
    ece_t = ece(yt.numpy(), logits=zt.numpy() / t, seed=derive_seed(seed, "stress-ece-t"))
    gate_s = ece_s.ci_high <= rule.ece_threshold
    gate_t = ece_t.ci_high <= rule.ece_threshold
    drop = acc_s - acc_t
    unchanged = gate_s == gate_t and drop <= rule.max_accuracy_drop
    ok = bool(overlap and unchanged)
    verdict = (
        f"IW-predicted shifted loss {pred[0]:.4f} [{pred[1]:.4f}, {pred[2]:.4f}] vs measured {meas[0]:.4f} "
        f"[{meas[1]:.4f}, {meas[2]:.4f}] ({'overlap' if overlap else 'do not overlap'}); accuracy {acc_s:.3f} -> "
        f"{acc_t:.3f} (drop {drop:.3f}, allowed {rule.max_accuracy_drop}); calibration gate (ECE upper end <= "
        f"{rule.ece_threshold}) {'passes' if gate_s else 'fails'} on source, {'passes' if gate_t else 'fails'} "
        f"under shift: decision {'unchanged' if gate_s == gate_t else 'CHANGES'}"
    )
    return _result(
        rule,
        ok,
        verdict,
        measurements={
            "iw_predicted_loss": list(pred),
            "shifted_loss": list(meas),
            "source_accuracy": acc_s,
            "shifted_accuracy": acc_t,
            "temperature": t,
            "ece_source": [ece_s.value, ece_s.ci_low, ece_s.ci_high],
            "ece_shifted": [ece_t.value, ece_t.ci_low, ece_t.ci_high],
            "beta": rule.beta,
            "n_target": rule.n_target,
        },
    )


# ---- contention --------------------------------------------------------------------------------


def _burn(stop: Any) -> None:  # pragma: no cover - runs in a child process
    x = 0.0
    while not stop.is_set():
        for i in range(100_000):
            x += i * 1e-9


@contextmanager
def cpu_competitor(n: int = 1) -> Iterator[None]:
    """n CPU-bound competing processes for the duration of the block."""
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    procs = [ctx.Process(target=_burn, args=(stop,), daemon=True) for _ in range(n)]
    for p in procs:
        p.start()
    try:
        time.sleep(0.5)  # let them reach their loop
        yield
    finally:
        stop.set()
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()


def contention_stress(
    rule: StressRule, summary_metrics: Mapping[str, Any], store: Any, cfg: Any, seed: int
) -> dict[str, Any]:
    from multilens.experiments.executors import execute_task

    runs = [r for r in store.runs(status="done") if r.sweep == "scaling"] if store is not None else []
    if not runs:
        return _not_evaluated(rule, "no finished scaling runs in the store")
    runs = sorted(runs, key=lambda r: (r.metrics or {}).get("budget", 0.0))[: rule.n_runs]
    task = store.get_meta("task:scaling")
    same, slow = [], []
    with cpu_competitor(rule.competitors):
        for r in runs:
            out = execute_task(task, dict(r.config, seed=r.seed))
            if not out["ok"]:
                return _result(rule, False, f"a scaling run failed under contention: {out['error'].splitlines()[0]}")
            a = {k: v for k, v in out["result"]["metrics"].items() if "wall_time" not in k}
            b = {k: v for k, v in (r.metrics or {}).items() if "wall_time" not in k}
            same.append(a == b)
            t0 = (r.metrics or {}).get("train_wall_time_s")
            if t0:
                slow.append(out["result"]["metrics"]["train_wall_time_s"] / t0)
        best_before = summary_metrics.get("distributed.timing_best_workers")
        best_after, why = None, ""
        if best_before is not None and "distributed" in cfg.phases:
            try:
                best_after = _distributed_timing_best(cfg, seed)
            except Exception as e:  # the verdict says it could not be measured
                why = f"{type(e).__name__}: {e}"
    identical = all(same)
    rec_same = None if best_after is None else best_after == best_before
    ok = identical and rec_same is not False
    parts = [
        f"{sum(same)}/{len(same)} scaling runs bit-identical under {rule.competitors} competing process(es)",
        f"wall time x{np.median(slow):.2f} (median)" if slow else "no stored wall times to compare",
    ]
    if rec_same is None:
        parts.append("timing recommendation not re-measured: " + (why or "no distributed phase in this run"))
    else:
        parts.append(
            f"fastest worker count {best_before:g} -> {best_after:g} under contention: "
            + ("unchanged" if rec_same else "CHANGES")
        )
    return _result(
        rule,
        ok if rec_same is not None else (identical and None),
        "; ".join(parts),
        measurements={
            "runs_identical": int(sum(same)),
            "runs": len(same),
            "slowdown_median": float(np.median(slow)) if slow else None,
            "best_workers_before": best_before,
            "best_workers_under_contention": best_after,
        },
    )


def _distributed_timing_best(cfg: Any, seed: int) -> float:
    """The distributed lens's timing part alone (its straggler included), rerun now."""
    import dataclasses

    from multilens.lenses.contract import run_lens
    from multilens.lenses.registry import get_lens

    entry = get_lens("distributed")
    s = cfg.lens_config("distributed")
    off = {
        f.name: None
        for f in dataclasses.fields(s)
        if f.name != "timing" and dataclasses.is_dataclass(getattr(s, f.name))
    }
    res = run_lens(entry, replace(s, **off), seed)
    v = res.metrics.get("distributed.timing_best_workers")
    if v is None:
        raise RuntimeError("the timing part did not report a fastest worker count")
    return float(v)


# ---- budget contraction -----------------------------------------------------------------------


def budget_stress(rule: StressRule, artifacts: Mapping[str, Any], cfg: Any, seed: int) -> dict[str, Any]:
    rows, alloc = artifacts.get("scaling.runs"), artifacts.get("scaling.allocation")
    if not rows or not alloc:
        return _not_evaluated(rule, "no scaling runs or allocation hand-off (the scaling phase did not run)")
    if not alloc.get("ok", True):
        return _not_evaluated(rule, f"the handed-on allocation is not usable: {alloc.get('note')}")
    from multilens.lenses.contract import part_seed
    from multilens.lenses.scaling import Runs, contracted_runs
    from multilens.protocol.perturb import allocation_for

    small = contracted_runs(Runs.from_rows(rows), fraction=rule.fraction)
    settings = cfg.lens_config("scaling")
    method = str(alloc.get("method", "approach3"))
    ratio = artifacts.get("double_descent.interpolation_ratio")
    try:
        new = allocation_for(method, small, settings, part_seed(cfg.seed, "scaling", "lnd_fit"), alloc["budget"], ratio)
    except Exception as e:
        return _result(rule, False, f"the contracted sweep could not be fitted: {type(e).__name__}: {e}")
    if not new.get("ok", True):
        return _result(rule, False, f"the contracted sweep gives no {method} allocation: {new.get('note')}")
    lo, hi = alloc["n_star_ci"]
    inside = lo <= new["n_star"] <= hi
    kept = sorted({float(b) for b in small.budget}) if small.budget is not None else []
    verdict = (
        f"{method} N* at C = {alloc['budget']:.3g} from the sweep cut to {len(kept)} budget(s) "
        f"(<= {rule.fraction:g} of its compute): {new['n_star']:.4g} vs the full sweep's {alloc['n_star']:.4g} "
        f"[{lo:.4g}, {hi:.4g}]: " + ("inside" if inside else "OUTSIDE")
    )
    return _result(
        rule,
        bool(inside),
        verdict,
        measurements={
            "n_star_full": alloc["n_star"],
            "n_star_ci": [lo, hi],
            "n_star_contracted": new["n_star"],
            "n_star_contracted_ci": new.get("n_star_ci"),
            "budgets_kept": kept,
        },  # fmt: skip
    )


def run_stress(
    policy: Any, summary: Mapping[str, Any], artifacts: Mapping[str, Any], store: Any, cfg: Any
) -> list[dict[str, Any]]:
    """Every predeclared stress test of the policy, each with its verdict (never raises)."""
    out = []
    for rule in policy.stress:
        seed = derive_seed(cfg.seed, "stress", rule.name)
        t0 = time.perf_counter()
        try:
            if rule.kind == "shift":
                r = shift_stress(rule, artifacts, seed)
            elif rule.kind == "contention":
                r = contention_stress(rule, summary.get("metrics", {}), store, cfg, seed)
            else:
                r = budget_stress(rule, artifacts, cfg, seed)
        except Exception as e:  # a stress test that crashes is a failed stress test, with the error
            r = _result(rule, False, f"failed to run: {type(e).__name__}: {e}")
        r["wall_time_s"] = time.perf_counter() - t0
        out.append(r)
    return out
