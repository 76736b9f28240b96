"""The parts that train the subject: parity, timing, training modes, and injected faults.

Timing values change from run to run; every estimate, check, metric, trace and data key that
holds one is named with "timing" (or "latency", "speedup", ...). Tables, notes, assumptions and
recommendations carry computed (reproducible) numbers only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from multilens.lenses.distributed.analysis import (
    TimingSummary,
    comm_points,
    eval_curve,
    loss_at_step,
    reference_sgd,
    task_records,
    timing_summary,
)
from multilens.lenses.distributed.common import EPS64, err_trace, f, layout, trace
from multilens.lenses.distributed.faults import FaultEvent, summarize_fault
from multilens.lenses.distributed.jobs import fault_job, modes_runs, parity_tasks
from multilens.lenses.distributed.launch import launch
from multilens.lenses.distributed.modes import is_sync_step
from multilens.lenses.distributed.settings import (
    FaultSettings,
    ModesSettings,
    ParitySettings,
    Settings,
    TimingSettings,
)
from multilens.lenses.distributed.timing import (
    RingFit,
    fit_compute_model,
    fit_ring_model,
    predicted_step_time,
    ratio_ci,
    time_to_target,
)
from multilens.results import (
    Assumption,
    Check,
    Estimate,
    Figure,
    Part,
    Recommendation,
    Table,
    check_within,
    metric_with_interval,
)
from multilens.seeding import derive_seed
from multilens.stats import DETERMINISTIC, SINGLE_SEED, batch_means_ci

# ---------------------------------------------------------------------------------------------
# Parity
# ---------------------------------------------------------------------------------------------

PARITY_KINDS = {  # vs single-process SGD: the data-parallel algorithms are agreements, degenerate modes self-tests
    "sync": "agreement",
    "ddp": "agreement",
    "local_k1": "sanity",
    "stale_tau0": "sanity",
    "topk_ratio1": "sanity",
}


def parity_part(ps: ParitySettings, seed: int, outputs: Any, problem: dict[str, Any]) -> Part:
    tasks = parity_tasks(ps, seed, problem)
    ref = reference_sgd(tasks[0])  # every m trains the same problem on the same global batches
    tol = 64 * EPS64 * ps.steps * max(1.0, float(np.max(np.abs(ref))))
    rows = []
    for m in sorted(ps.workers):
        rec = task_records(outputs, f"parity_m{m}")[0]
        for name, params in rec["params"].items():
            diff = float(np.max(np.abs(np.asarray(params) - ref)))
            rows.append(
                {
                    "workers": m,
                    "variant": name,
                    "max_abs_diff": diff,
                    "rank_spread": float(rec["rank_spread"][name]),
                    "tolerance": tol,
                }
            )
    checks = []
    for name in sorted({r["variant"] for r in rows}):
        d = max(r["max_abs_diff"] for r in rows if r["variant"] == name)
        checks.append(
            check_within(
                f"parity_{name}",
                d,
                0.0,
                tol,
                kind=PARITY_KINDS.get(name, "sanity"),
                what=f"{name} vs single-process torch.optim.SGD (float64, max over m)",
            )
        )
    spread = max(r["rank_spread"] for r in rows)
    checks.append(
        check_within(
            "parity_replicas_identical",
            spread,
            0.0,
            tol,
            kind="sanity",
            what="max parameter difference between the ranks' copies",
        )
    )
    value = max(r["max_abs_diff"] for r in rows if r["variant"] in ("sync", "ddp"))
    est = Estimate(
        "parity_max_abs_diff",
        value,
        method="deterministic float64 runs",
        n=len(ps.workers),
        unit="parameter units",
        note=f"max over m in {sorted(ps.workers)} of gradient all-reduce and DDP vs single-process SGD on the full "
        f"global batch ({problem.get('name', problem['build'])})",
        no_interval_reason=DETERMINISTIC,
    )
    table = Table(
        "distributed_parity",
        "Parity with single-process large-batch SGD (float64)",
        ["workers", "variant", "max |diff|", "rank spread", "tolerance"],
        [[r["workers"], r["variant"], r["max_abs_diff"], r["rank_spread"], r["tolerance"]] for r in rows],
    )
    assumptions = [
        Assumption(
            "equal shards of one global batch and a mean-over-the-batch loss, so the mean of the shard gradients "
            "is the global gradient",
            "data-parallel SGD",
            ("parity_sync", "parity_ddp"),
        )
    ]
    recs = [
        Recommendation(
            f"Gradient all-reduce and DDP reproduce single-process SGD on this subject to {value:.2g} (float64, "
            f"tolerance {tol:.2g}): the data-parallel implementation is exact, so differences elsewhere are "
            "algorithmic (local steps, delays, compression), not bugs.",
            rests_on=("parity_sync", "parity_ddp", "parity_replicas_identical"),
        )
    ]
    metrics = {"distributed.parity_max_abs_diff": value}
    return Part("parity", [est], checks, [], [table], assumptions, recs, metrics, data={"rows": rows})


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------


def _interval_estimate(name: str, ci: Any, unit: str = "s", note: str = "") -> Estimate:
    return ci.to_estimate(name, unit, note)


def timing_part(ps: TimingSettings, seed: int, outputs: Any, cores: int) -> Part:
    """Step timing (held-out runs), the ring all-reduce model, the compute model (fit runs), a straggler."""
    ms = sorted(ps.workers)
    held = {
        m: timing_summary(task_records(outputs, f"sync_heldout_m{m}"), ps.steps, ps.warmup, ps.level, ps.n_batches)
        for m in ms
    }
    fit = {
        m: timing_summary(task_records(outputs, f"sync_fit_m{m}"), ps.fit_steps, ps.warmup, ps.level, ps.n_batches)
        for m in ms
    }
    n_params = int(task_records(outputs, f"sync_heldout_m{ms[0]}")[0]["n_params"])
    grad_bytes = 4 * n_params
    estimates: list[Estimate] = []
    checks: list[Check] = []
    figures: list[Figure] = []
    notes: list[str] = []
    metrics: dict[str, float] = {}
    data: dict[str, Any] = {"grad_bytes": grad_bytes, "n_cores": cores}
    # -- the all-reduce (ring) model from the size sweep --------------------------------------
    ms_arr, ps_arr, ts_arr = comm_points(outputs, ms)
    comm_ms = sorted({int(v) for v in ms_arr})
    fit_ms = [m for m in comm_ms if m <= cores] or comm_ms  # the ring model assumes a running rank per core
    per_m: dict[int, RingFit] = {}
    for m in comm_ms:
        sel = ms_arr == m
        if np.unique(ps_arr[sel]).size >= 2:
            per_m[m] = fit_ring_model(
                ms_arr[sel],
                ps_arr[sel],
                ts_arr[sel],
                derive_seed(seed, "ring-boot", m),
                n_boot=ps.n_boot,
                level=ps.level,
                quantile=ps.comm_quantile,
            )
    ring: RingFit | None = None
    sel_fit = np.isin(ms_arr, fit_ms)
    if ts_arr[sel_fit].size >= 3 and np.unique(ps_arr[sel_fit]).size >= 2:
        ring = fit_ring_model(
            ms_arr[sel_fit],
            ps_arr[sel_fit],
            ts_arr[sel_fit],
            derive_seed(seed, "ring-boot"),
            n_boot=ps.n_boot,
            level=ps.level,
            quantile=ps.comm_quantile,
        )
        notes.append(f"communication model: pooled fit on m in {fit_ms} (m <= n_cores = {cores} where available).")
        lat = Estimate(
            "timing_comm_latency_s",
            ring.latency_s,
            ring.latency_ci[0],
            ring.latency_ci[1],
            None,
            ps.level,
            ring.method,
            ring.n,
            "s",
        )
        estimates.append(lat)
        metrics |= metric_with_interval("distributed.timing_comm_latency_s", lat)
        estimates.append(
            Estimate(
                "timing_comm_bandwidth_Bps",
                f(ring.bandwidth_Bps),
                f(ring.bandwidth_ci[0]),
                f(ring.bandwidth_ci[1]),
                None,
                ps.level,
                ring.method,
                ring.n,
                "bytes/s",
                note="" if ring.bandwidth_Bps else "fitted slope not positive: bandwidth not resolved by these sizes",
                no_interval_reason=""
                if f(ring.bandwidth_ci[0]) is not None and f(ring.bandwidth_ci[1]) is not None
                else "a bootstrap slope bound is not positive: the bandwidth interval is unbounded",
            )
        )
        # How well the ring model describes the sweep: a statistic of the fit itself, reported (not a check,
        # since a fit's own R^2 is no independent evidence and its verdict would follow the machine's load).
        estimates.append(
            Estimate(
                "timing_comm_model_r2",
                f(ring.r2),
                method=f"R^2 of the ring model on the per-size {ps.comm_quantile:g}-quantile all-reduce times",
                n=len(set(zip(ms_arr[sel_fit].tolist(), ps_arr[sel_fit].tolist()))),
                no_interval_reason="goodness of fit of one sweep (no resampling)",
            )
        )
        xs = 2 * (ms_arr - 1) / ms_arr * ps_arr
        traces = [trace(xs[ms_arr == m], ts_arr[ms_arr == m], f"measured timing m={m}", "markers") for m in comm_ms]
        grid = np.linspace(0, xs.max(), 50)
        inv_bw = 0.0 if ring.bandwidth_Bps is None else 1.0 / ring.bandwidth_Bps
        traces.append(
            trace(grid, ring.latency_s + grid * inv_bw, "fitted timing a + x/bw", "lines", line={"dash": "dash"})
        )
        figures.append(
            Figure(
                "distributed_comm_fit",
                "All-reduce time vs ring bytes per rank",
                traces,
                layout("2(m-1)/m * bytes", "seconds"),
                f"Barrier-separated all-reduces; the line is fitted to the {ps.comm_quantile:g}-quantile of each size "
                f"on m in {fit_ms}.",
            )
        )
        data["comm_model_timing"] = ring.to_dict()
        data["comm_model_per_workers_timing"] = {str(m): fr.to_dict() for m, fr in per_m.items()}
    else:
        notes.append("communication model not fitted: needs a worker count >= 2 and >= 2 message sizes.")
    # -- per-m step timing of the held-out runs -------------------------------------------------
    base = ms[0]
    sb = held[base]
    for m, s in held.items():
        estimates.append(_interval_estimate(f"timing_step_time_s_m{m}", s.step, note="held-out run, per step"))
        for what in ("compute", "comm", "idle"):
            estimates.append(_interval_estimate(f"timing_{what}_s_m{m}", getattr(s, what), note="held-out run"))
        r, lo, hi = ratio_ci(sb.step.estimate, sb.step.stderr, s.step.estimate, s.step.stderr, ps.level)
        estimates.append(
            Estimate(
                f"timing_speedup_m{m}",
                f(r),
                f(lo),
                f(hi),
                None,
                ps.level,
                f"delta method on the log ratio of batch-means step times (m={base} over m={m})",
                sb.step.n + s.step.n,
                no_interval_reason="" if f(lo) is not None else "a step time has no batch-means standard error",
            )
        )
    measured_best = min(held, key=lambda m: held[m].step.estimate)
    metrics["distributed.timing_best_workers"] = float(measured_best)
    sp_max = next(e for e in estimates if e.name == f"timing_speedup_m{ms[-1]}")
    metrics |= metric_with_interval(f"distributed.timing_speedup_m{ms[-1]}", sp_max)
    # -- cores per worker ---------------------------------------------------------------------
    cores_ok = max(ms) <= cores
    checks.append(
        Check(
            "timing_one_core_per_worker",
            bool(cores_ok),
            float(max(ms)),
            float(cores),
            0.0,
            f"max workers {max(ms)} {'<=' if cores_ok else '>'} available cores {cores}",
            severity="info",  # a property of the machine, reported; the timings are measured either way
            kind="sanity",
            criterion="max(timing.workers) <= cores",
        )
    )
    if not cores_ok:
        notes.append(
            f"{max(ms)} workers share {cores} cores: the machine is oversubscribed, so speedup beyond m={cores} is "
            "not expected; it is measured and reported as is."
        )
    # -- compute model on the fit runs; predictions compared with the held-out runs -------------
    opt: dict[str, Any] = {"measured_best_timing": measured_best}
    if len(fit) >= 2 and (ring is not None or per_m):
        compute = fit_compute_model(
            {m: np.asarray(s.compute_samples) for m, s in fit.items()},
            cores,
            derive_seed(seed, "compute-boot"),
            n_boot=ps.n_boot,
            level=ps.level,
        )
        method = compute.method + " (fit runs: a batch seed held out from the compared runs)"
        estimates.append(
            Estimate("timing_compute_c0_s", compute.c0_s, *compute.c0_ci, None, ps.level, method, compute.n, "s")
        )
        estimates.append(
            Estimate("timing_compute_c1_s", compute.c1_s, *compute.c1_ci, None, ps.level, method, compute.n, "s")
        )

        def comm_for(m: int) -> RingFit | None:  # the sweep's own fit at a measured m; pooled where it applies
            return per_m.get(m) or (ring if m <= cores else None)

        cand = list(range(1, max(max(ms), cores) + 1))
        pred_all = {m: predicted_step_time(m, compute, comm_for(m), grad_bytes) for m in cand}
        pred_all = {m: v for m, v in pred_all.items() if v is not None}
        pred_tested = [m for m in ms if m in pred_all]
        pred_best_tested = min(pred_tested, key=lambda m: pred_all[m])
        opt |= {
            "predicted_best_tested_timing": pred_best_tested,
            "predicted_best_any_timing": min(pred_all, key=pred_all.get),  # type: ignore[arg-type]
            "predicted_step_time_s": {str(m): pred_all[m] for m in sorted(pred_all)},
            "compute_model_timing": compute.to_dict(),
        }
        metrics["distributed.timing_predicted_best_workers"] = float(pred_best_tested)
        checks.append(
            Check(
                "timing_optimal_workers_heldout",
                bool(pred_best_tested == measured_best),
                float(measured_best),
                float(pred_best_tested),
                0.0,
                f"compute model (fitted on the fit runs) + all-reduce model (fitted on the size sweep) picks "
                f"m={pred_best_tested} among {pred_tested}; the held-out runs were fastest at m={measured_best} "
                f"(timing on a shared {cores}-core machine)",
                severity="info",
                kind="agreement",
                criterion="predicted best worker count == the held-out runs' fastest worker count",
            )
        )
        for m in pred_tested:
            checks.append(
                check_within(
                    f"timing_step_time_model_m{m}",
                    held[m].step.estimate,
                    pred_all[m],
                    ps.step_time_rel_tol,
                    kind="agreement",
                    relative=True,
                    what=f"held-out step time at m={m} vs the model fitted on other runs",
                    severity="info",
                )
            )
        sp = [
            ratio_ci(sb.step.estimate, sb.step.stderr, held[m].step.estimate, held[m].step.stderr, ps.level) for m in ms
        ]
        xs_model = sorted(pred_all)
        figures.append(
            Figure(
                "distributed_speedup",
                "Speedup vs workers (fixed global batch): held-out runs and the compute+communication model",
                [
                    err_trace(ms, [v[0] for v in sp], [v[1] for v in sp], [v[2] for v in sp], "measured timing (CI)"),
                    trace(
                        xs_model,
                        [pred_all[base] / pred_all[m] if base in pred_all else None for m in xs_model],
                        "model timing",
                        "lines+markers",
                        line={"dash": "dash"},
                    ),
                    trace(xs_model, [m / base for m in xs_model], "ideal linear", "lines", line={"dash": "dot"}),
                ],
                layout("workers m", f"speedup over m={base}"),
                "Model: compute (c0 + c1/m)*max(1, m/n_cores) fitted to the fit runs' compute, plus the ring "
                "all-reduce fitted to the size sweep; compared with held-out runs (another batch seed).",
            )
        )
    else:
        notes.append("optimal worker count not predicted: needs >= 2 worker counts including one >= 2.")
    labels = [str(m) for m in held]
    figures.append(
        Figure(
            "distributed_time_breakdown",
            "Per-step time per worker count: compute, idle (waiting for the slowest rank), communication",
            [
                {
                    "type": "bar",
                    "name": f"{w} timing",
                    "x": labels,
                    "y": [f(getattr(s, w).estimate) for s in held.values()],
                }
                for w in ("compute", "idle", "comm")
            ],
            layout("workers m", "seconds per step")
            | {"barmode": "stack", "xaxis": {"title": {"text": "workers m"}, "type": "category"}},
        )
    )
    data["optimal_workers_timing"] = opt
    data["per_workers_timing"] = {str(m): s.to_dict() for m, s in held.items()}
    data["fit_runs_timing"] = {str(m): s.to_dict() for m, s in fit.items()}
    data["load_average_timing"] = {
        str(m): task_records(outputs, f"sync_heldout_m{m}")[0].get("load_average_1m") for m in ms
    }
    _straggler(ps, outputs, estimates, checks, data)
    assumptions = [
        Assumption(
            f"one CPU core per worker (cores = {cores}, max workers = {max(ms)})",
            "compute model",
            ("timing_one_core_per_worker",),
        )
    ]
    return Part("timing", estimates, checks, figures, [], assumptions, [], metrics, data=data, notes=notes)


def _straggler(ps: TimingSettings, outputs: Any, estimates: list, checks: list, data: dict) -> None:
    sw = ps.straggler_workers
    recs = task_records(outputs, f"straggler_m{sw}")
    if sw < 2 or not recs:
        return
    warm = min(2, ps.straggler_steps // 4)
    slow_run = timing_summary(recs, ps.straggler_steps, warm, ps.level, ps.n_batches)
    base_run = timing_summary(
        task_records(outputs, f"straggler_baseline_m{sw}"), ps.straggler_steps, warm, ps.level, ps.n_batches
    )
    slow = sw - 1

    def others(ts: TimingSummary) -> np.ndarray:  # per-step idle of the ranks that are not the straggler
        return np.mean([row for r, row in enumerate(ts.idle_by_rank) if r != slow], axis=0)

    extra = others(slow_run) - others(base_run)  # same batches, same steps: the straggler's cost per step
    ci = batch_means_ci(extra, ps.n_batches, ps.level)
    estimates.append(
        ci.to_estimate(
            "timing_straggler_extra_idle_s",
            "s",
            "per-step idle of the other ranks, straggler run minus the same run without it",
        )
    )
    checks.append(
        check_within(
            "timing_straggler_idle_matches_sleep",
            ci.estimate,
            ps.straggler_sleep_s,
            ps.straggler_rel_tol,
            kind="agreement",
            relative=True,
            what="extra idle of the other ranks vs the straggler's sleep per step",
            severity="info",
        )
    )
    data["straggler_timing"] = {
        "slow_rank": slow,
        "sleep_s": ps.straggler_sleep_s,
        "per_rank_idle_s": list(slow_run.per_rank_idle_s),
        "baseline_per_rank_idle_s": list(base_run.per_rank_idle_s),
        "step_time_s": slow_run.step.estimate,
        "baseline_step_time_s": base_run.step.estimate,
    }


# ---------------------------------------------------------------------------------------------
# Training modes
# ---------------------------------------------------------------------------------------------


def _expected_collectives(run: dict[str, Any], steps: int) -> int:
    mode = run["mode"]
    if mode == "local":
        k = int(run["k"])
        return sum(1 for t in range(steps) if is_sync_step(t, k) or t == steps - 1)
    if mode == "topk":
        return 2 * steps  # values and indices are all-gathered
    return steps


def modes_part(ps: ModesSettings, seed: int, outputs: Any) -> Part:
    runs = modes_runs(ps)
    recs_all = [task_records(outputs, f"mode{i}") for i in range(len(runs))]
    if ps.target_loss > 0:
        target, how = ps.target_loss, "configured"
    else:
        target = loss_at_step(recs_all[0][0], ps.steps // 2)
        how = f"loss of the synchronous run at step {ps.steps // 2}"
    rows, rows_timing = [], []
    tr_steps, tr_time = [], []
    estimates: list[Estimate] = []
    mismatched = []
    delays_ok, largest_delay = True, 0
    for i, (run, recs) in enumerate(zip(runs, recs_all)):
        label, name = run["label"] + f" (m={ps.workers})", f"mode{i}"
        steps, times, losses = eval_curve(recs[0])
        ttt, lo, hi = time_to_target(times, losses, target) if target is not None else (None, None, None)
        n_coll = len(recs[0]["log"]["step"])
        expected = _expected_collectives(run, ps.steps)
        if n_coll != expected:
            mismatched.append(f"{run['label']}: {n_coll} vs {expected}")
        row = {
            "run": label,
            "task": name,
            "workers": ps.workers,
            "final_loss": losses[-1] if losses else None,
            "bytes_sent_per_rank": float(np.mean([np.sum(r["log"]["moved_bytes"]) for r in recs])),
            "collectives": n_coll,
            "label_counts": recs[0].get("label_counts"),
        }
        if "delays" in recs[0]:
            realized = np.sum([r["delays"]["realized"] for r in recs], axis=0).astype(int)
            row["realized_delays"] = realized.tolist()
            nz = np.flatnonzero(realized)
            largest_delay = max(largest_delay, int(nz[-1]) if nz.size else 0)
            delays_ok &= largest_delay <= int(run["tau_max"])
        rows.append(row)
        rows_timing.append(
            {
                "task": name,
                "to_target_s": ttt,
                "bracket": [lo, hi],
                "wall_s": float(np.mean([r["wall_timed_s"] for r in recs])),
            }
        )
        tr_steps.append(trace(steps, losses, label))
        tr_time.append(trace(times, losses, f"{label} timing"))
        estimates.append(
            Estimate(
                f"modes_final_loss_{name}",
                f(row["final_loss"]),
                method=f"{run['label']}: training-set loss of the averaged model after the last step",
                n=1,
                no_interval_reason=SINGLE_SEED,
                converged=None,
                n_iter=ps.steps,
            )
        )
        if ttt is not None:
            estimates.append(
                Estimate(
                    f"timing_to_target_s_{name}",
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
            estimates.append(
                Estimate(f"timing_to_target_s_{name}", None, note=f"{run['label']} never reached the target loss")
            )
    checks = [
        Check(
            "modes_collectives_match_schedule",
            not mismatched,
            float(len(mismatched)),
            0.0,
            0.0,
            "every mode issued the collectives its schedule implies"
            + ("" if not mismatched else ": " + "; ".join(mismatched)),
            kind="sanity",
            criterion="collective calls per rank == steps (sync, stale, randk), 2*steps (topk), rounds (local K)",
        )
    ]
    stale = [r for r in runs if r["mode"] == "stale"]
    if stale:
        checks.append(
            Check(
                "modes_stale_delays_bounded",
                bool(delays_ok),
                float(largest_delay),
                float(stale[0]["tau_max"]),
                0.0,
                f"largest applied delay {largest_delay} <= tau_max = {stale[0]['tau_max']}",
                kind="sanity",
                criterion="largest applied delay <= tau_max",
            )
        )
    reached = [(rt["to_target_s"], run) for rt, run in zip(rows_timing, runs) if rt["to_target_s"] is not None]
    metrics: dict[str, float] = {}
    if target is not None:
        metrics["distributed.modes_target_loss"] = float(target)
    fastest = [(t, run) for t, run in reached if run["mode"] in ("sync", "local")]
    if fastest:
        t_best, run = min(fastest, key=lambda v: v[0])
        metrics["distributed.timing_best_local_steps"] = float(run.get("k", 1))
    t_max = max((max(eval_curve(r[0])[1] or [0.0]) for r in recs_all), default=1.0)
    tgt = {
        "type": "scatter",
        "mode": "lines",
        "name": "target loss",
        "x": [0, ps.steps],
        "y": [f(target), f(target)],
        "line": {"dash": "dot"},
    }
    figures = [
        Figure(
            "distributed_loss_vs_steps",
            "Training loss (full training set) vs steps, per mode",
            tr_steps + [tgt],
            layout("step", "loss", ylog=True),
        ),
        Figure(
            "distributed_loss_vs_time",
            "Training loss vs timed wall-clock seconds (evaluation excluded)",
            tr_time + [tgt | {"name": "target loss timing", "x": [0, f(t_max)]}],
            layout("seconds", "loss", ylog=True),
        ),
    ]
    table = Table(
        "distributed_modes",
        f"Training modes at m={ps.workers} on non-IID shards (heterogeneity {ps.heterogeneity:g}); target loss "
        f"{target if target is None else round(target, 4)} ({how}); times are in the data and the loss-vs-time figure",
        ["run", "final loss", "bytes sent per rank", "collectives"],
        [[r["run"], r["final_loss"], r["bytes_sent_per_rank"], r["collectives"]] for r in rows],
    )
    assumptions = [
        Assumption(
            "each mode communicates exactly on its schedule (local SGD every K steps, one collective per step "
            "otherwise)",
            "modes.py",
            ("modes_collectives_match_schedule",),
        )
    ]
    data = {"target_loss": f(target), "target_how": how, "runs": rows, "runs_timing": rows_timing}
    return Part("modes", estimates, checks, figures, [table], assumptions, [], metrics, data=data)


# ---------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------


def run_faults(ps: FaultSettings, settings: Settings, seed: int, problem: dict[str, Any]) -> list[FaultEvent]:
    """One launch per fault kind; each returns only after every process is gone."""
    events = []
    for kind in ps.kinds:
        res = launch(
            fault_job(ps, settings, seed, kind, problem),
            ps.workers,
            deadline_s=settings.launch_timeout_s,
            grace_s=ps.timeout_s + 2.0,
        )
        events.append(
            summarize_fault(
                kind,
                ps.workers - 1,
                ps.step,
                ps.timeout_s,
                res.outputs,
                res.returncodes,
                res.killed,
                res.leftover,
                res.wall_time_s,
                res.pids,
            )
        )
    return events


def faults_part(ps: FaultSettings, seed: int, settings: Settings, problem: dict[str, Any]) -> Part:
    events = run_faults(ps, settings, seed, problem)
    checks, estimates, recs = [], [], []
    for ev in events:
        checks.append(
            Check(
                f"fault_{ev.kind}_detected",
                bool(ev.detected),
                float(len(ev.detected_by)),
                float(ev.world_size - 1),
                0.0,
                f"{ev.kind}: {len(ev.detected_by)} of {ev.world_size - 1} survivors saw the failure as an exception",
                kind="sanity",
                criterion="every survivor detects the failed peer",
            )
        )
        lat = ev.detect_latency_s
        slack = ps.latency_slack_s
        checks.append(
            Check(
                f"fault_{ev.kind}_detection_latency",
                None if lat is None else bool(lat <= ev.timeout_s + slack),
                f(lat),
                ev.timeout_s,
                slack,
                f"{ev.kind}: detection latency {lat} s vs the collective timeout {ev.timeout_s:g} s (+{slack:g} s)",
                kind="sanity",
                criterion="latency <= timeout + slack",
            )
        )
        checks.append(
            Check(
                f"fault_{ev.kind}_no_leftover_processes",
                not ev.leftover_pids,
                float(len(ev.leftover_pids)),
                0.0,
                0.0,
                f"{ev.kind}: {len(ev.leftover_pids)} processes left after cleanup (pids and process groups checked)",
                kind="sanity",
                criterion="no worker process or process-group member left",
            )
        )
        checks.append(
            Check(
                f"fault_{ev.kind}_clean_exits",
                ev.clean_exits,
                None,
                None,
                None,
                f"{ev.kind}: exit codes {list(ev.exit_codes)} = {list(ev.exit_meanings)}",
                kind="sanity",
                criterion="no rank died on a signal it was not sent",
            )
        )
        estimates.append(
            Estimate(
                f"fault_{ev.kind}_detection_latency_s",
                f(lat),
                method="survivors' collective start to exception (max over survivors)",
                n=1,
                unit="s",
                no_interval_reason="one injected fault per kind",
            )
        )
        what = "died" if ev.kind == "exit" else "hung"
        recs.append(
            Recommendation(
                f"A worker that {what} mid-training was detected by every survivor and no process was left behind: "
                "keep explicit timeouts on every process group and a launcher that kills whole process groups.",
                rests_on=(f"fault_{ev.kind}_detected", f"fault_{ev.kind}_no_leftover_processes"),
            )
        )
    table = Table(
        "distributed_faults",
        "Injected faults (latencies and pids are in the data)",
        ["kind", "victim", "step", "detected", "exit codes", "killed by launcher", "leftover processes"],
        [
            [
                e.kind,
                e.victim_rank,
                e.fault_step,
                e.detected,
                list(e.exit_codes),
                list(e.killed_by_launcher),
                len(e.leftover_pids),
            ]
            for e in events
        ],
    )
    metrics = {"distributed.faults_detected_fraction": sum(e.detected for e in events) / len(events)}
    data = {"events_timing": [e.to_dict() | {"summary": e.summary} for e in events]}
    return Part("faults", estimates, checks, [], [table], [], recs, metrics, data=data)
