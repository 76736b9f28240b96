"""Curvature numerics against the strongest anchors: ARPACK (via curvlinops), curvlinops and hessian-eigenthings.

Models: tanh MLPs on a synthetic 10-class task (inputs N(0, I_64), labels from a random teacher
MLP), trained for 30 full-batch gradient steps, at three sizes: ~1k parameters (64-15-10; dense
Hessian available), ~100k (64-256-256-10) and ~1M (64-900-900-10, skipped by ``--quick``). All in
float64; the Hessian is that of the mean cross-entropy over the examples, one batch. The same
model, data and loss go to every library:

* multilens: ``multilens.linalg`` kernels on ``multilens.curvature.curvature_operator``
  (block products through ``matmat``).
* ARPACK: ``scipy.sparse.linalg.eigsh(k, which="LA", tol)`` on curvlinops-for-pytorch 3.0.1's
  ``HessianLinearOperator(...).to_scipy()``, from the same start vector as multilens' Lanczos.
* curvlinops 3.0.1: ``hutchpp_trace``, ``xtrace``, ``lanczos_approximate_spectrum`` (Papyan 2020).
* hessian-eigenthings 1.0.0a5: ``lanczos``, ``trace(method="hutch++")``, ``spectral_density``.

What is measured (HVPs are counted by wrapping each library's own product function):

1. Top-3 eigenvalues to a relative error of 1e-6 (against ``eigh`` of the dense Hessian at 1k,
   against multilens Lanczos at tol 1e-11 cross-checked with ARPACK at tol 1e-11 otherwise). For
   each method a tolerance ladder (hessian-eigenthings: a ladder of step counts, it has no
   stopping rule) is walked loose to tight and the first setting reaching the target is kept:
   its HVPs, wall time. multilens' HVPs are split into the main run (comparable with ARPACK)
   and the re-check (explicit residuals + missed-eigenvalue probe), both reported; multilens
   runs at its default ``ncv`` and at ARPACK's (``max(2k+1, 20)``, equal memory).
2. Trace at equal budgets (60 and 120 HVPs): relative RMSE over seeds against the exact trace
   (1k), and wall time per estimate (all sizes). Equal budget and equal algorithm (XTrace vs
   XTrace, Hutch++ vs Hutch++) is equal accuracy in distribution, which the 1k RMSEs check.
3. Density (SLQ, 8 start vectors x 60 Lanczos steps, or the library's equivalent): HVPs, wall
   time and, at 1k, the Wasserstein-1 distance of the density to the exact eigenvalues
   (relative to the spectral range).
4. Peak memory: the growth of the resident set over the call, sampled every 2 ms in a fresh
   subprocess per (size, task, method) (``--no-memory`` skips it).
5. ``hvpmem``: one HVP's peak working memory against one SGD training step of the same model,
   data and dtype (float32 and float64), in exact bytes: the torch CPU allocator's allocations and
   frees from the profiler's memory events, plus NumPy's from tracemalloc (the resident set of
   item 4 also holds allocator caches and library workspaces, which blurred the earlier 1.8x).
   At full batch and with the batch split in 4 and in 8 (``max_batch``); ``--before`` prints an earlier
   run's rows beside (``results/curvature_hvpmem_before.json``: the code before this change).

6. ``check``: the missed-eigenvalue re-check's HVPs, earlier rule (``deflation_check="gap"``)
   against the default, at the ladder's loose tol (1e-3) and the library's default tol (1e-8),
   from the same start vectors (identical main runs).

Top-k rows also include block Lanczos (b = 3; with the CPU's looped products and with one vmapped
pass per block) and the single-vector run with the earlier, dearer re-check (``check=gap``), so
``n_hvp_check`` before and after is measured in the same run.

Ratios are multilens / anchor (below 1: multilens is cheaper). Every process runs one thread;
trace repetitions go round robin over the methods so a change in the machine's load (the
reference numbers were taken on 2 cores shared with other jobs) hits every method alike. Usage:
``python benchmarks/bench_curvature.py [--quick] [--seeds N] [--out benchmarks/results/curvature.json]``.
The anchors are the ``bench`` extra; install them with ``pip install --no-deps`` (they would pull
another torch) plus their pure-Python dependencies (tqdm, einops, einconv, opt_einsum,
backpack-for-pytorch, unfoldNd, linear_operator). Without them their rows say "not measured".
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.sparse.linalg import eigsh
from torch import nn
from torch.func import functional_call, jacrev

from multilens.curvature import curvature_operator
from multilens.errors import ConvergenceWarning
from multilens.io import atomic_write_json
from multilens.linalg import hutchpp, lanczos, slq_density, xtrace
from multilens.models import MLPSpec, build_mlp
from multilens.seeding import torch_generator

try:  # optional: the "bench" extra
    import curvlinops
    from curvlinops import HessianLinearOperator, lanczos_approximate_spectrum
    from curvlinops import hutchpp_trace as cl_hutchpp
    from curvlinops import xtrace as cl_xtrace

    CURVLINOPS = "3.0.1"
except Exception as e:  # noqa: BLE001
    curvlinops = None
    CURVLINOPS = None
    CURVLINOPS_ERROR = f"{type(e).__name__}: {e}"
try:
    import hessian_eigenthings as he

    EIGENTHINGS = "1.0.0a5"
except Exception as e:  # noqa: BLE001
    he = None
    EIGENTHINGS = None
    EIGENTHINGS_ERROR = f"{type(e).__name__}: {e}"

CE = nn.functional.cross_entropy
TARGET = 1e-6
K = 3
SIZES = {"1k": (15,), "100k": (256, 256), "1M": (900, 900)}
N_EXAMPLES = {"1k": 256, "100k": 256, "1M": 128}
TOLS = [10.0 ** (-e / 2) for e in range(2, 23)]  # 1e-1 ... 1e-11, half-decade steps
# Beyond the dense size the ladders start a half-decade looser than the loosest setting that
# reached the target at 1k for any method (ARPACK: 1e-2), to keep the 100k/1M runs affordable.
TOLS_BIG = [10.0 ** (-e / 2) for e in range(3, 23)]
STEPS = [10, 15, 20, 30, 40, 60, 80, 120, 160, 240, 320]
SLQ_VECTORS, SLQ_STEPS = 8, 60


# --- the subject --------------------------------------------------------------------------------
def setup(size: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A tanh MLP briefly trained on a teacher task (float64, eval mode, no .grad left)."""
    g = torch_generator(0)
    n = N_EXAMPLES[size]
    x = torch.randn(n, 64, generator=g, dtype=torch.float64)
    teacher = build_mlp(MLPSpec(64, (32,), 10, "tanh"), seed=11).double()
    with torch.no_grad():
        y = teacher(x).argmax(dim=1)
    model = build_mlp(MLPSpec(64, SIZES[size], 10, "tanh"), seed=1).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(30):
        opt.zero_grad()
        CE(model(x), y).backward()
        opt.step()
    for p in model.parameters():
        p.grad = None
    return model.eval(), x, y


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def dense_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """By torch.func (no multilens code): jacrev of jacrev of the loss in the flat parameters."""
    names = [n for n, _ in model.named_parameters()]
    params = dict(model.named_parameters())
    shapes, sizes = [params[n].shape for n in names], [params[n].numel() for n in names]
    theta = torch.cat([params[n].detach().reshape(-1) for n in names])

    def loss(t: torch.Tensor) -> torch.Tensor:
        ps = {n: c.view(s) for n, c, s in zip(names, torch.split(t, sizes), shapes)}
        return CE(functional_call(model, ps, (x,)), y)

    h = jacrev(jacrev(loss), chunk_size=256)(theta).detach().numpy()
    return 0.5 * (h + h.T)


