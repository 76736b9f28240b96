"""Sweep throughput: 1 vs 2 local workers (parallel efficiency) and Ray vs the local pool, in one run.

Runs the same slice of the scaling sweep (a fixed set of run configs x seeds) through each executor
into a fresh store each time. Each executor is started once and warmed (its workers import torch,
multilens and the task module; the start-up is timed on its own), then serves ``--reps`` sweeps, as
an executor does for the phases of a protocol. The repetitions of the two local pools are
interleaved (x1, x2, x1, x2, ...) so a change in the machine's load hits both; Ray (whose own
processes use CPU while it is up) is measured after them, and the 2-worker pool once more after it.

Reported: per executor the start-up time and the median sweep wall time; the parallel efficiency
T(1) / (2 T(2)) of the warm sweeps (medians) and, as a user running one cold sweep sees it, with
start-up included; the ratio Ray / local pool at 2 workers (warm medians); whether every executor
gave bit-identical losses; the load average around the run (the machine may be shared). Also the
fraction of worker-slot time spent inside runs, sum(run wall) / (workers * sweep wall): the
executor's own overhead (start of tasks, pickling, waiting on the parent, imbalance at the tail).
With Linux autogroup scheduling on a busy machine, all processes of one session share one
session's CPU share, so two workers cannot get more CPU than one; then T(1)/(2 T(2)) measures the
machine's load, not the executor, and the slot utilisation is the number that does. The same
ratio for a pure CPU loop in two processes (no executor, no IPC), measured before and after the
local sweeps, is the ceiling the machine allows at that moment. Results go
to benchmarks/results/sweep.json (atomic write). Usage:

    .venv/bin/python benchmarks/bench_sweep.py [--runs 62] [--reps 5] [--no-ray] [--no-cost]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from multilens.experiments.executors import LocalExecutor, RayExecutor
from multilens.experiments.store import Store
from multilens.experiments.sweep import run_sweep
from multilens.io import atomic_write_json
from multilens.lenses.scaling.study import TASK, ScalingConfig, design, run_cost

PARENT_CPU: dict[str, list[float]] = {}
NO_COST = False  # --no-cost: submit in the sweep's order (strided chunks), as before the cost-aware scheduling


def time_sweep(executor, configs, seeds, name: str = "") -> tuple[float, float, dict]:
    """Sweep wall time, the summed wall time of the runs inside the workers, and the losses (the parent's
    CPU time per sweep goes to PARENT_CPU[name])."""
    with tempfile.TemporaryDirectory() as d, Store(Path(d) / "r.sqlite") as store:
        t0, c0 = time.perf_counter(), time.process_time()
        rep = run_sweep("bench", TASK, configs, seeds, store, executor, cost=None if NO_COST else run_cost)
        wall = time.perf_counter() - t0
        PARENT_CPU.setdefault(name, []).append(time.process_time() - c0)
        done = store.runs(status="done")
        metrics = {(r.config_hash, r.seed): r.metrics["test_loss"] for r in done}
        busy = sum(r.wall_time_s or 0.0 for r in done)
    assert rep.failed == 0, "a benchmark run failed"
    return wall, busy, metrics


def _autogroup() -> bool | None:
    try:
        return Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return None


def _spin(n: int) -> float:
    t0 = time.perf_counter()
    x = 0
    for i in range(n):
        x += i * i % 7
    return time.perf_counter() - t0


def machine_ceiling(reps: int, n: int = 6_000_000) -> list[float]:
    """T(1)/(2 T(2)) of a pure CPU loop (no executor, no IPC): what this machine allows right now."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    out = []
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        list(pool.map(_spin, [1000, 1000]))  # start both workers
        for _ in range(reps):
            t0 = time.perf_counter()
            pool.submit(_spin, 2 * n).result()
            t1 = time.perf_counter() - t0
            t0 = time.perf_counter()
            list(pool.map(_spin, [n, n]))
            t2 = time.perf_counter() - t0
            out.append(t1 / (2 * t2))
    return out


