"""Replace-one retraining for the stability lens: warm-started from theta_S vs from scratch.

Task: the stability lens's main task (digits even vs odd, rows scaled to max ||x|| = 1, a constant
feature), L2-regularised logistic regression at lambda and n. For m sampled replacements
S -> S^(i), the retraining is solved to the SAME stopping rule ||grad F_{S^(i)}|| <= tol (so both
solutions are within tol / lambda of the minimiser: equal accuracy) twice: from theta = 0 and
warm-started from theta_S. Two solvers: Newton's method (the lens's default) and plain gradient
descent with step 1 / (R^2/4 + lambda) (where warm starts matter most). Reported: total time and
iterations of each, their ratios (scratch / warm), the largest distance between the two solutions
of the same problem (equal accuracy, checked), and the machine's load average (the box is shared).

Usage: .venv/bin/python benchmarks/bench_stability.py [--m 40] [--n 400] [--lams 0.1 0.01 0.001] [--tol 1e-10]
       [--out benchmarks/results/stability.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from multilens.lenses.stability.logistic import LogisticRidge, gradient_descent_fit
from multilens.lenses.stability.tasks import digits_task
from multilens.stats import batch_means_ci


def run(m: int, n: int, lam: float, tol: float, seed: int, repeats: int = 5) -> dict:
    task = digits_task(lam=lam, n=n, tol=tol)
    rng = np.random.default_rng(seed)
    x, y = task.x, task.y
    perm = rng.permutation(len(y))
    s, rest = perm[:n], perm[n:]
    pos = rng.choice(n, m, replace=False)
    rep = rng.choice(rest, m, replace=False)
    newton = LogisticRidge(tol=tol)
    solvers = {
        "newton": lambda xs, ys, th0: newton.fit(xs, ys, lam, th0),
        "gradient_descent": lambda xs, ys, th0: gradient_descent_fit(xs, ys, lam, tol=tol, theta0=th0),
    }
    out = {}
    for name, fit in solvers.items():
        full = fit(x[s], y[s], None)
        rows = {"scratch": [], "warm": []}
        gap = 0.0
        for j, r in zip(pos, rep):
            s2 = s.copy()
            s2[j] = r
            sols = {}
            for mode, th0 in (("scratch", None), ("warm", full.theta)):
                t0 = time.perf_counter()
                for _ in range(repeats):  # each solve is sub-millisecond: time several repetitions
                    f = fit(x[s2], y[s2], th0)
                rows[mode].append(((time.perf_counter() - t0) / repeats, f.n_iter, f.converged))
                sols[mode] = f.theta
            gap = max(gap, float(np.linalg.norm(sols["scratch"] - sols["warm"])))
        t = {k: np.array([r[0] for r in v]) for k, v in rows.items()}
        it = {k: np.array([r[1] for r in v]) for k, v in rows.items()}
        ci = {k: batch_means_ci(v) for k, v in t.items()}
        out[name] = {
            "time_s_per_retrain": {k: [c.estimate, c.low, c.high] for k, c in ci.items()},
            "iterations_mean": {k: float(v.mean()) for k, v in it.items()},
            "time_ratio_scratch_over_warm": float(t["scratch"].sum() / t["warm"].sum()),
            "iteration_ratio_scratch_over_warm": float(it["scratch"].sum() / max(it["warm"].sum(), 1)),
            "all_converged": bool(all(r[2] for v in rows.values() for r in v)),
            "max_solution_distance": gap,
            "accuracy_guarantee": f"both within tol/lambda = {tol / lam:.2g} of the minimiser",
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--m", type=int, default=40)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--lams", type=float, nargs="+", default=[0.1, 0.01, 0.001])
    ap.add_argument("--tol", type=float, default=1e-10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/stability.json"))
    a = ap.parse_args()
    res = {
        "settings": vars(a) | {"out": str(a.out)},
        "results": {f"lambda={lam:g}": run(a.m, a.n, lam, a.tol, a.seed) for lam in a.lams},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_avg": os.getloadavg()},
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2))
    for lam_key, by_solver in res["results"].items():
        for name, r in by_solver.items():
            print(
                f"{lam_key} "
                f"{name}: time ratio scratch/warm {r['time_ratio_scratch_over_warm']:.2f}, iteration ratio "
                f"{r['iteration_ratio_scratch_over_warm']:.2f}, mean iterations {r['iterations_mean']}, "
                f"converged {r['all_converged']}, max solution distance {r['max_solution_distance']:.2g}"
            )


if __name__ == "__main__":
    main()