# --- counting wrappers --------------------------------------------------------------------------
class Counter:
    def __init__(self) -> None:
        self.n = 0


def cl_operator(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[Any, Counter]:
    """curvlinops' Hessian operator with its block product counted (columns)."""
    op = HessianLinearOperator(
        model, nn.CrossEntropyLoss(), [p for p in model.parameters()], [(x, y)], check_deterministic=False
    )
    c = Counter()
    inner = op._matmat

    def counted(xs: list[torch.Tensor]) -> list[torch.Tensor]:
        c.n += int(xs[0].shape[-1])
        return inner(xs)

    op._matmat = counted  # instance attribute: every product goes through it
    return op, c


def he_operator(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[Any, Counter]:
    op = he.HessianOperator(model, [(x, y)], he.supervised_loss(CE))
    c = Counter()
    inner = op.matvec

    def counted(v: torch.Tensor) -> torch.Tensor:
        c.n += 1
        return inner(v)

    op.matvec = counted
    return op, c


def seeded_torch(seed: int) -> Any:
    """curvlinops draws from torch's global RNG: fork it so the caller's state is left as it was."""

    class _Ctx:
        def __enter__(self) -> None:
            self.f = torch.random.fork_rng(devices=[])
            self.f.__enter__()
            torch.manual_seed(seed)

        def __exit__(self, *exc: Any) -> None:
            self.f.__exit__(*exc)

    return _Ctx()


# --- 1. top-k -------------------------------------------------------------------------------------
def rel_err(got: np.ndarray, exact: np.ndarray) -> float:
    return float(np.max(np.abs(np.sort(np.asarray(got))[::-1][: exact.size] - exact) / np.abs(exact)))


def ladder(run: Callable[[Any], dict[str, Any]], settings: list[Any], exact: np.ndarray) -> dict[str, Any]:
    tried = []
    for s in settings:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            out = run(s)
        out["wall_s"] = time.perf_counter() - t0
        out["setting"] = s
        out["max_rel_err"] = rel_err(out.pop("values"), exact)
        tried.append(out)
        if out["max_rel_err"] <= TARGET:
            break
    hit = tried[-1] if tried[-1]["max_rel_err"] <= TARGET else None
    return {"reached": hit is not None, "hit": hit, "ladder": tried}


def topk_methods(model, x, y, v0: np.ndarray, seed: int) -> dict[str, tuple[Callable[[Any], dict[str, Any]], list]]:
    out: dict[str, tuple[Callable[[Any], dict[str, Any]], list]] = {}
    tols = TOLS if n_params(model) <= 5000 else TOLS_BIG

    def ours(ncv: int | None, check: bool | str = True, **kw: Any) -> Callable[[float], dict[str, Any]]:
        vectorize = kw.pop("vectorize", None)

        def run(tol: float) -> dict[str, Any]:
            op = curvature_operator(model, CE, (x, y), vectorize=vectorize, block_size=16)
            r = lanczos(
                op, op.dim, K, "LA", tol=tol, seed=seed, v0=v0, return_eigenvectors=False, ncv=ncv,
                deflation_check=check, **kw,
            )  # fmt: skip
            return {
                "values": r.eigenvalues,
                "n_hvp": r.n_matvec,
                "n_hvp_main": r.n_matvec - r.n_matvec_check,
                "n_hvp_check": r.n_matvec_check,
                "n_passes": op.n_passes,
                "n_iter": r.n_iter,
                "converged": r.converged,
                "miss_bound": r.miss_bound,
                "n_missed_found": r.n_missed_found,
                "ncv": r.ncv,
            }

        return run

    out["multilens lanczos"] = (ours(None), tols)
    out["multilens lanczos check=gap (before)"] = (ours(None, "gap"), tols)
    out["multilens lanczos ncv=20"] = (ours(max(2 * K + 1, 20)), tols)
    out["multilens block lanczos b=3"] = (ours(None, method="block", block_size=K), tols)
    out["multilens block lanczos b=3 vmap"] = (ours(None, method="block", block_size=K, vectorize=True), tols)
    if curvlinops is not None:

        def arpack(tol: float) -> dict[str, Any]:
            op, c = cl_operator(model, x, y)
            sp = op.to_scipy()
            w = eigsh(sp, k=K, which="LA", tol=tol, v0=v0)[0]
            return {"values": w, "n_hvp": c.n, "n_hvp_main": c.n, "n_hvp_check": 0}

        out["ARPACK (curvlinops)"] = (arpack, tols)
    if he is not None:

        def eigenthings(steps: int) -> dict[str, Any]:
            op, c = he_operator(model, x, y)
            r = he.lanczos(op, k=K, max_iter=min(steps, n_params(model) - 1), which="LA", seed=seed)
            return {"values": r.eigenvalues.detach().numpy(), "n_hvp": c.n, "n_hvp_main": c.n, "n_hvp_check": 0}

        out["hessian-eigenthings lanczos"] = (eigenthings, STEPS)
    return out


# --- 2. trace -------------------------------------------------------------------------------------
def trace_methods(model, x, y) -> dict[str, Callable[[int, int], tuple[float, int]]]:
    out: dict[str, Callable[[int, int], tuple[float, int]]] = {}

    def ours(f: Callable) -> Callable[[int, int], tuple[float, int]]:
        def run(budget: int, seed: int) -> tuple[float, int]:
            op = curvature_operator(model, CE, (x, y))
            r = f(op, op.dim, budget, seed=seed)
            return r.estimate, op.n_matvec

        return run

    out["multilens xtrace"] = ours(xtrace)
    out["multilens hutch++"] = ours(hutchpp)
    if curvlinops is not None:

        def cl(f: Callable) -> Callable[[int, int], tuple[float, int]]:
            def run(budget: int, seed: int) -> tuple[float, int]:
                op, c = cl_operator(model, x, y)
                with seeded_torch(seed):
                    est = float(f(op, budget))
                return est, c.n

            return run

        out["curvlinops xtrace"] = cl(cl_xtrace)
        out["curvlinops hutchpp"] = cl(cl_hutchpp)
    if he is not None:

        def eig(budget: int, seed: int) -> tuple[float, int]:
            op, c = he_operator(model, x, y)
            r = he.trace(op, num_matvecs=budget, method="hutch++", seed=seed)
            return float(r.estimate), c.n

        out["hessian-eigenthings hutch++"] = eig
    return out


# --- 3. density -----------------------------------------------------------------------------------
def w1_to_exact(grid: np.ndarray, density: np.ndarray, evals: np.ndarray) -> float:
    """Wasserstein-1 distance between a density on a grid and the uniform measure on ``evals``."""
    lo, hi = min(grid[0], evals[0]), max(grid[-1], evals[-1])
    t = np.linspace(lo, hi, 20001)
    d = np.interp(t, grid, density, left=0.0, right=0.0)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (d[1:] + d[:-1]) * np.diff(t))])
    cdf /= cdf[-1]
    exact = np.searchsorted(np.sort(evals), t, side="right") / evals.size
    return float(np.trapezoid(np.abs(cdf - exact), t) / (evals[-1] - evals[0]))