def start(name: str, configs, seeds):
    """Start and warm an executor; return it and its start-up wall time."""
    t0 = time.perf_counter()
    if name == "ray x2":
        ex = RayExecutor(workers=2)
        # Ray starts its workers on the first tasks: one run per worker warms them.
        list(ex.map_unordered(TASK, [dict(configs[0], seed=seeds[0]), dict(configs[1], seed=seeds[0])]))
    else:
        ex = LocalExecutor(workers=int(name[-1]))
        ex.warm(TASK)
    return ex, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=62)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--no-cost", action="store_true", help="no run-time estimates: strided chunks in sweep order")
    args = ap.parse_args()
    global NO_COST
    NO_COST = args.no_cost
    cfg = ScalingConfig.for_profile("quick")
    configs = [c for c in design(cfg) if c["budget"] <= 1e8][: args.runs // 2]
    seeds = [0, 1]
    names = ["local x1", "local x2"] + ([] if args.no_ray else ["ray x2"])
    load_before = os.getloadavg()
    executors: dict = {}
    startup: dict[str, float] = {}
    walls: dict[str, list[float]] = {n: [] for n in names}
    losses: dict[str, dict] = {}
    util = {n: [] for n in names}
    run_s: dict[str, list[float]] = {n: [] for n in names}

    def measure(group: list[str]) -> None:
        try:
            for n in group:
                executors[n], startup[n] = start(n, configs, seeds)
                print(f"{n:9s} start-up {startup[n]:5.1f} s", flush=True)
            for r in range(args.reps):
                for n in group:
                    wall, busy, m = time_sweep(executors[n], configs, seeds, n)
                    run_s[n].append(busy)
                    walls[n].append(wall)
                    util[n].append(busy / (executors[n].workers * wall))
                    if n in losses and losses[n] != m:
                        raise SystemExit(f"{n}: the same runs gave different losses in two sweeps")
                    losses[n] = m
                    print(f"rep {r} {n:9s} {wall:6.2f} s  {len(m) / wall:5.2f} runs/s  slots busy {util[n][-1]:.2f}",
                          flush=True)  # fmt: skip
        finally:
            for n in group:
                if n in executors:
                    executors.pop(n).close()

    # Ray's own processes (GCS, raylet, idle workers) use CPU while it is up: the two local pools
    # are measured (interleaved) without Ray running, then Ray, then the 2-worker pool once more.
    ceiling_before = machine_ceiling(args.reps)
    measure(["local x1", "local x2"])
    ceiling_after = machine_ceiling(args.reps)
    if "ray x2" in names:
        measure(["ray x2"])
        local_again = LocalExecutor(workers=2)
        try:
            local_again.warm(TASK)
            for _ in range(args.reps):
                walls["local x2 after ray"] = walls.get("local x2 after ray", []) + [
                    time_sweep(local_again, configs, seeds)[0]
                ]
        finally:
            local_again.close()
    load_after = os.getloadavg()
    med = {n: statistics.median(walls[n]) for n in names}
    results = {
        n: {"startup_s": startup[n], "sweep_wall_s": walls[n], "median_sweep_s": med[n],
            "slot_utilisation": util[n], "median_slot_utilisation": statistics.median(util[n]),
            "summed_run_s": run_s[n], "parent_cpu_s": PARENT_CPU.get(n, []),
            "runs": len(losses[n]), "runs_per_s": len(losses[n]) / med[n]}
        for n in names
    }  # fmt: skip
    same = all(losses[n] == losses["local x1"] for n in names)
    eff_warm = med["local x1"] / (2 * med["local x2"])
    eff_cold = (startup["local x1"] + walls["local x1"][0]) / (2 * (startup["local x2"] + walls["local x2"][0]))
    per_rep = [a / (2 * b) for a, b in zip(walls["local x1"], walls["local x2"], strict=True)]
    # eff = T1 / (2 T2) = [sum of run times, 1 worker / sum of run times, 2 workers] x [util(2) / util(1)]:
    # how much slower each run gets when two run at once (the machine) times the executor's own overhead.
    run_ratio = statistics.median(run_s["local x1"]) / statistics.median(run_s["local x2"])
    util_ratio = results["local x2"]["median_slot_utilisation"] / results["local x1"]["median_slot_utilisation"]
    out = {
        "benchmark": "sweep",
        "cost_aware_scheduling": not NO_COST,
        "decomposition": {
            "run_time_ratio_1_vs_2_workers": run_ratio,
            "slot_utilisation_ratio": util_ratio,
            "product": run_ratio * util_ratio,
        },  # fmt: skip
        "n_runs": len(configs) * len(seeds),
        "reps": args.reps,
        "executors": results,
        "parallel_efficiency_2_vs_1": eff_warm,
        "parallel_efficiency_per_rep": per_rep,
        "parallel_efficiency_cold_first_sweep": eff_cold,
        "machine_ceiling_cpu_loop": ceiling_before + ceiling_after,
        "parallel_efficiency_over_ceiling": eff_warm / statistics.median(ceiling_before + ceiling_after),
        "identical_losses": same,
        "autogroup_scheduling": _autogroup(),
        "loadavg_1_5_15_before": list(load_before),
        "loadavg_1_5_15_after": list(load_after),
        "cpu_count": os.cpu_count(),
    }
    print(f"parallel efficiency (2 workers vs 1, warm pools, median of {args.reps}): {eff_warm:.2f}  per rep: "
          + ", ".join(f"{e:.2f}" for e in per_rep))  # fmt: skip
    ceil = statistics.median(ceiling_before + ceiling_after)
    reps_txt = ", ".join(f"{c:.2f}" for c in ceiling_before + ceiling_after)
    print(f"the machine right now: a pure CPU loop in 2 processes vs 1 reaches {ceil:.2f} (median of {reps_txt});"
          f" sweep efficiency / that: {eff_warm / ceil:.2f}")  # fmt: skip
    print(f"parallel efficiency of one cold sweep (start-up included): {eff_cold:.2f}")
    print(
        f"decomposition: summed run time 1 worker / 2 workers {run_ratio:.3f} (the machine: each run is slower when"
        f" two run at once) x slot utilisation 2 / 1 {util_ratio:.3f} (the executor) = {run_ratio * util_ratio:.3f}"
    )
    for n in names:
        pc = PARENT_CPU.get(n, [])
        if pc:
            print(f"{n:9s} parent CPU per sweep (median): {statistics.median(pc):.2f} s"
                  f" = {statistics.median(pc) / med[n]:.0%} of a core over the sweep")  # fmt: skip
    if "ray x2" in med:
        after = statistics.median(walls["local x2 after ray"])
        out["local_x2_after_ray_sweep_wall_s"] = walls["local x2 after ray"]
        # Ray against the local pool measured right before and right after it (load drifts).
        out["ray_over_local_2"] = med["ray x2"] / statistics.median([med["local x2"], after])
        print(f"Ray / local pool wall-time ratio at 2 workers (warm, median): {out['ray_over_local_2']:.2f}")
    print(f"identical losses across executors and repetitions: {same}")
    for n in names:
        print(f"{n:9s} worker slots busy running tasks (median): {results[n]['median_slot_utilisation']:.2f}")
    print(f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f} on {os.cpu_count()} cores")
    atomic_write_json(Path(__file__).parent / "results" / "sweep.json", out)


if __name__ == "__main__":
    main()
