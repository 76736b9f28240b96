"""Curvature numerics against PyHessian on the same model and data.

Model: a 64-32-10 ReLU MLP (2,410 parameters) trained briefly on the digits; the Hessian is that
of the mean cross-entropy over 512 training examples, in float64. The exact spectrum and trace
come from the dense Hessian built by ``torch.func.jacrev(torch.func.jacrev(loss))`` (no
multilens code involved).

1. Top-3 eigenvalues to 1e-6 relative error. For each method a tolerance ladder is walked from
   loose to tight and the first setting whose three eigenvalues are all within 1e-6 of the
   exact ones is kept; reported are its Hessian-vector products (HVPs) and wall time:
   multilens Lanczos (with and without its deflation check), multilens power iteration with
   deflation, and PyHessian's ``eigenvalues(top_n=3)`` (power iteration, stopping on the relative
   change of the Rayleigh quotient; HVPs counted by wrapping its ``hessian_vector_product``).
   Repeated over seeds (start vectors); medians reported.
2. Trace error at equal HVP budget: relative RMSE over seeds of Hutch++ and Hutchinson
   (multilens) and PyHessian's ``trace`` (Hutchinson), plus the coverage of multilens' 95%
   intervals.

PyHessian (PyPI ``pyhessian==0.1``, the "bench" extra; install with ``pip install --no-deps
pyhessian==0.1`` so it cannot pull another torch) is optional: without it its rows are
reported as not measured. PyHessian draws from torch's global RNG; each of its runs is seeded
inside ``torch.random.fork_rng`` so the global state is left as it was.

Usage: .venv/bin/python benchmarks/bench_curvature.py [--seeds 3] [--trace-reps 20] [--out benchmarks/results/curvature.json]
"""

from __future__ import annotations

import argparse
import copy
import importlib
import platform
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, jacrev

from multilens.curvature import curvature_operator
from multilens.data import load_digits_split
from multilens.errors import ConvergenceWarning
from multilens.io import atomic_write_json
from multilens.linalg import hutchinson, hutchpp, lanczos, power_iteration
from multilens.models import MLPSpec, build_mlp
from multilens.train import TrainConfig, train_model

try:  # optional: the "bench" extra
    import pyhessian

    # The submodule, not the class pyhessian/__init__ re-exports under the same name.
    pyh_module = importlib.import_module("pyhessian.hessian")

    PYHESSIAN = getattr(pyhessian, "__version__", "0.1")
except Exception as e:  # noqa: BLE001  (any import failure means "not available")
    pyhessian = None
    PYHESSIAN = None
    PYHESSIAN_ERROR = f"{type(e).__name__}: {e}"

TARGET = 1e-6
SECOND_TARGET = 1e-5  # reported too, so PyHessian (whose error floor is ~2e-6) gets a ratio
CE = nn.functional.cross_entropy


def setup(n_examples: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    d = load_digits_split(0)
    model = build_mlp(MLPSpec(64, (32,), 10, "relu"), seed=0)
    train_model(model, d.x_train, d.y_train, TrainConfig(lr=3e-3, epochs=10, batch_size=64, loss="ce"), seed=0)
    model64 = copy.deepcopy(model).double()
    for p in model64.parameters():
        p.grad = None
    return model64.eval(), d.x_train[:n_examples].double(), d.y_train[:n_examples]


def dense_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    names = [n for n, _ in model.named_parameters()]
    params = dict(model.named_parameters())
    shapes, sizes = [params[n].shape for n in names], [params[n].numel() for n in names]
    theta = torch.cat([params[n].detach().reshape(-1) for n in names])

    def loss(t: torch.Tensor) -> torch.Tensor:
        ps = {n: c.view(s) for n, c, s in zip(names, torch.split(t, sizes), shapes)}
        return CE(functional_call(model, ps, (x,)), y)

    h = jacrev(jacrev(loss), chunk_size=256)(theta).detach().numpy()
    return 0.5 * (h + h.T)


def rel_err(got: np.ndarray, exact: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(got) - exact) / np.abs(exact)))