def density_methods(model, x, y) -> dict[str, Callable[[int], tuple[np.ndarray, np.ndarray, int]]]:
    out: dict[str, Callable[[int], tuple[np.ndarray, np.ndarray, int]]] = {}

    def ours(seed: int) -> tuple[np.ndarray, np.ndarray, int]:
        op = curvature_operator(model, CE, (x, y))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            r = slq_density(op, op.dim, n_vectors=SLQ_VECTORS, n_iter=SLQ_STEPS, seed=seed)
        return r.grid, r.density, op.n_matvec

    out["multilens slq"] = ours
    if curvlinops is not None:

        def cl(seed: int) -> tuple[np.ndarray, np.ndarray, int]:
            op, c = cl_operator(model, x, y)
            with seeded_torch(seed):
                grid, dens = lanczos_approximate_spectrum(op, SLQ_STEPS, num_points=1024, num_repeats=SLQ_VECTORS)
            return grid.numpy(), dens.numpy(), c.n

        out["curvlinops papyan2020"] = cl
    if he is not None:

        def eig(seed: int) -> tuple[np.ndarray, np.ndarray, int]:
            op, c = he_operator(model, x, y)
            r = he.spectral_density(op, num_runs=SLQ_VECTORS, lanczos_steps=SLQ_STEPS, num_grid_points=2000, seed=seed)
            return r.grid.numpy(), r.density.numpy(), c.n

        out["hessian-eigenthings slq"] = eig
    return out


