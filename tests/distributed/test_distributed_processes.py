"""The distributed lens with real worker processes (gloo on CPU).

Starting processes is the slow part (each imports torch), so one smoke run of the lens (one
launch of 2 workers for every measurement, plus one launch for the dying worker) is shared by
most tests; the hang, the deadline and torchrun get one small launch each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from multilens.lenses.distributed import Settings, default_subject, measure
from multilens.lenses.distributed.faults import EXIT_INJECTED, EXIT_PEER_FAILURE, pid_alive, summarize_fault
from multilens.lenses.distributed.jobs import fault_job
from multilens.lenses.distributed.launch import launch, read_outputs, write_job
from multilens.lenses.registry import get_lens
from multilens.protocol.phase import LensPhase, PhaseContext
from multilens.results import LensResult

SEED = 12345


def smoke_settings() -> Settings:
    """The smoke profile with two group sizes and a straggler, so the timing model is compared too."""
    s = Settings.for_profile("smoke")
    return replace(s, timing=replace(s.timing, workers=(1, 2), straggler_workers=2))


@pytest.fixture(scope="module")
def smoke() -> LensResult:
    s = smoke_settings()
    return measure(default_subject(s, seed=SEED), s, seed=SEED)


def test_json_and_kinds(smoke: LensResult) -> None:
    d = smoke.to_dict()
    json.dumps(d, allow_nan=False)  # every number is JSON-safe
    assert set(smoke.parts) == {"parity", "noise_floor", "local_sgd", "staleness", "timing", "modes", "faults",
                                "batch_floor"}  # fmt: skip
    kinds = {c.name: c.kind for c in smoke.checks}
    assert kinds["parity_sync"] == kinds["parity_ddp"] == "agreement"
    assert kinds["parity_local_k1"] == kinds["parity_replicas_identical"] == "sanity"
    assert kinds["noise_floor_exact_m1"] == "agreement" and kinds["noise_floor_bound_m1"] == "bound"
    assert kinds["timing_optimal_workers_heldout"] == "agreement"
    timing = smoke.data["timing"]
    per = timing["per_workers_timing"]
    assert sorted(per) == ["1", "2"]
    for p in per.values():
        assert p["compute"]["estimate"] > 0 and p["comm"]["estimate"] >= 0
        assert p["step"]["low"] < p["step"]["estimate"] < p["step"]["high"]  # batch-means interval
    assert smoke.estimate("timing_speedup_m1").value == pytest.approx(1.0)
    step = smoke.estimate("timing_step_time_s_m2")
    assert "batch means" in step.method and step.ci_low < step.value < step.ci_high


def test_sync_ddp_local_k1_and_tau0_equal_single_process_sgd(smoke: LensResult) -> None:
    rows = smoke.data["parity"]["rows"]
    assert {r["variant"] for r in rows} == {"sync", "ddp", "local_k1", "stale_tau0", "topk_ratio1"}
    for r in rows:  # float64: rounding-level differences only
        assert r["max_abs_diff"] <= r["tolerance"] < 1e-10
        assert r["rank_spread"] <= r["tolerance"]
    assert smoke.metrics["distributed.parity_max_abs_diff"] < 1e-12
    assert smoke.check("parity_sync").passed is True and smoke.check("parity_ddp").passed is True
    assert any("reproduce single-process SGD" in r.text for r in smoke.recommendations)


def test_noise_floor_matches_the_exact_stationary_value(smoke: LensResult) -> None:
    floors = smoke.data["noise_floor"]["floors"]
    for m, fl in floors.items():
        est = smoke.estimate(f"noise_floor_m{m}")
        assert abs(est.value - fl["exact"]) < 4 * est.stderr  # within 4 standard errors
        assert est.converged is None and est.n_iter == Settings.for_profile("smoke").noise_floor.steps
        bound = smoke.check(f"noise_floor_bound_m{m}")
        assert bound.kind == "bound" and bound.passed is True
        # the bound eta*sigma^2/(mu*m) is ~4x the exact stationary floor on this spectrum (dim 8, kappa 5)
        assert bound.bound_ratio == pytest.approx(fl["bound"] / fl["exact"], rel=1e-12)
        assert 3.5 < bound.bound_ratio < 4.5
    ratio = smoke.data["noise_floor"]["ratios"][0]
    assert ratio["k"] == 2 and ratio["ci_low"] < ratio["ratio"] < ratio["ci_high"]
    for row in smoke.data["noise_floor"]["delayed_noise_floors"]:
        if row["exact"] is not None:
            assert row["ci_low"] <= row["exact"] <= row["ci_high"]


def test_local_sgd_and_delays_against_exact_theory(smoke: LensResult) -> None:
    for name in (
        "local_sgd_k1_equals_sync",
        "local_sgd_matches_exact_iterate",
        "local_sgd_reached_fixed_point",
        "staleness_stability_matches_theory",
        "noise_floor_delay_bounded",
        "modes_collectives_match_schedule",
        "modes_stale_delays_bounded",
    ):
        assert smoke.check(name).passed is True, smoke.check(name).reason
    drift = smoke.data["local_sgd"]["rows"]
    for h in {r["heterogeneity"] for r in drift}:
        sync = next(r for r in drift if r["heterogeneity"] == h and r["k"] == 0)
        k1 = next(r for r in drift if r["heterogeneity"] == h and r["k"] == 1)
        assert k1["measured"] == pytest.approx(sync["measured"], rel=1e-9, abs=1e-15)
    dd = smoke.data["noise_floor"]["delayed_noise_floors"][-1]["delay_distribution"]
    assert len(dd["realized_counts"]) == dd["tau_max"] + 1 and sum(dd["realized_counts"]) > 0


def test_optimal_workers_model_is_fitted_on_other_runs(smoke: LensResult) -> None:
    opt = smoke.data["timing"]["optimal_workers_timing"]
    fit_runs = smoke.data["timing"]["fit_runs_timing"]
    held = smoke.data["timing"]["per_workers_timing"]
    s = smoke_settings().timing
    assert smoke.check("timing_straggler_idle_matches_sleep").kind == "agreement"
    # the compute model saw the fit runs (fit_steps), the comparison uses the held-out runs (steps)
    assert all(v["n_steps"] == s.fit_steps - s.warmup for v in fit_runs.values())
    assert all(v["n_steps"] == s.steps - s.warmup for v in held.values())
    assert str(opt["measured_best_timing"]) == min(held, key=lambda m: held[m]["step"]["estimate"])
    c = smoke.check("timing_optimal_workers_heldout")
    assert c.severity == "info" and c.passed is (opt["predicted_best_tested_timing"] == opt["measured_best_timing"])


def test_dead_worker_is_detected_and_no_process_is_left(smoke: LensResult) -> None:
    (ev,) = smoke.data["faults"]["events_timing"]
    assert ev["kind"] == "exit" and ev["detected"]
    assert ev["detect_latency_s"] < ev["timeout_s"] + 2.0
    assert list(ev["exit_codes"]) == [EXIT_PEER_FAILURE, EXIT_INJECTED]
    assert ev["leftover_pids"] == [] and len(ev["pids"]) == 2
    assert not any(pid_alive(p) for p in ev["pids"])
    assert smoke.data["launch_timing"]["exit_codes"] == [0, 0]


def test_every_error_check_was_evaluated_and_recommendations_rest_on_checks(smoke: LensResult) -> None:
    for c in smoke.checks:
        if c.severity == "error":
            assert c.passed is not None, c.name
    assert smoke.recommendations
    for r in smoke.recommendations:
        assert all(smoke.check(n).passed is True for n in r.rests_on)


def test_generic_phase_runs_the_lens(smoke: LensResult, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen = {}

    def fake(subject, settings, *, seed, runtime=None):  # noqa: ANN001, ANN202
        seen["subject"], seen["settings"], seen["seed"] = subject, settings, seed
        return smoke

    monkeypatch.setattr("multilens.lenses.distributed.measure", fake)
    ctx = PhaseContext(profile="smoke", seed=7, out_dir=tmp_path, config={"timing": {"workers": [1, 2]}}, artifacts={})
    out = LensPhase(get_lens("distributed")).run(ctx)
    assert seen["seed"] == 7 and seen["settings"].timing.workers == (1, 2)
    assert seen["subject"].build.endswith(":digits_mlp")
    assert out.metrics["distributed.parity_max_abs_diff"] == smoke.metrics["distributed.parity_max_abs_diff"]
    assert "distributed.noise_floor_ratio_2" in out.metrics and "distributed.timing_best_workers" in out.metrics


def test_hung_worker_times_out_and_is_killed() -> None:
    s = Settings.for_profile("smoke")
    ps = replace(s.faults, timeout_s=2.0)
    res = launch(fault_job(ps, s, SEED, "hang", default_subject(s, seed=SEED).to_job()), 2, deadline_s=120.0,
                 grace_s=1.0)  # fmt: skip
    ev = summarize_fault(
        "hang",
        1,
        ps.step,
        2.0,
        res.outputs,
        res.returncodes,
        res.killed,
        res.leftover,
        res.wall_time_s,
        res.pids,
    )
    assert ev.detected and 1.5 <= ev.detect_latency_s <= 6.0
    assert res.returncodes[0] == EXIT_PEER_FAILURE and res.killed == (1,)
    assert res.leftover == () and not any(pid_alive(p) for p in res.pids)


def test_launcher_deadline_kills_every_worker() -> None:
    s = Settings.for_profile("smoke")
    ps = replace(s.faults, timeout_s=600.0)  # nobody detects anything
    res = launch(fault_job(ps, s, SEED, "hang", default_subject(s, seed=SEED).to_job()), 2, deadline_s=6.0,
                 grace_s=600.0)  # fmt: skip
    assert res.timed_out and set(res.killed) == {0, 1} and not res.ok
    assert res.wall_time_s < 30.0
    assert res.leftover == () and not any(pid_alive(p) for p in res.pids)
    assert "deadline passed" in res.failure_message()


def test_worker_runs_under_torchrun(tmp_path: Path) -> None:
    job = {
        "seed": SEED,
        "backend": "gloo",
        "timeout_s": 60.0,
        "groups": [[0, 1]],
        "tasks": [
            {
                "name": "n",
                "kind": "quad_noise",
                "ranks": [0, 1],
                "dim": 4,
                "kappa": 2.0,
                "init_dist": 1.0,
                "problem_seed": 1,
                "eta": 0.5,
                "sigma2": 1.0,
                "replicas": 4,
                "steps": 20,
                "burn_in": 5,
                "variants": [{"name": "sync", "delay": "none"}],
            }
        ],
    }
    write_job(tmp_path / "job.json", job)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src"))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "multilens.lenses.distributed.worker",
            "--job",
            str(tmp_path / "job.json"),
            "--out",
            str(tmp_path / "out"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    outs = read_outputs(tmp_path / "out", 2)
    assert all(o is not None and "n" in o["tasks"] for o in outs)
    assert np.asarray(outs[0]["tasks"]["n"]["tail_mean"]).shape == (1, 4)