def ladder(run: Callable[[float], tuple[np.ndarray, int]], tols: list[float], exact: np.ndarray) -> dict[str, Any]:
    """Walk ``tols`` loose to tight (half-decade steps) until the error reaches TARGET.

    For each target the first setting that reaches it is kept (its HVPs, wall time, error).
    """
    tried = []
    for tol in tols:
        t0 = time.perf_counter()
        vals, n_hvp = run(tol)
        wall = time.perf_counter() - t0
        err = rel_err(vals, exact)
        tried.append({"tol": tol, "n_hvp": n_hvp, "wall_s": wall, "max_rel_err": err})
        if err <= TARGET:
            break
    out: dict[str, Any] = {"ladder": tried}
    for key, target in (("", TARGET), ("_1e-5", SECOND_TARGET)):
        hit = next((t for t in tried if t["max_rel_err"] <= target), None)
        out["reached" + key] = hit is not None
        for f in ("tol", "n_hvp", "wall_s"):
            out[f + key] = hit[f] if hit else None
    out["max_rel_err"] = tried[-1]["max_rel_err"]
    return out


def ours_lanczos(model, x, y, seed: int, deflation_check: bool) -> Callable[[float], tuple[np.ndarray, int]]:
    def run(tol: float) -> tuple[np.ndarray, int]:
        op = curvature_operator(model, CE, (x, y))
        r = lanczos(op, op.dim, 3, "LA", tol=tol, seed=seed, return_eigenvectors=False, deflation_check=deflation_check)
        return r.eigenvalues, op.n_matvec

    return run


def ours_power(model, x, y, seed: int) -> Callable[[float], tuple[np.ndarray, int]]:
    def run(tol: float) -> tuple[np.ndarray, int]:
        op = curvature_operator(model, CE, (x, y))
        r = power_iteration(op, op.dim, 3, tol=tol, max_iter=20000, seed=seed, return_eigenvectors=False)
        return np.sort(r.eigenvalues)[::-1], op.n_matvec

    return run


class _CountHVP:
    """Wrap pyhessian.hessian.hessian_vector_product to count calls."""

    def __init__(self) -> None:
        self.count = 0
        self.orig = pyh_module.hessian_vector_product

    def __enter__(self) -> _CountHVP:
        def counted(*a: Any, **k: Any) -> Any:
            self.count += 1
            return self.orig(*a, **k)

        pyh_module.hessian_vector_product = counted
        return self

    def __exit__(self, *exc: Any) -> None:
        pyh_module.hessian_vector_product = self.orig


def pyhessian_run(model, x, y, seed: int) -> Callable[[float], tuple[np.ndarray, int]]:
    def run(tol: float) -> tuple[np.ndarray, int]:
        m = copy.deepcopy(model)  # PyHessian leaves .grad (with a graph) on the model it is given
        default = torch.get_default_dtype()
        with torch.random.fork_rng(devices=[]), _CountHVP() as c:
            torch.manual_seed(seed)
            torch.set_default_dtype(torch.float64)  # its random vectors must match the float64 model
            try:
                h = pyhessian.hessian(m, CE, data=(x, y), cuda=False)
                vals, _ = h.eigenvalues(maxIter=20000, tol=tol, top_n=3)
            finally:
                torch.set_default_dtype(default)
        return np.sort(np.array(vals))[::-1], c.count

    return run


def pyhessian_trace(model, x, y, budget: int, seed: int) -> float:
    m = copy.deepcopy(model)
    default = torch.get_default_dtype()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_default_dtype(torch.float64)
        try:
            h = pyhessian.hessian(m, CE, data=(x, y), cuda=False)
            samples = h.trace(maxIter=budget, tol=0.0)  # tol=0: never stop early, spend the whole budget
        finally:
            torch.set_default_dtype(default)
    assert len(samples) == budget
    return float(np.mean(samples))


