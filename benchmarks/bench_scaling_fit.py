"""Speed and accuracy of the Chinchilla Approach-3 fit (Hoffmann et al. 2022) against plain scipy.

Data: 240 runs on a 16 x 15 grid of N (1e7..3e9) and D (1e8..1e11) from L = E + A/N^alpha +
B/D^beta with Hoffmann et al.'s published values (E 1.69, A 406.4, B 410.7, alpha 0.34,
beta 0.28), times log-normal noise of 1%.

Measured (wall and CPU time; the box is shared, so the load average is recorded too):

1. multilens ``fit_chinchilla``: all 4500 grid starts screened by a batched NumPy L-BFGS, then
   the best distinct screened points polished with scipy L-BFGS-B (analytic gradient).
2. ``bootstrap_chinchilla`` with 1000 refits (rows resampled with replacement). Each refit is
   warm-started from the full-data optimum plus the 4 grid starts that reached the best
   full-data optima (not the whole grid); all refits are screened together, then the best start
   of each is polished by scipy. Run serially and with a process pool of 2 workers
   (``n_jobs=2``; resamples are drawn up front, so both give identical numbers).
3. Plain scipy baselines on a random subset of grid starts, extrapolated to 4500 starts:
   (a) L-BFGS-B with numeric 2-point gradients and default tolerances (what a direct port of
   the paper's recipe does); (b) L-BFGS-B with the analytic gradient and multilens' tolerances
   but no screening (``fit_chinchilla_exhaustive`` on the subset). Speed ratio = projected
   4500-start time / multilens fit time. The best objective each reaches is reported too.

Usage: .venv/bin/python benchmarks/bench_scaling_fit.py [--boot 1000] [--subset 60]
       [--out benchmarks/results/scaling_fit.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize

from multilens.lenses.scaling import bootstrap_chinchilla, fit_chinchilla, fit_chinchilla_exhaustive, hoffmann_grid
from multilens.lenses.scaling._optim import blas_single_threaded
from multilens.lenses.scaling.chinchilla import _scalar_fun
from multilens.lenses.scaling.synthetic import CHINCHILLA_PARAMS, chinchilla_grid_data
from multilens.stats import json_safe


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write JSON via a temp file in the same folder and os.replace (never a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, sort_keys=True, allow_nan=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@blas_single_threaded
def scipy_numeric_gradient(data, starts: np.ndarray) -> dict[str, Any]:
    fg = _scalar_fun(np.log(data.N), np.log(data.D), np.log(data.loss), np.ones(data.n_points), 1e-3)
    best, n_conv = np.inf, 0
    for s in starts:
        res = minimize(lambda x: fg(x)[0], s, method="L-BFGS-B")  # jac=None: 2-point differences
        n_conv += bool(res.success)
        if res.success:
            best = min(best, float(res.fun))
    return {"best_objective": best, "converged": n_conv}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--subset", type=int, default=60, help="grid starts for the plain-scipy baselines")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "scaling_fit.json")
    args = ap.parse_args()

    load0 = os.getloadavg()
    data = chinchilla_grid_data(noise=0.01, seed=args.seed)
    fit_chinchilla(data.subset(np.arange(36)), starts=hoffmann_grid()[:10])  # warm-up (imports, caches)

    fit, fit_wall, fit_cpu = timed(lambda: fit_chinchilla(data))
    boot1, b1_wall, b1_cpu = timed(lambda: bootstrap_chinchilla(data, fit, n_boot=args.boot, seed=args.seed))
    boot2, b2_wall, _ = timed(lambda: bootstrap_chinchilla(data, fit, n_boot=args.boot, seed=args.seed, n_jobs=2))
    same = bool(np.array_equal(boot1.samples, boot2.samples, equal_nan=True))

    subset = hoffmann_grid()[np.random.default_rng(args.seed).choice(4500, args.subset, replace=False)]
    num, num_wall, num_cpu = timed(lambda: scipy_numeric_gradient(data, subset))
    ana, ana_wall, ana_cpu = timed(lambda: fit_chinchilla_exhaustive(data, starts=subset))
    scale = 4500 / args.subset
    rows = [
        (
            "multilens fit_chinchilla (4500 starts, screened)",
            fit_wall,
            fit_cpu,
            fit.objective,
            f"{fit.n_starts} screened, {fit.n_polished} polished",
        ),
        (
            f"scipy L-BFGS-B numeric grad, {args.subset} starts -> x{scale:.0f}",
            num_wall * scale,
            num_cpu * scale,
            num["best_objective"],
            f"{num['converged']}/{args.subset} converged",
        ),
        (
            f"scipy L-BFGS-B analytic grad, {args.subset} starts -> x{scale:.0f}",
            ana_wall * scale,
            ana_cpu * scale,
            ana.objective,
            "no screening",
        ),
        (f"bootstrap {args.boot} refits, serial", b1_wall, b1_cpu, None, f"{boot1.n_failed} failed"),
        (f"bootstrap {args.boot} refits, 2-process pool", b2_wall, None, None, f"identical to serial: {same}"),
    ]
    print(f"240-run Chinchilla benchmark; load average at start {load0[0]:.2f} on {os.cpu_count()} cores")
    print(f"{'what':62s} {'wall s':>9s} {'cpu s':>9s} {'objective':>13s}  note")
    for name, w, c, obj, note in rows:
        cs = f"{c:9.2f}" if c is not None else f"{'-':>9s}"
        os_ = f"{obj:13.6e}" if obj is not None and np.isfinite(obj) else f"{'-':>13s}"
        print(f"{name:62s} {w:9.2f} {cs} {os_}  {note}")
    print(f"speed ratio vs numeric-gradient scipy (projected 4500 starts): {num_wall * scale / fit_wall:.1f}x wall")
    print(f"speed ratio vs analytic-gradient scipy without screening:      {ana_wall * scale / fit_wall:.1f}x wall")
    print("bootstrap refits: warm-started from the full-data optimum + 4 best grid starts (not the full grid)")
    print("fitted vs truth: " + ", ".join(f"{k} {fit.params[k]:.4g} ({v:g})" for k, v in CHINCHILLA_PARAMS.items()))
    for k, iv in boot1.intervals.items():
        print(f"  {k:6s} {iv.estimate:10.4g}  95% CI [{iv.ci_low:.4g}, {iv.ci_high:.4g}]  se {iv.stderr:.3g}")

    result = {
        "schema_version": 1,
        "benchmark": "scaling_fit",
        "data": {"n_points": data.n_points, "truth": CHINCHILLA_PARAMS, "noise_log_sd": 0.01, "seed": args.seed},
        "machine": {
            "cpu_count": os.cpu_count(),
            "load_average_start": load0[0],
            "load_average_end": os.getloadavg()[0],
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "fit": {
            "wall_s": fit_wall,
            "cpu_s": fit_cpu,
            "objective": fit.objective,
            "converged": fit.converged,
            "n_iter": fit.n_iter,
            "n_starts": fit.n_starts,
            "n_polished": fit.n_polished,
            "params": fit.params,
            "target_wall_s": 10.0,
            "meets_target": fit_wall < 10.0,
        },
        "bootstrap": {
            "n_boot": args.boot,
            "serial_wall_s": b1_wall,
            "serial_cpu_s": b1_cpu,
            "pool2_wall_s": b2_wall,
            "pool_identical": same,
            "n_failed": boot1.n_failed,
            "method": boot1.method,
            "target_wall_s": 120.0,
            "meets_target": min(b1_wall, b2_wall) < 120.0,
            "intervals": {k: v.to_dict() for k, v in boot1.intervals.items()},
        },
        "baselines": {
            "subset_starts": args.subset,
            "scipy_numeric_grad": {
                "wall_s_subset": num_wall,
                "projected_wall_s_4500": num_wall * scale,
                "best_objective": num["best_objective"] if np.isfinite(num["best_objective"]) else None,
                "converged": num["converged"],
                "speed_ratio": num_wall * scale / fit_wall,
            },
            "scipy_analytic_grad_no_screen": {
                "wall_s_subset": ana_wall,
                "projected_wall_s_4500": ana_wall * scale,
                "best_objective": ana.objective,
                "speed_ratio": ana_wall * scale / fit_wall,
            },
        },
    }
    atomic_write_json(args.out, json_safe(result))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
