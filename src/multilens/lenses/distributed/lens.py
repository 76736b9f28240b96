"""The distributed lens: real data-parallel training with torch.distributed against its theorem.

``run_distributed`` starts max(workers) worker processes once (gloo on CPU, NCCL with CUDA),
runs every measurement on process groups of 1..m ranks, then one small launch per injected
fault, and compares what it measured with the theory:

* synchronous gradient all-reduce, DDP, local SGD with K = 1, the delay buffer at tau = 0 and
  top-k at ratio 1 against plain single-process large-batch SGD (float64 parity);
* the SGD noise floor on a strongly convex quadratic for each m against its exact stationary
  value and the theorem's bound eta*sigma^2/(mu*m) (seed line 172, example 10, B.6), and the
  1/m ratio with its interval;
* local-SGD drift against the exact local-GD iterate, growing with K and heterogeneity (B.17);
* delayed GD against its companion-matrix rate and the Levin-May stability bound, across
  condition numbers (tolerable staleness), and noisy delayed SGD against its Lyapunov floor;
* compute, idle and communication time per step, bytes moved, the ring all-reduce model fitted
  to a size sweep, speedup and the model's best worker count against the measured one, and
  time to a target loss per mode;
* a straggler, a worker that dies and one that hangs: detection, exit codes, no orphans.

``analyze_outputs`` is the second half alone, for rank outputs gathered from a torchrun job.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from multilens.config import config_hash
from multilens.errors import ConvergenceWarning
from multilens.lenses.distributed import theory
from multilens.lenses.distributed.analysis import (
    DelayDistribution,
    FloorEstimate,
    TimingSummary,
    comm_points,
    curve_band,
    delay_distribution,
    drift_rows,
    eval_curve,
    floor_estimate,
    loss_at_step,
    reference_sgd,
    stale_rows,
    task_records,
    timing_summary,
)
from multilens.lenses.distributed.config import DistributedConfig
from multilens.lenses.distributed.faults import FaultEvent, summarize_fault
from multilens.lenses.distributed.jobs import drift_eta, fault_job, main_job, modes_runs, noise_variants, problem_seeds
from multilens.lenses.distributed.launch import LaunchError, launch
from multilens.lenses.distributed.problems import make_least_squares_shards, make_quadratic
from multilens.lenses.distributed.timing import (
    ComputeFit,
    RingFit,
    fit_compute_model,
    fit_ring_model,
    predicted_step_time,
    ratio_ci,
    time_to_target,
)
from multilens.results import Assumption, Check, Estimate, Figure, LensResult, Table, check_in_interval, check_within
from multilens.seeding import derive_seed

LENS = "distributed"
EPS64 = float(np.finfo(np.float64).eps)


def _f(x: Any) -> float | None:
    """A finite float or None (JSON-safe)."""
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def n_cores(cfg: DistributedConfig) -> int:
    if cfg.n_cores:
        return cfg.n_cores
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------


def run_faults(cfg: DistributedConfig, seed: int) -> list[FaultEvent]:
    """One launch per fault kind; each returns only after every process is gone."""
    events = []
    for kind in cfg.fault_kinds:
        res = launch(
            fault_job(cfg, seed, kind),
            cfg.fault_workers,
            deadline_s=cfg.launch_timeout_s,
            grace_s=cfg.fault_timeout_s + 2.0,
        )
        victim = cfg.fault_workers - 1
        events.append(
            summarize_fault(
                kind,
                victim,
                cfg.fault_step,
                cfg.fault_timeout_s,
                res.outputs,
                res.returncodes,
                res.killed,
                res.leftover,
                res.wall_time_s,
                res.pids,
            )
        )
    return events


def run_distributed(config: DistributedConfig, seed: int) -> LensResult:
    """Run the lens: one launch for the measurements, one per fault, then the analysis."""
    t0 = time.perf_counter()
    world = max(config.workers)
    main = launch(
        main_job(config, seed), world, deadline_s=config.launch_timeout_s, grace_s=config.collective_timeout_s + 5.0
    )
    if not main.ok:
        raise LaunchError(f"distributed lens: the main launch failed: {main.failure_message()}")
    t_main = time.perf_counter() - t0
    events = run_faults(config, seed)
    launch_info = {
        "world_size": world,
        "main_launch_wall_s": main.wall_time_s,
        "main_launch_attempts": main.attempts,
        "main_launch_exit_codes": list(main.returncodes),
        "main_launch_leftover_pids": list(main.leftover),
        "fault_launches_wall_s": time.perf_counter() - t0 - t_main,
    }
    result = analyze_outputs(config, seed, main.outputs, events, launch_info)
    wall = time.perf_counter() - t0
    return LensResult(
        lens=result.lens,
        estimates=result.estimates,
        checks=result.checks,
        figures=result.figures,
        tables=result.tables,
        assumptions=result.assumptions,
        predictions=result.predictions,
        data=result.data | {"wall_time_s": wall},
        notes=result.notes,
    )


# ---------------------------------------------------------------------------------------------
# Analysis
# ---------------------------------------------------------------------------------------------


def _trace(x: Any, y: Any, name: str, mode: str = "lines+markers", **extra: Any) -> dict[str, Any]:
    return {"type": "scatter", "mode": mode, "name": name, "x": [_f(v) for v in x], "y": [_f(v) for v in y]} | extra


def _err_trace(x: Any, y: Any, lo: Any, hi: Any, name: str, mode: str = "markers") -> dict[str, Any]:
    ys = [_f(v) for v in y]
    plus = [None if v is None or _f(h) is None else max(_f(h) - v, 0.0) for v, h in zip(ys, hi)]  # type: ignore[operator]
    minus = [None if v is None or _f(lw) is None else max(v - _f(lw), 0.0) for v, lw in zip(ys, lo)]  # type: ignore[operator]
    return _trace(
        x,
        y,
        name,
        mode,
        error_y={"type": "data", "symmetric": False, "array": plus, "arrayminus": minus, "visible": True},
    )


def _layout(xlabel: str, ylabel: str, xlog: bool = False, ylog: bool = False, **extra: Any) -> dict[str, Any]:
    return {
        "xaxis": {"title": {"text": xlabel}, "type": "log" if xlog else "linear"},
        "yaxis": {"title": {"text": ylabel}, "type": "log" if ylog else "linear"},
    } | extra


def _subsample(n: int, max_points: int = 300) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, max_points)).round().astype(int))


@dataclass
class _Acc:
    """Collects the pieces of the LensResult while the analysis walks through the experiments."""

    estimates: list[Estimate]
    checks: list[Check]
    figures: list[Figure]
    tables: list[Table]
    notes: list[str]


def _analyze_noise(
    cfg: DistributedConfig, seed: int, outputs: Any, acc: _Acc
) -> tuple[dict[int, FloorEstimate], list[dict], list[DelayDistribution], list[dict]]:
    s = problem_seeds(seed)
    q = make_quadratic(cfg.dim, cfg.kappa, cfg.init_dist, s["quadratic"])
    init_sq = float(np.sum((q.theta0 - q.theta_star) ** 2))
    coords = q.eigvecs.T @ (q.theta0 - q.theta_star)
    floors: dict[int, FloorEstimate] = {}
    curve_traces: list[dict] = []
    bound_ok_all = []
    for m in sorted(cfg.workers):
        rec0 = task_records(outputs, f"noise_m{m}")[0]
        exact = theory.exact_stationary_floor(q.eigvals, cfg.eta, cfg.sigma2, m)
        bound = theory.theorem_floor(q.mu, cfg.eta, cfg.sigma2, m)
        fe = floor_estimate(rec0, 0, "sync", m, exact, bound, cfg.level)
        floors[m] = fe
        # Converged: at the end of burn-in the exact transient is < 1% of the floor, so the tail
        # average measures the stationary floor and not the decay towards it.
        left = (
            float(theory.exact_error_curve(q.eigvals, coords, cfg.eta, cfg.sigma2, m, np.array([cfg.burn_in]))[0])
            - exact
        )
        converged = left <= 0.01 * exact
        if not converged:
            warnings.warn(
                f"noise floor m={m}: after burn_in={cfg.burn_in} steps the transient is still {left / exact:.2%} of the floor; increase `burn_in`.",
                ConvergenceWarning,
                stacklevel=2,
            )
        acc.estimates.append(
            Estimate(
                f"noise_floor_m{m}",
                fe.value,
                fe.ci_low,
                fe.ci_high,
                fe.se,
                cfg.level,
                fe.method,
                fe.n,
                "squared parameter distance",
                converged=converged,
                n_iter=cfg.quad_steps,
            )
        )
        acc.checks.append(
            check_in_interval(
                f"noise_floor_exact_m{m}",
                exact,
                fe.ci_low,
                fe.ci_high,
                what=f"exact stationary floor for m={m} in the measured CI",
            )
        )
        acc.checks.append(
            Check(
                f"noise_floor_below_theorem_bound_m{m}",
                bool(fe.ci_low <= bound),
                fe.value,
                bound,
                None,
                f"measured floor {fe.value:.4g} (CI low {fe.ci_low:.4g}) {'<=' if fe.ci_low <= bound else '>'} bound eta*sigma^2/(mu*m) = {bound:.4g}",
            )
        )
        mean, lo, hi = curve_band(rec0, 0, cfg.level)
        steps = np.arange(mean.size)
        bound_curve = theory.theorem_bound_curve(steps, init_sq, q.mu, cfg.eta, cfg.sigma2, m)
        exceed = lo - bound_curve
        bound_ok_all.append((m, float(np.max(exceed)), int(np.argmax(exceed))))
        idx = _subsample(mean.size)
        exact_curve = theory.exact_error_curve(q.eigvals, coords, cfg.eta, cfg.sigma2, m, steps)
        curve_traces += [
            _trace(steps[idx], mean[idx], f"measured m={m}", "lines"),
            _trace(steps[idx], exact_curve[idx], f"exact E||e||^2 m={m}", "lines", line={"dash": "dash"}),
            _trace(steps[idx], bound_curve[idx], f"theorem bound m={m}", "lines", line={"dash": "dot"}),
        ]
    worst = max(bound_ok_all, key=lambda v: v[1])
    acc.checks.append(
        Check(
            "theorem_bound_holds_every_step",
            bool(worst[1] <= 0.0),
            worst[1],
            0.0,
            0.0,
            f"max over m and t of (measured CI low - (1-mu*eta)^t||e0||^2 - eta*sigma^2/(mu*m)) = {worst[1]:.3g} (m={worst[0]}, t={worst[2]})",
        )
    )
    acc.figures.append(
        Figure(
            "distributed_error_vs_steps",
            "E||theta_t - theta*||^2 vs steps: measured, exact, and the theorem's bound",
            curve_traces,
            _layout("step t", "E||theta_t - theta*||^2", ylog=True),
            f"Mean over {cfg.replicas} replicas of synchronous averaged SGD on a {cfg.dim}-d quadratic (kappa={cfg.kappa:g}, eta*L={cfg.eta_l:g}, sigma^2={cfg.sigma2:g} per worker).",
        )
    )
    # ratio floor(base)/floor(k), predicted k/base
    base = min(cfg.workers)
    ratios = []
    for k in sorted(cfg.workers):
        if k == base:
            continue
        fb, fk = floors[base], floors[k]
        r, lo, hi = ratio_ci(fb.value, fb.se, fk.value, fk.se, cfg.level)
        pred = k / base
        ratios.append({"k": k, "base": base, "ratio": _f(r), "ci_low": _f(lo), "ci_high": _f(hi), "predicted": pred})
        acc.estimates.append(
            Estimate(
                f"noise_floor_ratio_{k}",
                _f(r),
                _f(lo),
                _f(hi),
                None,
                cfg.level,
                "delta method on the log ratio of independent replica means",
                fb.n + fk.n,
                "ratio",
            )
        )
        acc.checks.append(
            check_in_interval(
                f"noise_floor_ratio_{k}", pred, _f(lo), _f(hi), what=f"floor(m={base})/floor(m={k}) contains {pred:g}"
            )
        )
    ms = sorted(floors)
    mgrid = np.linspace(min(ms), max(ms), 50)
    acc.figures.append(
        Figure(
            "distributed_noise_floor_vs_workers",
            "Noise floor vs number of workers",
            [
                _err_trace(
                    ms,
                    [floors[m].value for m in ms],
                    [floors[m].ci_low for m in ms],
                    [floors[m].ci_high for m in ms],
                    "measured (CI)",
                ),
                _trace(
                    mgrid,
                    [theory.exact_stationary_floor(q.eigvals, cfg.eta, cfg.sigma2, 1) / m for m in mgrid],
                    "exact (1/m)",
                    "lines",
                    line={"dash": "dash"},
                ),
                _trace(
                    mgrid,
                    [theory.theorem_floor(q.mu, cfg.eta, cfg.sigma2, 1) / m for m in mgrid],
                    "theorem bound",
                    "lines",
                    line={"dash": "dot"},
                ),
            ],
            _layout("workers m", "stationary E||theta - theta*||^2", xlog=True, ylog=True),
        )
    )
    # delays on the noisy quadratic, at modes_workers
    mw = cfg.modes_workers
    delay_rows: list[dict] = []
    dists: list[DelayDistribution] = []
    variants = noise_variants(cfg, True)
    recs = task_records(outputs, f"noise_m{mw}")
    if recs and len(variants) > 1:
        rec0 = recs[0]
        for i, v in enumerate(variants):
            tau = int(v.get("tau", 0))
            exact = (
                theory.delayed_stationary_floor(q.eigvals, cfg.eta, cfg.sigma2, mw, tau)
                if v["delay"] in ("none", "const")
                else None
            )
            fe = floor_estimate(
                rec0, i, v["name"], mw, exact, theory.theorem_floor(q.mu, cfg.eta, cfg.sigma2, mw), cfg.level
            )
            row = {
                "variant": v["name"],
                "workers": mw,
                "floor": fe.value,
                "ci_low": fe.ci_low,
                "ci_high": fe.ci_high,
                "exact": exact,
            }
            if v["delay"] not in ("none",):
                acc.estimates.append(
                    Estimate(
                        f"delayed_floor_{v['name']}", fe.value, fe.ci_low, fe.ci_high, fe.se, cfg.level, fe.method, fe.n
                    )
                )
            if v["delay"] == "const":
                acc.checks.append(
                    check_in_interval(
                        f"delayed_floor_exact_tau{tau}",
                        exact if exact is not None else math.nan,
                        fe.ci_low,
                        fe.ci_high,
                        what=f"Lyapunov floor with constant delay {tau} in the measured CI",
                    )
                )
            if v["delay"] in ("uniform", "geometric"):
                dd = delay_distribution(recs, i, v["delay"])
                dists.append(dd)
                row["delay_distribution"] = dd.to_dict()
            delay_rows.append(row)
    return floors, ratios, dists, delay_rows


def _analyze_parity(cfg: DistributedConfig, seed: int, outputs: Any, acc: _Acc) -> tuple[float | None, list[dict]]:
    s = problem_seeds(seed)
    ms = [m for m in sorted(cfg.workers) if m > 1]
    if not ms:
        acc.notes.append("parity not measured: no worker count above 1 in `workers`.")
        acc.estimates.append(Estimate("ddp_parity_max_abs_diff", None, note="needs a worker count >= 2"))
        return None, []
    ref = reference_sgd(cfg.mlp_widths, cfg.lr, cfg.parity_steps, cfg.parity_batch, s, seed)
    tol = 64 * EPS64 * cfg.parity_steps * max(1.0, float(np.max(np.abs(ref))))
    rows, ddp_like = [], []
    for m in ms:
        rec = task_records(outputs, f"parity_m{m}")[0]
        for name, params in rec["params"].items():
            diff = float(np.max(np.abs(np.asarray(params) - ref)))
            spread = float(rec["rank_spread"][name])
            rows.append({"workers": m, "variant": name, "max_abs_diff": diff, "rank_spread": spread, "tolerance": tol})
            if name in ("sync", "ddp"):
                ddp_like.append(diff)
    worst = max(rows, key=lambda r: r["max_abs_diff"])
    for name in sorted({r["variant"] for r in rows}):
        d = max(r["max_abs_diff"] for r in rows if r["variant"] == name)
        acc.checks.append(
            check_within(f"parity_{name}", d, 0.0, tol, what=f"{name} vs single-process SGD (float64, max over m)")
        )
    spread = max(r["rank_spread"] for r in rows)
    acc.checks.append(
        check_within("parity_replicas_identical", spread, 0.0, tol, what="max parameter difference between ranks")
    )
    value = max(ddp_like)
    acc.estimates.append(
        Estimate(
            "ddp_parity_max_abs_diff",
            value,
            method="deterministic float64 runs (no sampling error)",
            n=len(ddp_like),
            unit="parameter units",
            note=f"max over m in {ms} of gradient all-reduce and DDP vs torch.optim.SGD on the full global batch; worst variant overall {worst['variant']} ({worst['max_abs_diff']:.3g})",
        )
    )
    acc.tables.append(
        Table(
            "distributed_parity",
            "Parity with single-process large-batch SGD (float64)",
            ["workers", "variant", "max |diff|", "rank spread", "tolerance"],
            [[r["workers"], r["variant"], r["max_abs_diff"], r["rank_spread"], r["tolerance"]] for r in rows],
        )
    )
    return value, rows


def _warmup(steps: int) -> int:
    return min(5, steps // 5)


def _analyze_timing(
    cfg: DistributedConfig, seed: int, outputs: Any, acc: _Acc, cores: int
) -> tuple[dict[int, TimingSummary], RingFit | None, ComputeFit | None, dict[str, Any], int]:
    summaries = {
        m: timing_summary(task_records(outputs, f"sync_m{m}"), cfg.train_steps, _warmup(cfg.train_steps), cfg.level)
        for m in sorted(cfg.workers)
    }
    n_params = int(task_records(outputs, f"sync_m{min(cfg.workers)}")[0]["n_params"])
    grad_bytes = 4 * n_params
    ms_arr, ps, ts = comm_points(outputs, sorted(cfg.workers))
    ring: RingFit | None = None
    comm_ms = sorted({int(v) for v in ms_arr})
    # The ring model assumes every rank runs when its message arrives; with more ranks than cores
    # the scheduler adds delays the model has no term for, so it is fitted where it applies.
    fit_ms = [m for m in comm_ms if m <= cores] or comm_ms
    per_m: dict[int, RingFit] = {}
    for m in comm_ms:
        sel = ms_arr == m
        if np.unique(ps[sel]).size >= 2:
            per_m[m] = fit_ring_model(
                ms_arr[sel],
                ps[sel],
                ts[sel],
                derive_seed(seed, "ring-boot", m),
                n_boot=cfg.n_boot,
                level=cfg.level,
                quantile=cfg.comm_quantile,
            )
    opt_fit_note = f"pooled fit on m in {fit_ms} (m <= n_cores = {cores} where available)"
    if per_m:
        acc.tables.append(
            Table(
                "distributed_comm_fits",
                "Ring all-reduce model fitted per worker count (median of each size; bootstrap CIs)",
                ["workers", "latency s", "latency CI", "bandwidth B/s", "bandwidth CI", "R^2", "n"],
                [
                    [m, f.latency_s, list(f.latency_ci), f.bandwidth_Bps, list(f.bandwidth_ci), f.r2, f.n]
                    for m, f in per_m.items()
                ],
            )
        )
    sel_fit = np.isin(ms_arr, fit_ms)
    if ts[sel_fit].size >= 3 and np.unique(ps[sel_fit]).size >= 2:
        ring = fit_ring_model(
            ms_arr[sel_fit],
            ps[sel_fit],
            ts[sel_fit],
            derive_seed(seed, "ring-boot"),
            n_boot=cfg.n_boot,
            level=cfg.level,
            quantile=cfg.comm_quantile,
        )
        acc.notes.append(f"communication model: {opt_fit_note}; per-m fits are in the table distributed_comm_fits.")
        acc.estimates.append(
            Estimate(
                "comm_latency_s",
                ring.latency_s,
                ring.latency_ci[0],
                ring.latency_ci[1],
                None,
                cfg.level,
                ring.method,
                ring.n,
                "s",
            )
        )
        acc.estimates.append(
            Estimate(
                "comm_bandwidth_Bps",
                ring.bandwidth_Bps,
                ring.bandwidth_ci[0],
                ring.bandwidth_ci[1],
                None,
                cfg.level,
                ring.method,
                ring.n,
                "bytes/s",
                note="" if ring.bandwidth_Bps else "fitted slope not positive: bandwidth not resolved by these sizes",
            )
        )
        acc.checks.append(
            Check(
                "comm_model_fit_r2",
                bool(ring.r2 >= 0.5) if math.isfinite(ring.r2) else None,
                _f(ring.r2),
                0.5,
                None,
                f"ring model t = a + 2(m-1)/m*bytes/bw explains R^2 = {ring.r2:.3f} of the variance of the per-size {cfg.comm_quantile:g}-quantile all-reduce times (>= 0.5 wanted; timing on a shared machine)",
                severity="info",
            )
        )
        xs = 2 * (ms_arr - 1) / ms_arr * ps
        traces = []
        for m in sorted(set(ms_arr.astype(int).tolist())):
            sel = ms_arr == m
            traces.append(_trace(xs[sel], ts[sel], f"measured m={m}", "markers"))
        grid = np.linspace(0, xs.max(), 50)
        inv_bw = 0.0 if ring.bandwidth_Bps is None else 1.0 / ring.bandwidth_Bps
        traces.append(_trace(grid, ring.latency_s + grid * inv_bw, "fit a + x/bw", "lines", line={"dash": "dash"}))
        acc.figures.append(
            Figure(
                "distributed_comm_fit",
                "All-reduce time vs ring bytes per rank",
                traces,
                _layout("2(m-1)/m * bytes", "seconds"),
                f"Barrier-separated all-reduces; the line is fitted to the {cfg.comm_quantile:g}-quantile of each size on m in {fit_ms} (the all-reduce when every rank is running).",
            )
        )
    else:
        acc.notes.append("communication model not fitted: needs a worker count >= 2 and >= 2 message sizes.")
        acc.estimates.append(Estimate("comm_latency_s", None, note="needs a worker count >= 2"))
    compute: ComputeFit | None = None
    if len(summaries) >= 2:
        compute = fit_compute_model(
            {m: np.asarray(s.compute_samples) for m, s in summaries.items()},
            cores,
            derive_seed(seed, "compute-boot"),
            n_boot=cfg.n_boot,
            level=cfg.level,
        )
    base = min(summaries)
    sb = summaries[base]
    for m, s in summaries.items():
        acc.estimates.append(
            Estimate(
                f"step_time_m{m}",
                s.step.mean,
                s.step.ci_low,
                s.step.ci_high,
                s.step.se,
                cfg.level,
                s.step.method,
                s.step.n,
                "s",
            )
        )
        r, lo, hi = ratio_ci(sb.step.mean, sb.step.se, s.step.mean, s.step.se, cfg.level)
        acc.estimates.append(
            Estimate(
                f"speedup_m{m}",
                _f(r),
                _f(lo),
                _f(hi),
                None,
                cfg.level,
                f"delta method on the log ratio of step times (m={base} over m={m})",
                sb.step.n + s.step.n,
            )
        )
    measured_best = min(summaries, key=lambda m: summaries[m].step.mean)
    opt: dict[str, Any] = {"measured_best": measured_best, "n_cores": cores, "grad_bytes": grad_bytes}
    if compute is not None and (ring is not None or per_m):
        tested = sorted(summaries)

        def comm_for(m: int) -> RingFit | None:
            # the sweep's own fit at a measured m; the pooled fit only where its assumption holds
            return per_m.get(m) or (ring if m <= cores else None)

        cand = list(range(1, max(max(tested), cores) + 1))
        pred_all = {m: predicted_step_time(m, compute, comm_for(m), grad_bytes) for m in cand}
        pred_all = {m: v for m, v in pred_all.items() if v is not None}
        pred_best_any = min(pred_all, key=pred_all.get)  # type: ignore[arg-type]
        pred_tested = [m for m in tested if m in pred_all]
        pred_best_tested = min(pred_tested, key=lambda m: pred_all[m])
        opt |= {
            "predicted_best_tested": pred_best_tested,
            "predicted_best_any": pred_best_any,
            "predicted_step_time_s": {str(m): pred_all[m] for m in sorted(pred_all)},
        }
        acc.checks.append(
            Check(
                "optimal_workers_model_vs_measured",
                bool(pred_best_tested == measured_best),
                float(measured_best),
                float(pred_best_tested),
                0.0,
                f"compute model + all-reduce model (fitted to the separate size sweep) picks m={pred_best_tested} among {pred_tested}; "
                f"measured fastest training step at m={measured_best} (timing on a shared {cores}-core machine)",
                severity="info",
            )
        )
        # speedup figure: measured with CI, model, ideal
        sp = [
            ratio_ci(sb.step.mean, sb.step.se, summaries[m].step.mean, summaries[m].step.se, cfg.level) for m in tested
        ]
        xs_model = sorted(pred_all)
        acc.figures.append(
            Figure(
                "distributed_speedup",
                "Speedup vs workers (fixed global batch): measured and the fitted compute+communication model",
                [
                    _err_trace(tested, [v[0] for v in sp], [v[1] for v in sp], [v[2] for v in sp], "measured (CI)"),
                    _trace(
                        xs_model,
                        [pred_all[base] / pred_all[m] if base in pred_all else None for m in xs_model],
                        f"model (n_cores={cores})",
                        "lines+markers",
                        line={"dash": "dash"},
                    ),
                    _trace(xs_model, [m / base for m in xs_model], "ideal linear", "lines", line={"dash": "dot"}),
                ],
                _layout("workers m", f"speedup over m={base}"),
                f"Model: compute (c0 + c1/m)*max(1, m/{cores}) fitted to the measured compute, plus the ring all-reduce fitted to the size sweep at each measured m (pooled fit on m in {fit_ms} for unmeasured m <= {cores}; no prediction for unmeasured m > {cores}).",
            )
        )
    else:
        acc.notes.append("optimal worker count not predicted: needs >= 2 worker counts including one >= 2.")
    # timing breakdown bars
    labels = [str(m) for m in summaries]
    acc.figures.append(
        Figure(
            "distributed_time_breakdown",
            "Per-step time per worker count: compute, idle (waiting for the slowest rank), communication",
            [
                {"type": "bar", "name": "compute", "x": labels, "y": [_f(s.compute.mean) for s in summaries.values()]},
                {"type": "bar", "name": "idle", "x": labels, "y": [_f(s.idle.mean) for s in summaries.values()]},
                {"type": "bar", "name": "comm", "x": labels, "y": [_f(s.comm.mean) for s in summaries.values()]},
            ],
            _layout("workers m", "seconds per step")
            | {"barmode": "stack", "xaxis": {"title": {"text": "workers m"}, "type": "category"}},
        )
    )
    opt["comm_fit_workers"] = fit_ms
    opt["comm_model_per_workers"] = {str(m): f.to_dict() for m, f in per_m.items()}
    return summaries, ring, compute, opt, grad_bytes


def _analyze_modes(cfg: DistributedConfig, outputs: Any, acc: _Acc) -> tuple[float | None, list[dict], list[dict]]:
    base = min(cfg.workers)
    rec_base = task_records(outputs, f"sync_m{base}")[0]
    if cfg.target_loss > 0:
        target, how = cfg.target_loss, "configured"
    else:
        target, how = (
            loss_at_step(rec_base, cfg.train_steps // 2),
            f"loss of synchronous SGD (m={base}) at step {cfg.train_steps // 2}",
        )
    runs: list[tuple[str, str, int, list[dict]]] = [
        (f"sync m={m}", f"sync_m{m}", m, task_records(outputs, f"sync_m{m}")) for m in sorted(cfg.workers)
    ]
    runs += [
        (
            r["label"] + f" (m={cfg.modes_workers}, non-IID)",
            f"mode{i}",
            cfg.modes_workers,
            task_records(outputs, f"mode{i}"),
        )
        for i, r in enumerate(modes_runs(cfg))
    ]
    rows = []
    tr_steps, tr_time = [], []
    for label, name, m, recs in runs:
        steps, times, losses = eval_curve(recs[0])
        ttt, lo, hi = time_to_target(times, losses, target) if target is not None else (None, None, None)
        moved = float(np.mean([np.sum(r["log"]["moved_bytes"]) for r in recs]))
        row = {
            "run": label,
            "task": name,
            "workers": m,
            "final_loss": losses[-1] if losses else None,
            "time_to_target_s": ttt,
            "time_to_target_bracket": [lo, hi],
            "timed_wall_s": float(np.mean([r["wall_timed_s"] for r in recs])),
            "bytes_sent_per_rank": moved,
            "collectives": len(recs[0]["log"]["step"]),
        }
        if "delays" in recs[0]:
            row["realized_delays"] = list(np.sum([r["delays"]["realized"] for r in recs], axis=0).astype(int).tolist())
        rows.append(row)
        tr_steps.append(_trace(steps, losses, label))
        tr_time.append(_trace(times, losses, label))
        if ttt is not None:
            acc.estimates.append(
                Estimate(
                    f"time_to_target_{name}",
                    ttt,
                    lo,
                    hi,
                    None,
                    1.0,
                    "bracketed by consecutive evaluations (timed seconds, evaluation excluded)",
                    1,
                    "s",
                )
            )
        else:
            acc.estimates.append(
                Estimate(f"time_to_target_{name}", None, note=f"{label} never reached the target loss {target}")
            )
    tgt_line = {
        "type": "scatter",
        "mode": "lines",
        "name": "target loss",
        "x": [0, cfg.train_steps],
        "y": [_f(target), _f(target)],
        "line": {"dash": "dot"},
    }
    acc.figures.append(
        Figure(
            "distributed_loss_vs_steps",
            "Training loss (full digits training set) vs steps, per mode and worker count",
            tr_steps + [tgt_line],
            _layout("step", "cross-entropy", ylog=True),
        )
    )
    tmax = max((max(eval_curve(r[3][0])[1] or [0.0]) for r in runs), default=1.0)
    acc.figures.append(
        Figure(
            "distributed_loss_vs_time",
            "Training loss vs timed wall-clock seconds (evaluation excluded)",
            tr_time + [tgt_line | {"x": [0, tmax]}],
            _layout("seconds", "cross-entropy", ylog=True),
        )
    )
    acc.tables.append(
        Table(
            "distributed_modes",
            f"Training modes: time to target loss {target if target is None else round(target, 4)} ({how})",
            ["run", "final loss", "time to target s", "timed wall s", "bytes sent per rank", "collectives"],
            [
                [
                    r["run"],
                    r["final_loss"],
                    r["time_to_target_s"],
                    r["timed_wall_s"],
                    r["bytes_sent_per_rank"],
                    r["collectives"],
                ]
                for r in rows
            ],
        )
    )
    # timing of each mode (compute / idle / comm) at modes_workers
    mode_timing = []
    for i, r in enumerate(modes_runs(cfg)):
        ts = timing_summary(task_records(outputs, f"mode{i}"), cfg.train_steps, _warmup(cfg.train_steps), cfg.level)
        mode_timing.append(
            {"run": r["label"], **{k: ts.to_dict()[k] for k in ("compute", "comm", "idle", "step", "bytes_per_step")}}
        )
    return target, rows, mode_timing


def _analyze_drift(cfg: DistributedConfig, seed: int, outputs: Any, acc: _Acc) -> list[dict]:
    s = problem_seeds(seed)
    shards = make_least_squares_shards(cfg.dim, cfg.modes_workers, cfg.rows_per_worker, cfg.heterogeneity, s["shards"])
    eta = drift_eta(cfg, seed)
    rec0 = task_records(outputs, "local_drift")[0]
    rows = drift_rows(rec0, shards, eta, cfg.drift_steps)
    slow = [r for r in rows if not r.converged]
    if slow:
        worst_c = max(r.contraction for r in slow)
        warnings.warn(
            f"local SGD did not reach its fixed point in drift_steps={cfg.drift_steps} (a factor {worst_c:.2g} of the start is left); "
            "the measured drift includes that transient. Increase `drift_steps`.",
            ConvergenceWarning,
            stacklevel=2,
        )
        acc.notes.append(
            f"local-SGD drift runs not converged (contraction {worst_c:.2g} > 1e-3): increase drift_steps."
        )
    scale = max(1.0, float(np.max(np.abs(shards.theta_star))))
    tol = 1e3 * EPS64 * cfg.drift_steps * scale
    worst = max(r.max_abs_diff_vs_exact for r in rows)
    acc.checks.append(
        check_within(
            "local_sgd_matches_exact_iterate",
            worst,
            0.0,
            tol,
            what="max |local-SGD iterate - exact affine-map iterate| over (h, K)",
        )
    )
    k1 = [r for r in rows if r.k == 1]
    finals = {(lev, k): np.asarray(th) for (lev, k), th in zip(rec0["combos"], rec0["final"])}
    if k1:
        d = max(float(np.max(np.abs(finals[(r.heterogeneity, 1)] - finals[(r.heterogeneity, 0)]))) for r in k1)
        acc.checks.append(
            check_within(
                "local_sgd_k1_equals_sync",
                d,
                0.0,
                tol,
                what="local SGD with K=1 vs gradient all-reduce (final parameters)",
            )
        )
    local = [r for r in rows if r.k > 0]
    hmax = max(cfg.heterogeneity)
    ks = sorted({r.k for r in local})
    by_k = [next(r for r in local if r.k == k and r.heterogeneity == hmax).measured for k in ks]
    ok_k = all(b >= a * (1 - 1e-9) for a, b in zip(by_k, by_k[1:]))
    acc.checks.append(
        Check(
            "local_sgd_drift_grows_with_k",
            bool(ok_k) if len(ks) > 1 else None,
            by_k[-1],
            by_k[0],
            None,
            f"at heterogeneity {hmax:g}, ||theta_bar - theta*||^2 over K={ks}: {[f'{v:.3g}' for v in by_k]}",
        )
    )
    kmax = max(ks)
    hs = sorted(cfg.heterogeneity)
    by_h = [next(r for r in local if r.k == kmax and r.heterogeneity == h).measured for h in hs]
    ok_h = all(b >= a * (1 - 1e-9) for a, b in zip(by_h, by_h[1:]))
    acc.checks.append(
        Check(
            "local_sgd_drift_grows_with_heterogeneity",
            bool(ok_h) if len(hs) > 1 else None,
            by_h[-1],
            by_h[0],
            None,
            f"at K={kmax}, ||theta_bar - theta*||^2 over heterogeneity {hs}: {[f'{v:.3g}' for v in by_h]}",
        )
    )
    traces = []
    for h in hs:
        sel = sorted((r for r in local if r.heterogeneity == h), key=lambda r: r.k)
        traces.append(_trace([r.k for r in sel], [r.measured for r in sel], f"measured h={h:g}", "markers"))
        traces.append(
            _trace(
                [r.k for r in sel],
                [r.asymptotic for r in sel],
                f"exact fixed-point drift h={h:g}",
                "lines",
                line={"dash": "dash"},
            )
        )
    acc.figures.append(
        Figure(
            "distributed_local_sgd_drift",
            "Local-SGD drift ||theta_bar - theta*||^2 vs K and heterogeneity",
            traces,
            _layout("local steps K", "||theta_bar - theta*||^2", xlog=True, ylog=True),
        )
    )
    acc.tables.append(
        Table(
            "distributed_drift",
            "Local SGD on non-IID least squares (noise-free, float64; K=0 is gradient all-reduce)",
            [
                "heterogeneity",
                "K",
                "measured",
                "exact iterate",
                "fixed-point drift",
                "bytes sent",
                "converged",
                "n_iter",
            ],
            [
                [r.heterogeneity, r.k, r.measured, r.predicted, r.asymptotic, r.bytes_sent, r.converged, r.n_iter]
                for r in rows
            ],
        )
    )
    return [r.to_dict() for r in rows]


def _analyze_staleness(cfg: DistributedConfig, outputs: Any, acc: _Acc) -> dict[str, Any]:
    eta = cfg.stale_eta_l / max(cfg.stale_kappas)
    rows = stale_rows(task_records(outputs, "staleness")[0], eta, cfg.dim, cfg.stale_steps)
    cls = [r for r in rows if r.classifiable and r.measured_rate is not None]
    agree = all(r.measured_stable == r.predicted_stable for r in cls)
    acc.checks.append(
        Check(
            "staleness_stability_matches_theory",
            bool(agree) if cls else None,
            float(sum(r.measured_stable == r.predicted_stable for r in cls)),
            float(len(cls)),
            0.0,
            f"{sum(r.measured_stable == r.predicted_stable for r in cls)}/{len(cls)} (kappa, tau) runs away from the boundary agree with the companion-matrix spectral radius",
        )
    )
    errs = [abs(r.measured_rate - r.predicted_rate) - (0.1 * abs(r.predicted_rate) + 0.01) for r in cls]  # type: ignore[operator]
    worst = max(errs) if errs else math.nan
    acc.checks.append(
        Check(
            "staleness_rate_matches_theory",
            bool(worst <= 0) if errs else None,
            _f(worst),
            0.0,
            None,
            f"max over runs of |measured - predicted ln-rate| - (0.1*|predicted| + 0.01) = {worst:.3g} (<= 0 wanted)",
        )
    )
    table = []
    tol_rows = []
    for kappa in cfg.stale_kappas:
        sel = sorted((r for r in rows if r.kappa == kappa), key=lambda r: r.tau)
        lm = theory.max_stable_delay(eta * kappa)
        meas = max((r.tau for r in sel if r.measured_stable), default=-1)
        pred_grid = max((r.tau for r in sel if r.predicted_stable), default=-1)
        tol_rows.append(
            {
                "kappa": kappa,
                "eta_l": eta * kappa,
                "levin_may_tau_max": lm,
                "predicted_max_stable_grid_tau": pred_grid,
                "measured_max_stable_grid_tau": meas,
            }
        )
        table += [
            [
                r.kappa,
                r.tau,
                r.eta_l,
                r.measured_rate,
                r.predicted_rate,
                r.measured_stable,
                r.predicted_stable,
                r.classifiable,
            ]
            for r in sel
        ]
    ok_tol = all(t["measured_max_stable_grid_tau"] == t["predicted_max_stable_grid_tau"] for t in tol_rows)
    acc.checks.append(
        Check(
            "tolerable_staleness_vs_kappa",
            bool(ok_tol),
            None,
            None,
            None,
            "largest stable delay in the grid per kappa, measured vs predicted: "
            + "; ".join(
                f"kappa={t['kappa']:g}: {t['measured_max_stable_grid_tau']} vs {t['predicted_max_stable_grid_tau']} (Levin-May tau_max {t['levin_may_tau_max']})"
                for t in tol_rows
            ),
        )
    )
    traces = []
    for kappa in cfg.stale_kappas:
        sel = sorted((r for r in rows if r.kappa == kappa), key=lambda r: r.tau)
        traces.append(
            _trace([r.tau for r in sel], [r.measured_rate for r in sel], f"measured kappa={kappa:g}", "markers")
        )
        traces.append(
            _trace(
                [r.tau for r in sel],
                [r.predicted_rate for r in sel],
                f"predicted kappa={kappa:g}",
                "lines",
                line={"dash": "dash"},
            )
        )
    acc.figures.append(
        Figure(
            "distributed_staleness_rate",
            "Delayed GD: ln-rate per step of ||theta_t - theta*|| vs delay (> 0 diverges)",
            traces,
            _layout("delay tau", "ln rate per step"),
        )
    )
    kgrid = np.geomspace(1.0, max(cfg.stale_kappas) * 2, 60)
    acc.figures.append(
        Figure(
            "distributed_tolerable_staleness",
            "Tolerable staleness vs condition number at a fixed step size",
            [
                _trace(
                    kgrid,
                    [theory.max_stable_delay(eta * k, cap=10_000) for k in kgrid],
                    "Levin-May tau_max(eta*L)",
                    "lines",
                ),
                _trace(
                    [t["kappa"] for t in tol_rows],
                    [t["measured_max_stable_grid_tau"] for t in tol_rows],
                    "measured (largest stable grid tau)",
                    "markers",
                ),
            ],
            _layout("condition number kappa (mu = 1)", "largest stable delay", xlog=True),
            f"eta = {eta:.4g} for every kappa; L = kappa, so eta*L grows with kappa and the tolerable delay shrinks.",
        )
    )
    acc.tables.append(
        Table(
            "distributed_staleness",
            "Delayed GD on diagonal quadratics (noise-free)",
            [
                "kappa",
                "tau",
                "eta*L",
                "measured ln-rate",
                "predicted ln-rate",
                "measured stable",
                "predicted stable",
                "classifiable",
            ],
            table,
        )
    )
    return {"eta": eta, "rows": [r.to_dict() for r in rows], "tolerable": tol_rows}


def _analyze_straggler(
    cfg: DistributedConfig, outputs: Any, acc: _Acc, summaries: dict[int, TimingSummary]
) -> dict[str, Any] | None:
    recs = task_records(outputs, "straggler")
    if not recs:
        return None
    ts = timing_summary(recs, cfg.straggler_steps, min(2, cfg.straggler_steps // 4), cfg.level)
    slow = cfg.modes_workers - 1
    others = [v for r, v in enumerate(ts.per_rank_idle_s) if r != slow]
    extra = float(np.mean(others))
    baseline = summaries.get(cfg.modes_workers)
    base_idle = float(np.mean(baseline.per_rank_idle_s)) if baseline else 0.0
    acc.estimates.append(
        Estimate(
            "straggler_idle_s",
            extra,
            None,
            None,
            None,
            cfg.level,
            "mean per-step idle of the non-straggler ranks",
            ts.n_steps,
            "s",
            note="mean over the non-straggler ranks of one run; per-rank values are in the data",
        )
    )
    extra_idle = extra - base_idle
    acc.checks.append(
        Check(
            "straggler_idle_matches_sleep",
            bool(abs(extra_idle - cfg.straggler_sleep_s) <= 0.5 * cfg.straggler_sleep_s),
            extra_idle,
            cfg.straggler_sleep_s,
            0.5 * cfg.straggler_sleep_s,
            f"extra idle of the other ranks {extra_idle:.4g} s vs the straggler's sleep {cfg.straggler_sleep_s:g} s (relative tolerance 0.5; timing on a shared machine)",
            severity="info",
        )
    )
    return {
        "slow_rank": slow,
        "sleep_s": cfg.straggler_sleep_s,
        "per_rank_idle_s": list(ts.per_rank_idle_s),
        "per_rank_compute_s": list(ts.per_rank_compute_s),
        "step_time_s": ts.step.mean,
        "baseline_step_time_s": baseline.step.mean if baseline else None,
        "baseline_idle_s": base_idle,
    }


def _analyze_faults(cfg: DistributedConfig, events: list[FaultEvent], acc: _Acc) -> list[dict]:
    out = []
    for ev in events:
        latency_ok = ev.detect_latency_s is not None and ev.detect_latency_s <= ev.timeout_s + 2.0
        acc.checks.append(
            Check(
                f"fault_{ev.kind}_detected",
                bool(ev.detected and latency_ok),
                _f(ev.detect_latency_s),
                ev.timeout_s,
                2.0,
                f"{ev.kind}: survivors {'detected' if ev.detected else 'did NOT detect'} the failure; latency {ev.detect_latency_s} s vs timeout {ev.timeout_s} s (+2 s slack)",
            )
        )
        acc.checks.append(
            Check(
                f"fault_{ev.kind}_no_leftover_processes",
                not ev.leftover_pids,
                float(len(ev.leftover_pids)),
                0.0,
                0.0,
                f"{ev.kind}: {len(ev.leftover_pids)} processes left after cleanup (pids and process groups checked)",
            )
        )
        acc.checks.append(
            Check(
                f"fault_{ev.kind}_clean_exits",
                ev.clean_exits,
                None,
                None,
                None,
                f"{ev.kind}: exit codes {list(ev.exit_codes)} = {list(ev.exit_meanings)}",
            )
        )
        acc.notes.append(f"fault event: {ev.summary}")
        out.append(ev.to_dict() | {"summary": ev.summary})
    if events:
        acc.tables.append(
            Table(
                "distributed_faults",
                "Injected faults",
                [
                    "kind",
                    "victim",
                    "step",
                    "detected",
                    "latency s",
                    "error",
                    "exit codes",
                    "killed by launcher",
                    "leftover",
                ],
                [
                    [
                        e.kind,
                        e.victim_rank,
                        e.fault_step,
                        e.detected,
                        e.detect_latency_s,
                        e.error,
                        list(e.exit_codes),
                        list(e.killed_by_launcher),
                        list(e.leftover_pids),
                    ]
                    for e in events
                ],
            )
        )
    return out


def _recommendations(
    cfg: DistributedConfig,
    summaries: dict[int, TimingSummary],
    opt: dict[str, Any],
    ratios: list[dict],
    modes: list[dict],
    drift: list[dict],
    stale: dict[str, Any],
    events: list[FaultEvent],
) -> tuple[list[str], int | None]:
    recs = []
    base = min(summaries)
    best = opt["measured_best"]
    sb, sm = summaries[base], summaries[best]
    r, lo, hi = ratio_ci(sb.step.mean, sb.step.se, sm.step.mean, sm.step.se, cfg.level)
    model = (
        f"; the fitted compute+communication model predicts m={opt['predicted_best_tested']} among the tested counts (m={opt['predicted_best_any']} among {sorted(map(int, opt['predicted_step_time_s']))})"
        if "predicted_best_tested" in opt
        else ""
    )
    recs.append(
        f"Workers: m={best} gives the shortest measured step for this model on this {opt['n_cores']}-core machine ({sm.step.mean:.3g} s/step, speedup {r:.2f} [{lo:.2f}, {hi:.2f}] over m={base}){model}."
    )
    for row in ratios:
        recs.append(
            f"Noise: averaging over {row['k']} workers cut the SGD noise floor by {row['ratio']:.2f}x [{row['ci_low']:.2f}, {row['ci_high']:.2f}] (theory: {row['predicted']:g}x); data parallelism buys a lower floor at a fixed step size, not only throughput."
        )
    best_k = None
    cand = [(row, 1) for row in modes if row["task"] == "mode0"]  # synchronous on the same shards
    local_ks = [k for k in cfg.mlp_local_steps if k > 1]
    cand += [(row, k) for row, k in zip([row for row in modes if "local K=" in row["run"]], local_ks)]
    reached = [(row["time_to_target_s"], k) for row, k in cand if row["time_to_target_s"] is not None]
    hmax = max(cfg.heterogeneity)
    drift_h = sorted((d for d in drift if d["heterogeneity"] == hmax and d["k"] > 0), key=lambda d: d["k"])

    def small(v: float) -> str:  # K = 1 has no drift; its value is rounding error
        return "0 (rounding)" if abs(v) < 1e3 * EPS64 else f"{v:.2g}"

    drift_txt = (
        f"; on the non-IID quadratic (h={hmax:g}) the drift grows from {small(drift_h[0]['asymptotic'])} at K={drift_h[0]['k']} to {small(drift_h[-1]['asymptotic'])} at K={drift_h[-1]['k']}"
        if drift_h
        else ""
    )
    if reached:
        t_best, best_k = min(reached)
        sync_t = next((row["time_to_target_s"] for row, k in cand if k == 1), None)
        recs.append(
            f"Local SGD: K={best_k} reached the target loss fastest ({t_best:.3g} s; synchronous: {sync_t if sync_t is None else f'{sync_t:.3g} s'}) at m={cfg.modes_workers} with heterogeneity {cfg.mlp_heterogeneity:g}{drift_txt}."
        )
    else:
        recs.append(
            f"Local SGD: no K in {[1] + local_ks} reached the target loss within {cfg.train_steps} steps{drift_txt}."
        )
    for t in stale["tolerable"]:
        recs.append(
            f"Staleness: at eta*L={t['eta_l']:.3g} (kappa={t['kappa']:g}) delays up to tau={t['measured_max_stable_grid_tau']} were stable (Levin-May bound {t['levin_may_tau_max']}); bound the staleness below it or shrink eta by about 1/(tau+1)."
        )
    hang = [e for e in events if e.kind == "hang" and e.detect_latency_s is not None]
    if hang:
        recs.append(
            f"Faults: a hung worker was detected after {hang[0].detect_latency_s:.3g} s with a {hang[0].timeout_s:g} s collective timeout; keep explicit timeouts on every process group."
        )
    return recs, best_k


def analyze_outputs(
    config: DistributedConfig,
    seed: int,
    outputs: tuple[dict[str, Any] | None, ...],
    events: list[FaultEvent],
    launch_info: dict[str, Any] | None = None,
) -> LensResult:
    """Turn the workers' records (and fault events) into the lens result."""
    cfg = config
    acc = _Acc([], [], [], [], [])
    cores = n_cores(cfg)
    floors, ratios, dists, delay_rows = _analyze_noise(cfg, seed, outputs, acc)
    parity, parity_rows = _analyze_parity(cfg, seed, outputs, acc)
    summaries, ring, compute, opt, grad_bytes = _analyze_timing(cfg, seed, outputs, acc, cores)
    target, modes, mode_timing = _analyze_modes(cfg, outputs, acc)
    drift = _analyze_drift(cfg, seed, outputs, acc)
    stale = _analyze_staleness(cfg, outputs, acc)
    straggler = _analyze_straggler(cfg, outputs, acc, summaries)
    faults = _analyze_faults(cfg, events, acc)
    for dd in dists:
        acc.checks.append(
            Check(
                "delay_bounded",
                bool(len(dd.realized_counts) - 1 <= dd.tau_max),
                float(len(dd.realized_counts) - 1),
                float(dd.tau_max),
                0.0,
                f"every applied delay <= tau_max = {dd.tau_max} (bounded staleness)",
            )
        )
        acc.checks.append(
            Check(
                "delay_distribution_matches_stated",
                None if dd.chi2_pvalue is None else bool(dd.chi2_pvalue >= 1e-3),
                dd.chi2_pvalue,
                1e-3,
                None,
                f"chi-square goodness of fit of {dd.n} realized delays to the stated {dd.kind} pmf: p = {dd.chi2_pvalue}",
                severity="info",
            )
        )
        n = max(sum(dd.window_counts), 1)
        acc.figures.append(
            Figure(
                "distributed_delay_distribution",
                f"Realized delay distribution ({dd.kind}, tau_max={dd.tau_max})",
                [
                    {
                        "type": "bar",
                        "name": "realized",
                        "x": list(range(dd.tau_max + 1)),
                        "y": [c / n for c in dd.window_counts],
                    },
                    {"type": "bar", "name": "stated pmf", "x": list(range(dd.tau_max + 1)), "y": list(dd.pmf)},
                ],
                _layout("delay tau (steps)", "probability") | {"barmode": "group"},
                f"{dd.n} delays drawn by the workers' delay buffers on the noisy quadratic.",
            )
        )
    per_workers = []
    base = min(summaries)
    modes_by_task = {row["task"]: row for row in modes}
    for m in sorted(cfg.workers):
        s, fe = summaries[m], floors[m]
        r, lo, hi = ratio_ci(summaries[base].step.mean, summaries[base].step.se, s.step.mean, s.step.se, cfg.level)
        per_workers.append(
            {
                "workers": m,
                "noise_floor": _f(fe.value),
                "noise_floor_ci_low": _f(fe.ci_low),
                "noise_floor_ci_high": _f(fe.ci_high),
                "predicted_noise_floor": _f(fe.exact),
                "noise_floor_bound": _f(fe.bound),
                "step_compute_s": _f(s.compute.mean),
                "step_comm_s": _f(s.comm.mean),
                "step_idle_s": _f(s.idle.mean),
                "step_time_s": _f(s.step.mean),
                "step_time_ci": [_f(s.step.ci_low), _f(s.step.ci_high)],
                "speedup": _f(r),
                "speedup_ci_low": _f(lo),
                "speedup_ci_high": _f(hi),
                "efficiency": _f(r * base / m) if _f(r) is not None else None,
                "bytes_per_step": s.bytes_per_step,
                "time_to_target_s": modes_by_task[f"sync_m{m}"]["time_to_target_s"],
                "predicted_step_time_s": _f(opt.get("predicted_step_time_s", {}).get(str(m))),
                "per_rank_compute_s": list(s.per_rank_compute_s),
                "per_rank_comm_s": list(s.per_rank_comm_s),
                "per_rank_idle_s": list(s.per_rank_idle_s),
                "load_average_1m": task_records(outputs, f"sync_m{m}")[0].get("load_average_1m"),
            }
        )
    acc.tables.insert(
        0,
        Table(
            "distributed_per_workers",
            "Per worker count: noise floor (quadratic) and step timing (MLP, fixed global batch)",
            [
                "workers",
                "noise floor",
                "CI low",
                "CI high",
                "exact floor",
                "bound",
                "compute s",
                "comm s",
                "idle s",
                "speedup",
            ],
            [
                [
                    p["workers"],
                    p["noise_floor"],
                    p["noise_floor_ci_low"],
                    p["noise_floor_ci_high"],
                    p["predicted_noise_floor"],
                    p["noise_floor_bound"],
                    p["step_compute_s"],
                    p["step_comm_s"],
                    p["step_idle_s"],
                    p["speedup"],
                ]
                for p in per_workers
            ],
        ),
    )
    recs, best_k = _recommendations(cfg, summaries, opt, ratios, modes, drift, stale, events)
    cores_ok = max(cfg.workers) <= cores
    eta_ok = cfg.eta_l <= 1.0
    assumptions = (
        Assumption(
            "F is mu-strongly convex and L-smooth with known mu, L (quadratic with spectrum linspace(1/kappa, 1))",
            "seed line 172",
            "noise_floor_exact_m1",
            "holds",
        ),
        Assumption("constant step 0 < eta <= 1/L", "seed line 172", "", "holds" if eta_ok else "violated"),
        Assumption(
            "worker gradients unbiased with variance sigma^2, independent across workers and steps (synthetic Gaussian, seeded per rank)",
            "seed line 172",
            "noise_floor_ratio",
            "holds",
        ),
        Assumption(
            "equal shard sizes, so the mean of shard gradients is the global gradient",
            "data-parallel SGD",
            "parity_sync",
            "holds",
        ),
        Assumption(
            "all-reduce time follows the ring model a + 2(m-1)/m * bytes / bandwidth",
            "Patarasuk & Yuan 2009",
            "comm_model_fit_r2",
            "unchecked" if ring is None else ("holds" if ring.r2 >= 0.5 else "violated"),
        ),
        Assumption(
            f"one CPU core per worker (n_cores = {cores}, max workers = {max(cfg.workers)})",
            "compute model",
            "",
            "holds" if cores_ok else "violated",
        ),
    )
    if not cores_ok:
        acc.notes.append(
            f"{max(cfg.workers)} workers share {cores} cores: the machine is oversubscribed, so speedup beyond m={cores} is not expected; it is measured and reported as is."
        )
    q = make_quadratic(cfg.dim, cfg.kappa, cfg.init_dist, problem_seeds(seed)["quadratic"])
    predictions = {
        "noise_floor_exact": {
            str(m): theory.exact_stationary_floor(q.eigvals, cfg.eta, cfg.sigma2, m) for m in cfg.workers
        },
        "noise_floor_bound": {str(m): theory.theorem_floor(q.mu, cfg.eta, cfg.sigma2, m) for m in cfg.workers},
        "noise_floor_ratio": {str(r["k"]): r["predicted"] for r in ratios},
        "floor_formula": "E||e||^2 = sum_i eta*sigma^2 / (d*m*lam_i*(2 - eta*lam_i)), sigma^2 = total noise variance E||xi||^2 per worker",
        "mu": q.mu,
        "L": q.lipschitz,
        "eta": cfg.eta,
        "levin_may": "x_{t+1} = x_t - a x_{t-tau} stable iff 0 < a < 2 cos(tau*pi/(2 tau + 1))",
    }
    metrics = {
        "parity_max_abs_diff": parity,
        **{f"noise_floor_ratio_{r['k']}": r["ratio"] for r in ratios},
        "best_workers": opt["measured_best"],
        "predicted_best_workers": opt.get("predicted_best_tested"),
        "comm_latency_s": ring.latency_s if ring else None,
        "comm_bandwidth_Bps": ring.bandwidth_Bps if ring else None,
        "best_local_steps": best_k,
        "faults_detected_fraction": (sum(e.detected for e in events) / len(events)) if events else None,
    }
    data = {
        "schema_version": 1,
        "config_hash": config_hash(cfg),
        "seed": seed,
        "ddp_parity_max_abs_diff": _f(parity),
        "parity": parity_rows,
        "per_workers": per_workers,
        "noise_floor_ratio": ratios,
        "delayed_noise_floors": delay_rows,
        "delay_distribution": [d.to_dict() for d in dists],
        "local_sgd_drift": drift,
        "staleness": stale,
        "comm_model": ring.to_dict() if ring else None,
        "compute_model": compute.to_dict() if compute else None,
        "optimal_workers": opt,
        "target_loss": _f(target),
        "modes": modes,
        "mlp_partition_label_counts": [r.get("label_counts") for r in task_records(outputs, "mode0")],
        "mode_timing": mode_timing,
        "straggler": straggler,
        "faults": faults,
        "recommendations": recs,
        "metrics": {k: _f(v) for k, v in metrics.items()},
        "machine": {"n_cores": cores, "backend": (outputs[0] or {}).get("backend") if outputs else None},
        "launch": launch_info or {},
    }
    if launch_info is not None:
        clean = not launch_info.get("main_launch_leftover_pids") and all(
            c == 0 for c in launch_info.get("main_launch_exit_codes", [])
        )
        acc.checks.append(
            Check(
                "main_launch_clean_shutdown",
                bool(clean),
                None,
                None,
                None,
                f"main launch exit codes {launch_info.get('main_launch_exit_codes')}, leftover pids {launch_info.get('main_launch_leftover_pids')}",
            )
        )
    return LensResult(
        lens=LENS,
        estimates=tuple(acc.estimates),
        checks=tuple(acc.checks),
        figures=tuple(
            Figure(f.key, f.title, _json_clean(f.data), _json_clean(f.layout), f.caption) for f in acc.figures
        ),
        tables=tuple(Table(t.key, t.title, list(t.columns), _json_clean(t.rows), t.caption) for t in acc.tables),
        assumptions=assumptions,
        predictions=predictions,
        data=_json_clean(data),
        notes=tuple(acc.notes),
    )


def _json_clean(obj: Any) -> Any:
    """Plain JSON types only: numpy scalars to Python, non-finite floats to None, tuples to lists."""
    if isinstance(obj, dict):
        return {str(k): _json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_clean(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return _f(obj)
    return obj