# --- 4. peak memory in a fresh process ------------------------------------------------------------
def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_growth(fn: Callable[[], Any]) -> int:
    base = rss_bytes()
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.002)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        fn()
    finally:
        stop.set()
        t.join()
    peak[0] = max(peak[0], rss_bytes())
    return peak[0] - base


def check_cost(model: nn.Module, x: torch.Tensor, y: torch.Tensor, p: int, seeds: int = 3) -> dict[str, Any]:
    """HVPs of the re-check (explicit residuals + probe) at the ladder's loose tol and at the default tol.

    Same start vector per seed for both checks, so the main runs are identical and the difference
    is the check alone. Medians over ``seeds`` start vectors.
    """
    out: dict[str, Any] = {}
    for tol in (1e-3, 1e-8):
        row: dict[str, Any] = {}
        for label, mode in (("gap (before)", "gap"), ("bound (after)", True)):
            main, check, found = [], [], []
            for s in range(seeds):
                v0 = np.random.default_rng(100 + s).standard_normal(p)
                op = curvature_operator(model, CE, (x, y))
                r = lanczos(
                    op, op.dim, K, "LA", tol=tol, seed=s, v0=v0, return_eigenvectors=False, deflation_check=mode
                )
                main.append(r.n_matvec - r.n_matvec_check)
                check.append(r.n_matvec_check)
                found.append(r.n_missed_found)
            row[label] = {
                "median_n_hvp_main": float(np.median(main)),
                "median_n_hvp_check": float(np.median(check)),
                "n_missed_found": int(sum(found)),
            }
        out[f"{tol:g}"] = row
        print(f"  check cost tol={tol:g}: {row}", flush=True)
    return out


def allocated_peak(fn: Callable[[], Any]) -> tuple[int, int]:
    """Peak bytes allocated during ``fn()`` above what was allocated before it: (torch, NumPy).

    torch: the CPU allocator's own accounting, read from the profiler's memory events
    (``torch.profiler.profile(profile_memory=True)``: every allocation and free of a tensor's
    storage with its size, in order; the peak of their running sum). NumPy: ``tracemalloc``'s peak
    (NumPy reports its buffers to it; torch does not). Exact byte counts, unlike the resident set,
    which also holds the allocator's cache, the libraries' workspaces and first-call allocations.
    """
    import tracemalloc

    from torch.profiler import ProfilerActivity, profile

    tracemalloc.start()
    try:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
        _, np_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    running = np.cumsum([n for _, n in events]) if events else np.zeros(1)
    return max(0, int(running.max())), int(np_peak)