def median_of(rows: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return float(np.median(vals)) if len(vals) == len(rows) and vals else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--trace-reps", type=int, default=20)
    ap.add_argument("--examples", type=int, default=512)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "curvature.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", ConvergenceWarning)  # non-convergence shows as "not reached" below
    # PyHessian calls backward(create_graph=True) on the model; torch warns about the cycle. Not ours.
    warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph=True")

    model, x, y = setup(args.examples)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch-internal, on first forward-AD use
        h = dense_hessian(model, x, y)
    dense_s = time.perf_counter() - t0
    evals = np.linalg.eigvalsh(h)
    exact_top = evals[::-1][:3]
    exact_trace = float(np.trace(h))
    dim = h.shape[0]
    print(
        f"model: 64-32-10 ReLU MLP, {dim} parameters, {args.examples} examples, float64; dense Hessian {dense_s:.1f} s"
    )
    print(f"exact top-3: {exact_top}, trace {exact_trace:.6g}")

    # --- one HVP's cost --------------------------------------------------------------------
    op = curvature_operator(model, CE, (x, y))
    v = np.random.default_rng(0).standard_normal(op.dim)
    op(v)
    t0 = time.perf_counter()
    for _ in range(50):
        op(v)
    ours_hvp_ms = (time.perf_counter() - t0) / 50 * 1e3

    # --- eigenvalues -------------------------------------------------------------------------
    tols_ours = [float(10 ** (-k / 2)) for k in range(2, 21)]  # 1e-1 ... 1e-10
    tols_pyh = [float(10 ** (-k / 2)) for k in range(6, 25)]  # 1e-3 (its default) ... 1e-12
    methods: dict[str, list[dict[str, Any]]] = {
        "multilens lanczos": [],
        "multilens lanczos, no deflation check": [],
        "multilens power iteration": [],
        "pyhessian power iteration": [],
    }
    for s in range(args.seeds):
        methods["multilens lanczos"].append(ladder(ours_lanczos(model, x, y, s, True), tols_ours, exact_top))
        methods["multilens lanczos, no deflation check"].append(
            ladder(ours_lanczos(model, x, y, s, False), tols_ours, exact_top)
        )
        methods["multilens power iteration"].append(ladder(ours_power(model, x, y, s), tols_ours, exact_top))
        if pyhessian is not None:
            methods["pyhessian power iteration"].append(ladder(pyhessian_run(model, x, y, s), tols_pyh, exact_top))
    pyh_default = None
    if pyhessian is not None:
        vals, n = pyhessian_run(model, x, y, 0)(1e-3)
        pyh_default = {"tol": 1e-3, "n_hvp": n, "max_rel_err": rel_err(vals, exact_top)}

    summary = {}
    for name, rows in methods.items():
        if not rows:
            summary[name] = {"measured": False, "note": f"pyhessian not importable ({PYHESSIAN_ERROR})"}
            continue
        summary[name] = {
            "measured": True,
            "reached_all_seeds": all(r["reached"] for r in rows),
            "median_n_hvp": median_of(rows, "n_hvp"),
            "median_wall_s": median_of(rows, "wall_s"),
            "median_n_hvp_1e-5": median_of(rows, "n_hvp_1e-5"),
            "median_wall_s_1e-5": median_of(rows, "wall_s_1e-5"),
            "final_max_rel_err": max(r["max_rel_err"] for r in rows),
            "per_seed": rows,
        }
    base = summary["multilens lanczos"]
    for target, sfx in ((TARGET, ""), (SECOND_TARGET, "_1e-5")):
        print(f"\nTop-3 eigenvalues to {target:g} relative error (median over {args.seeds} seeds)")
        print(f"{'method':42s} {'HVPs':>7s} {'wall s':>8s} {'HVPs / ours':>12s} {'wall / ours':>12s}")
        for name, srow in summary.items():
            if not srow["measured"]:
                print(f"{name:42s} not measured: {srow['note']}")
                continue
            nh, wt = srow["median_n_hvp" + sfx], srow["median_wall_s" + sfx]
            if nh is None:
                print(
                    f"{name:42s} did not reach {target:g} on every seed (error floor {srow['final_max_rel_err']:.2g})"
                )
                continue
            srow["hvp_ratio_to_lanczos" + sfx] = nh / base["median_n_hvp" + sfx]
            srow["wall_ratio_to_lanczos" + sfx] = wt / base["median_wall_s" + sfx]
            print(
                f"{name:42s} {nh:7.0f} {wt:8.3f} {srow['hvp_ratio_to_lanczos' + sfx]:12.2f} {srow['wall_ratio_to_lanczos' + sfx]:12.2f}"
            )
    if pyh_default:
        print(
            f"PyHessian at its default tol=1e-3: {pyh_default['n_hvp']} HVPs, max relative error {pyh_default['max_rel_err']:.2g}"
        )

    # --- trace at equal budget ------------------------------------------------------------------
    budgets = [30, 60, 120, 240]
    trace_rows = []
    for b in budgets:
        row: dict[str, Any] = {"budget": b}
        for name, fn in (("hutch++", hutchpp), ("hutchinson", hutchinson)):
            ests, cover = [], 0
            for s in range(args.trace_reps):
                op = curvature_operator(model, CE, (x, y))
                r = fn(op, op.dim, b, seed=s)
                ests.append(r.estimate)
                cover += int(r.ci_low <= exact_trace <= r.ci_high)
            ests_a = np.array(ests)
            row[name] = {
                "rel_rmse": float(np.sqrt(np.mean((ests_a - exact_trace) ** 2)) / abs(exact_trace)),
                "ci95_coverage": cover / args.trace_reps,
            }
        if pyhessian is not None:
            ests_a = np.array([pyhessian_trace(model, x, y, b, s) for s in range(args.trace_reps)])
            row["pyhessian"] = {
                "rel_rmse": float(np.sqrt(np.mean((ests_a - exact_trace) ** 2)) / abs(exact_trace)),
                "ci95_coverage": None,
            }
        else:
            row["pyhessian"] = None
        row["rmse_ratio_hutchinson_over_hutchpp"] = row["hutchinson"]["rel_rmse"] / row["hutch++"]["rel_rmse"]
        trace_rows.append(row)
    print(f"\nTrace: relative RMSE over {args.trace_reps} seeds at equal HVP budget (exact trace {exact_trace:.6g})")
    print(
        f"{'HVPs':>5s} {'Hutch++':>9s} {'Hutchinson':>11s} {'PyHessian':>10s} {'Hutchinson/Hutch++':>19s} {'coverage H++/H':>15s}"
    )
    for r in trace_rows:
        pyh = f"{r['pyhessian']['rel_rmse']:10.4f}" if r["pyhessian"] else f"{'n/a':>10s}"
        print(
            f"{r['budget']:5d} {r['hutch++']['rel_rmse']:9.4f} {r['hutchinson']['rel_rmse']:11.4f} {pyh} "
            f"{r['rmse_ratio_hutchinson_over_hutchpp']:19.2f} {r['hutch++']['ci95_coverage']:7.2f}/{r['hutchinson']['ci95_coverage']:.2f}"
        )

    out = {
        "schema_version": 1,
        "target_relative_error": TARGET,
        "model": {
            "architecture": "64-32-10 ReLU MLP",
            "n_params": dim,
            "n_examples": args.examples,
            "dtype": "float64",
        },
        "exact": {"top3": [float(v) for v in exact_top], "trace": exact_trace, "dense_hessian_s": dense_s},
        "hvp_ms": {"multilens": ours_hvp_ms},
        "eigenvalues": summary,
        "pyhessian_default_tol": pyh_default,
        "trace": trace_rows,
        "environment": {
            "torch": torch.__version__,
            "numpy": np.__version__,
            "pyhessian": PYHESSIAN,
            "threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "machine": platform.machine(),
            "seeds": args.seeds,
            "trace_reps": args.trace_reps,
        },
    }
    atomic_write_json(args.out, out)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
