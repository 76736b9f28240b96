"""Sweep throughput: 1 vs 2 local workers (parallel efficiency) and Ray vs the local pool.

Runs the same slice of the scaling sweep (a fixed set of run configs x seeds) through each
executor into a fresh store, and reports wall time, runs/s, the parallel efficiency
T(1) / (2 * T(2)), and the ratio Ray / local at 2 workers. Pool start-up is included, as a user
sees it. Results go to benchmarks/results/sweep.json (atomic write). Usage:

    .venv/bin/python benchmarks/bench_sweep.py [--runs 24]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from multilens.experiments.executors import LocalExecutor, RayExecutor
from multilens.experiments.store import Store
from multilens.experiments.sweep import run_sweep
from multilens.io import atomic_write_json
from multilens.lenses.scaling.study import TASK, ScalingConfig, design


def time_sweep(executor, configs, seeds) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as d, Store(Path(d) / "r.sqlite") as store:
        t0 = time.perf_counter()
        rep = run_sweep("bench", TASK, configs, seeds, store, executor)
        wall = time.perf_counter() - t0
        metrics = {(r.config_hash, r.seed): r.metrics["test_loss"] for r in store.runs(status="done")}
    assert rep.failed == 0
    return wall, metrics


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=24)
    args = ap.parse_args()
    cfg = ScalingConfig.for_profile("quick")
    configs = [c for c in design(cfg) if c["budget"] <= 1e8][: args.runs // 2]
    seeds = [0, 1]
    results = {}
    losses = {}
    for name, make in (
        ("local x1", lambda: LocalExecutor(workers=1)),
        ("local x2", lambda: LocalExecutor(workers=2)),
        ("ray x2", lambda: RayExecutor(workers=2)),
    ):
        ex = make()
        try:
            wall, m = time_sweep(ex, configs, seeds)
        finally:
            ex.close()
        results[name] = {"wall_s": wall, "runs": len(m), "runs_per_s": len(m) / wall}
        losses[name] = m
        print(f"{name:9s} {wall:7.1f} s  {len(m) / wall:5.2f} runs/s", flush=True)
    same = losses["local x1"] == losses["local x2"] == losses["ray x2"]
    eff = results["local x1"]["wall_s"] / (2 * results["local x2"]["wall_s"])
    ray_ratio = results["ray x2"]["wall_s"] / results["local x2"]["wall_s"]
    print(f"parallel efficiency (2 workers vs 1): {eff:.2f}")
    print(f"Ray / local pool wall-time ratio at 2 workers: {ray_ratio:.2f}")
    print(f"identical losses across executors: {same}")
    atomic_write_json(
        Path(__file__).parent / "results" / "sweep.json",
        {
            "benchmark": "sweep",
            "n_runs": len(configs) * len(seeds),
            "executors": results,
            "parallel_efficiency_2_vs_1": eff,
            "ray_over_local_2": ray_ratio,
            "identical_losses": same,
        },
    )


if __name__ == "__main__":
    main()