def hvp_memory(size: str, max_batch: int | None) -> dict[str, Any]:
    """One HVP's peak working memory against one SGD training step, same model, data and dtype.

    Training step: forward, backward, ``SGD.step`` on a copy of the model in train mode, after
    one warm-up step, from a state with no gradients held (``zero_grad(set_to_none=True)`` just
    before the window, so the step's new gradients count, as the HVP's result does). HVP:
    ``curvature_operator(...).matvec(v)`` on a fresh operator (its first product builds the kept
    graph: forward, backward with create_graph, then the double backward), and a second product
    on the kept graph. NumPy in/out
    vectors are counted (tracemalloc); the operator's own copy of the parameters is made at
    construction, before the measurement, as the optimizer's state is for the step.
    """
    rows: dict[str, Any] = {}
    for dt in (torch.float32, torch.float64):
        name = str(dt).replace("torch.", "")
        rows[name] = _memory_one(size, dt, max_batch)
        print(f"  memory {size} {name} max_batch={max_batch}: {rows[name]}", flush=True)
    return rows


def _memory_one(size: str, dt: torch.dtype, max_batch: int | None) -> dict[str, Any]:
    model, x, y = setup(size)
    model, x = model.to(dt), x.to(dt)
    m = copy.deepcopy(model).train()
    opt = torch.optim.SGD(m.parameters(), lr=1e-3)

    def step() -> None:
        CE(m(x), y).backward()
        opt.step()

    step()
    # Measured from a state holding no gradients (as the HVP holds no result before its call): the
    # previous step's gradients are dropped outside the window, so the step's own are counted.
    opt.zero_grad(set_to_none=True)
    t_torch, t_np = allocated_peak(step)
    kw = {} if max_batch is None else {"max_batch": max_batch}
    op = curvature_operator(model, CE, (x, y), dtype=dt, **kw)
    v = np.random.default_rng(0).standard_normal(op.dim)
    h1 = allocated_peak(lambda: op.matvec(v))
    h2 = allocated_peak(lambda: op.matvec(v))
    train = t_torch + t_np
    return {
        "train_step_mib": train / 2**20,
        "hvp_first_mib": sum(h1) / 2**20,
        "hvp_next_mib": sum(h2) / 2**20,
        "hvp_numpy_mib": h1[1] / 2**20,
        "param_mib": op.dim * torch.finfo(dt).bits / 8 / 2**20,
        "ratio_first": sum(h1) / train,
        "ratio_next": sum(h2) / train,
    }


def probe(state_file: str, task: str, method: str, setting: str) -> None:
    """Subprocess entry: load the subject, run one method once, print its peak RSS growth."""
    blob = torch.load(state_file, weights_only=False)
    model, x, y = blob["model"], blob["x"], blob["y"]
    v0 = blob["v0"]
    if task == "topk":
        run, _ = topk_methods(model, x, y, v0, 0)[method]
        arg: Any = float(setting) if "eigenthings" not in method else int(setting)
        fn: Callable[[], Any] = lambda: run(arg)  # noqa: E731
    elif task == "trace":
        run_t = trace_methods(model, x, y)[method]
        fn = lambda: run_t(int(setting), 0)  # noqa: E731
    else:
        run_d = density_methods(model, x, y)[method]
        fn = lambda: run_d(0)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grow = peak_growth(fn)
    print(json.dumps({"peak_rss_growth_bytes": grow}))


def measure_memory(state_file: str, task: str, method: str, setting: Any) -> float | None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, __file__, "--probe", state_file, task, method, str(setting)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    if p.returncode != 0:
        return None
    return float(json.loads(p.stdout.strip().splitlines()[-1])["peak_rss_growth_bytes"]) / 2**20


# --- driver ---------------------------------------------------------------------------------------
def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else float(a) / float(b)


def bench_size(
    size: str,
    seeds: int,
    trace_reps: int,
    memory: bool,
    tasks: tuple[str, ...] = ("topk", "trace", "density"),
    budgets: tuple[int, ...] = (60, 120),
    prev: dict[str, Any] | None = None,
) -> dict[str, Any]:
    model, x, y = setup(size)
    p = n_params(model)
    if p > 5000:  # no exact trace to measure accuracy against: a few repetitions time the calls
        seeds, trace_reps = 1, min(trace_reps, 3)
    print(f"== {size}: {p} parameters, {x.shape[0]} examples", flush=True)
    res: dict[str, Any] = dict(prev or {})
    res |= {
        "n_params": p,
        "n_examples": int(x.shape[0]),
        "architecture": f"64-{SIZES[size]}-10 tanh",
        "seeds": seeds,
        "trace_reps": trace_reps,
    }
    dense = p <= 5000
    if dense:
        h = dense_hessian(model, x, y)
        evals = np.linalg.eigvalsh(h)
        exact_top = evals[::-1][:K]
        exact_trace = float(np.trace(h))
        res["reference"] = "dense Hessian (torch.func jacrev of jacrev), numpy eigvalsh"
    else:
        op = curvature_operator(model, CE, (x, y))
        ref = lanczos(op, op.dim, K, "LA", tol=1e-11, seed=99, return_eigenvectors=False)
        exact_top = ref.eigenvalues
        evals, exact_trace = None, None
        res["reference"] = f"multilens lanczos tol 1e-11 ({ref.n_matvec} HVPs, converged={ref.converged})"
        if curvlinops is not None:
            clop, _ = cl_operator(model, x, y)
            w = eigsh(clop.to_scipy(), k=K, which="LA", tol=1e-11, v0=np.ones(p))[0]
            res["reference_arpack_agreement"] = rel_err(w, exact_top)
    res["exact_top"] = [float(v) for v in exact_top]

    # 1. top-k
    topk: dict[str, Any] = {}
    for s in range(seeds if "topk" in tasks else 0):
        v0 = np.random.default_rng(100 + s).standard_normal(p)
        for name, (run, settings) in topk_methods(model, x, y, v0, s).items():
            topk.setdefault(name, []).append(ladder(run, settings, exact_top))
            hit = topk[name][-1]["hit"]
            print(f"  top-{K} seed {s} {name}: {hit and {k: hit[k] for k in ('n_hvp', 'n_hvp_main', 'setting')}}")
    summary: dict[str, Any] = {}
    for name, runs in topk.items():
        hits = [r["hit"] for r in runs]
        ok = all(h is not None for h in hits)
        summary[name] = {
            "reached_all_seeds": ok,
            "median_n_hvp": float(np.median([h["n_hvp"] for h in hits])) if ok else None,
            "median_n_hvp_main": float(np.median([h["n_hvp_main"] for h in hits])) if ok else None,
            "median_n_hvp_check": float(np.median([h["n_hvp_check"] for h in hits])) if ok else None,
            "median_n_passes": float(np.median([h.get("n_passes", h["n_hvp"]) for h in hits])) if ok else None,
            "median_wall_s": float(np.median([h["wall_s"] for h in hits])) if ok else None,
            "per_seed": runs,
        }
    for anchor in ("ARPACK (curvlinops)", "hessian-eigenthings lanczos"):
        if anchor in summary:
            for ours in [n for n in summary if n.startswith("multilens")]:
                a, o = summary[anchor], summary[ours]
                o[f"hvp_main_ratio_vs {anchor}"] = ratio(o["median_n_hvp_main"], a["median_n_hvp"])
                o[f"hvp_total_ratio_vs {anchor}"] = ratio(o["median_n_hvp"], a["median_n_hvp"])
                o[f"wall_ratio_vs {anchor}"] = ratio(o["median_wall_s"], a["median_wall_s"])
    if "topk" in tasks:
        res["topk"] = summary

    # 2. trace
    trace: dict[str, Any] = {}
    for budget in budgets if "trace" in tasks else ():
        rows: dict[str, Any] = {}
        methods = trace_methods(model, x, y)
        samples: dict[str, dict[str, list]] = {n: {"est": [], "wall": [], "hvp": []} for n in methods}
        for s in range(trace_reps):  # round robin, so a change in the machine's load hits every method alike
            for name, run in methods.items():
                t0 = time.perf_counter()
                e, n = run(budget, s)
                samples[name]["wall"].append(time.perf_counter() - t0)
                samples[name]["est"].append(e)
                samples[name]["hvp"].append(n)
        for name, smp in samples.items():
            ests_a = np.array(smp["est"])
            row = {
                "median_wall_s": float(np.median(smp["wall"])),
                "n_hvp": int(np.median(smp["hvp"])),
                "mean": float(ests_a.mean()),
                "sd": float(ests_a.std(ddof=1)) if ests_a.size > 1 else None,
            }
            if exact_trace is not None:
                row["rel_rmse"] = float(np.sqrt(np.mean((ests_a - exact_trace) ** 2)) / abs(exact_trace))
            rows[name] = row
            print(f"  trace@{budget} {name}: {row}")
        for ours, anchor in (
            ("multilens xtrace", "curvlinops xtrace"),
            ("multilens hutch++", "curvlinops hutchpp"),
            ("multilens hutch++", "hessian-eigenthings hutch++"),
            ("multilens xtrace", "curvlinops hutchpp"),
        ):
            if anchor in rows:
                rows[ours][f"wall_ratio_vs {anchor}"] = ratio(
                    rows[ours]["median_wall_s"], rows[anchor]["median_wall_s"]
                )
                if "rel_rmse" in rows[ours]:
                    rows[ours][f"rmse_ratio_vs {anchor}"] = ratio(rows[ours]["rel_rmse"], rows[anchor]["rel_rmse"])
        trace[str(budget)] = rows
    if exact_trace is not None:
        trace["exact_trace"] = exact_trace
    if "trace" in tasks:
        res["trace"] = trace

    # 3. density
    dens: dict[str, Any] = {}
    for name, run in density_methods(model, x, y).items() if "density" in tasks else ():
        t0 = time.perf_counter()
        grid, d, n = run(0)
        row = {"wall_s": time.perf_counter() - t0, "n_hvp": n}
        if evals is not None:
            row["w1_rel_to_exact"] = w1_to_exact(np.asarray(grid, dtype=np.float64), np.asarray(d, np.float64), evals)
        dens[name] = row
        print(f"  density {name}: {row}")
    for anchor in ("curvlinops papyan2020", "hessian-eigenthings slq"):
        if anchor in dens and "multilens slq" in dens:
            dens["multilens slq"][f"wall_ratio_vs {anchor}"] = ratio(
                dens["multilens slq"]["wall_s"], dens[anchor]["wall_s"]
            )
            dens["multilens slq"][f"hvp_ratio_vs {anchor}"] = ratio(
                dens["multilens slq"]["n_hvp"], dens[anchor]["n_hvp"]
            )
    if "density" in tasks:
        res["density"] = dens

    # 6. the missed-eigenvalue re-check's cost, before ("gap") and after (default), same main run
    if "check" in tasks:
        res["check_cost"] = check_cost(model, x, y, p)

    # 5. one HVP's peak working memory against one training step (exact allocator accounting)
    if "hvpmem" in tasks:
        hm: dict[str, Any] = {"method": "torch profiler memory events (CPU allocator) + tracemalloc (NumPy)"}
        hm["full_batch"] = hvp_memory(size, None)
        if "max_batch" in getattr(curvature_operator, "__kwdefaults__", {}):
            for parts in (4, 8):
                hm[f"max_batch={x.shape[0] // parts}"] = hvp_memory(size, x.shape[0] // parts)
        res["hvp_memory"] = hm

    # 4. memory
    if memory:
        mem: dict[str, Any] = dict(res.get("peak_rss_growth_mib", {}))
        with tempfile.TemporaryDirectory() as tmp:
            f = os.path.join(tmp, "subject.pt")
            torch.save({"model": model, "x": x, "y": y, "v0": np.random.default_rng(100).standard_normal(p)}, f)
            for name in topk:
                hit = topk[name][0]["hit"]
                if hit is not None:
                    mem[f"topk {name}"] = measure_memory(f, "topk", name, hit["setting"])
            for name in trace_methods(model, x, y) if "trace" in tasks else ():
                mem[f"trace@60 {name}"] = measure_memory(f, "trace", name, 60)
            for name in density_methods(model, x, y) if "density" in tasks else ():
                mem[f"density {name}"] = measure_memory(f, "density", name, 0)
        print(f"  peak RSS growth (MiB): {mem}")
        res["peak_rss_growth_mib"] = mem
    return res


def _f(v: Any, fmt: str = ".3g") -> str:
    return "-" if v is None else format(v, fmt)


def table(out: dict[str, Any], before: dict[str, Any] | None = None) -> str:
    """Markdown tables of the results: top-k, the HVP memory ratios (before/after), trace, density."""
    lines = [
        f"top-{out.get('k', K)} to rel. err {out.get('target_rel_err_topk', TARGET):g} (median over seeds; "
        "HVPs = main run + re-check; passes = calls of the operator)",
        "",
        "| size | method | HVPs main | HVPs check | HVPs total | passes | wall s | main/ARPACK | wall/ARPACK |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for size, r in out["sizes"].items():
        for name, s in r.get("topk", {}).items():
            a = "ARPACK (curvlinops)"
            lines.append(
                f"| {size} | {name} | {_f(s['median_n_hvp_main'])} | {_f(s['median_n_hvp_check'])} | "
                f"{_f(s['median_n_hvp'])} | {_f(s.get('median_n_passes'))} | {_f(s['median_wall_s'])} | "
                f"{_f(s.get(f'hvp_main_ratio_vs {a}'))} | {_f(s.get(f'wall_ratio_vs {a}'))} |"
            )
    lines += [
        "",
        "peak working memory of one HVP / one SGD training step, same model, data and dtype (torch allocator "
        "bytes from the profiler's memory events + NumPy bytes from tracemalloc); first = builds the graph",
        "",
        "| size | dtype | operator | train step MiB | HVP first MiB | ratio first | HVP next MiB | ratio next |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, src in (("before", before), ("after", out)):
        for size, r in (src or {}).get("sizes", {}).items():
            for variant, rows in r.get("hvp_memory", {}).items():
                if not isinstance(rows, dict):
                    continue
                for dt, m in rows.items():
                    lines.append(
                        f"| {size} | {dt} | {label}: {variant} | {m['train_step_mib']:.3f} | "
                        f"{m['hvp_first_mib']:.3f} | {m['ratio_first']:.2f} | {m['hvp_next_mib']:.3f} | "
                        f"{m['ratio_next']:.2f} |"
                    )
    ck = [
        (s, t, lab, c)
        for s, r in out["sizes"].items()
        for t, rows in r.get("check_cost", {}).items()
        for lab, c in rows.items()
    ]
    if ck:
        lines += [
            "",
            "missed-eigenvalue re-check, HVPs (explicit residuals + probe; median over 3 start vectors, same main run)",
            "",
            "| size | tol | check | HVPs main | HVPs check |",
            "|---|---|---|---|---|",
        ]
        for s, t, lab, c in ck:
            lines.append(f"| {s} | {t} | {lab} | {c['median_n_hvp_main']:g} | {c['median_n_hvp_check']:g} |")
    tr = [
        (s, b, n, row)
        for s, r in out["sizes"].items()
        for b, rows in r.get("trace", {}).items()
        if isinstance(rows, dict)
        for n, row in rows.items()
    ]
    if tr:
        lines += ["", "| size | trace budget | method | HVPs | wall s | rel. RMSE |", "|---|---|---|---|---|---|"]
        for s, b, n, row in tr:
            lines.append(
                f"| {s} | {b} | {n} | {row['n_hvp']} | {_f(row['median_wall_s'])} | {_f(row.get('rel_rmse'))} |"
            )
    de = [(s, n, row) for s, r in out["sizes"].items() for n, row in r.get("density", {}).items()]
    if de:
        lines += ["", "| size | density method | HVPs | wall s | W1 / range |", "|---|---|---|---|---|"]
        for s, n, row in de:
            lines.append(f"| {s} | {n} | {row['n_hvp']} | {_f(row['wall_s'])} | {_f(row.get('w1_rel_to_exact'))} |")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--probe":
        probe(*sys.argv[2:6])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1k and 100k only, 1 seed, 6 trace reps")
    ap.add_argument("--merge", action="store_true", help="keep the sizes and tasks already in --out")
    ap.add_argument(
        "--tasks",
        default="topk,trace,density,hvpmem,check",
        help="comma-separated: topk, trace, density, hvpmem (one HVP's peak memory vs a training step), "
        "check (the re-check's HVPs before/after at tol 1e-3 and 1e-8)",
    )
    ap.add_argument("--budgets", default="60,120")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--trace-reps", type=int, default=20)
    ap.add_argument("--sizes", default="1k,100k,1M")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "curvature.json"))
    ap.add_argument(
        "--before",
        default=str(Path(__file__).parent / "results" / "curvature_hvpmem_before.json"),
        help="an earlier --tasks hvpmem result to print beside this one (the 'before' rows)",
    )
    ap.add_argument("--table", action="store_true", help="only print the tables of --out (and --before)")
    a = ap.parse_args()
    before = json.loads(Path(a.before).read_text()) if a.before and Path(a.before).exists() else None
    if a.table:
        print(table(json.loads(Path(a.out).read_text()), before))
        return
    torch.set_num_threads(1)
    sizes = a.sizes.split(",")
    seeds, reps = a.seeds, a.trace_reps
    if a.quick:
        sizes = [s for s in sizes if s != "1M"]
        seeds, reps = 1, 6
    t0 = time.perf_counter()
    out: dict[str, Any] = {
        "schema_version": 2,
        "benchmark": "curvature numerics vs ARPACK (curvlinops), curvlinops and hessian-eigenthings",
        "quick": bool(a.quick),
        "target_rel_err_topk": TARGET,
        "k": K,
        "seeds": seeds,
        "trace_reps": reps,
        "slq": {"n_vectors": SLQ_VECTORS, "n_iter": SLQ_STEPS},
        "anchors": {
            "curvlinops-for-pytorch": CURVLINOPS or f"not measured ({CURVLINOPS_ERROR})",
            "hessian-eigenthings": EIGENTHINGS or f"not measured ({EIGENTHINGS_ERROR})",
        },
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "threads": 1,
            "machine": platform.machine(),
        },
        "sizes": {},
    }
    if a.merge and Path(a.out).exists():
        out["sizes"] = json.loads(Path(a.out).read_text()).get("sizes", {})
    tasks = tuple(a.tasks.split(","))
    budgets = tuple(int(b) for b in a.budgets.split(","))
    for size in sizes:
        prev = out["sizes"].get(size)
        out["sizes"][size] = bench_size(size, seeds, reps, not a.no_memory, tasks, budgets, prev)
        atomic_write_json(a.out, out)  # each size as soon as it is done
    out["total_wall_s"] = time.perf_counter() - t0
    atomic_write_json(a.out, out)
    print(f"wrote {a.out} in {out['total_wall_s']:.0f} s")
    print(table(out, before))


if __name__ == "__main__":
    main()
