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

from multilens.lenses.distributed import DistributedConfig, DistributedPhase, run_distributed
from multilens.lenses.distributed.faults import EXIT_INJECTED, EXIT_PEER_FAILURE, pid_alive, summarize_fault
from multilens.lenses.distributed.jobs import fault_job
from multilens.lenses.distributed.launch import launch, read_outputs, write_job
from multilens.protocol.phase import PhaseContext
from multilens.results import LensResult

SEED = 12345


@pytest.fixture(scope="module")
def smoke() -> LensResult:
    return run_distributed(DistributedConfig.for_profile("smoke"), SEED)


def _check(result: LensResult, name: str):
    return next(c for c in result.checks if c.name == name)


def test_json_has_the_documented_keys(smoke: LensResult) -> None:
    d = smoke.to_dict()
    json.dumps(d, allow_nan=False)  # every number is JSON-safe
    data = smoke.data
    assert isinstance(data["ddp_parity_max_abs_diff"], float)
    keys = {
        "workers",
        "noise_floor",
        "noise_floor_ci_low",
        "noise_floor_ci_high",
        "predicted_noise_floor",
        "step_compute_s",
        "step_comm_s",
        "speedup",
    }
    assert [p["workers"] for p in data["per_workers"]] == [1, 2]
    for p in data["per_workers"]:
        assert keys <= set(p)
        assert p["noise_floor_ci_low"] < p["noise_floor"] < p["noise_floor_ci_high"]
        assert p["step_compute_s"] > 0 and p["step_comm_s"] >= 0
    assert data["per_workers"][0]["speedup"] == pytest.approx(1.0)
    assert data["recommendations"] and all(isinstance(r, str) for r in data["recommendations"])


def test_sync_ddp_local_k1_and_tau0_equal_single_process_sgd(smoke: LensResult) -> None:
    rows = smoke.data["parity"]
    assert {r["variant"] for r in rows} == {"sync", "ddp", "local_k1", "stale_tau0", "topk_ratio1"}
    for r in rows:  # float64: rounding-level differences only
        assert r["max_abs_diff"] <= r["tolerance"] < 1e-10
        assert r["rank_spread"] <= r["tolerance"]
    assert smoke.data["ddp_parity_max_abs_diff"] < 1e-12


def test_noise_floor_matches_the_exact_stationary_value(smoke: LensResult) -> None:
    for p in smoke.data["per_workers"]:
        est = smoke.estimate(f"noise_floor_m{p['workers']}")
        assert abs(est.value - p["predicted_noise_floor"]) < 4 * est.stderr  # within 4 standard errors
        assert p["noise_floor_ci_high"] < p["noise_floor_bound"]  # the theorem's bound holds, loosely
    ratio = smoke.data["noise_floor_ratio"][0]
    assert ratio["k"] == 2 and ratio["ci_low"] < ratio["ratio"] < ratio["ci_high"]
    for row in smoke.data["delayed_noise_floors"]:
        if row["exact"] is not None:
            assert (
                row["ci_low"] <= row["exact"] <= row["ci_high"] or abs(row["floor"] - row["exact"]) < 0.1 * row["exact"]
            )


def test_local_sgd_and_delays_against_exact_theory(smoke: LensResult) -> None:
    for name in (
        "local_sgd_k1_equals_sync",
        "local_sgd_matches_exact_iterate",
        "staleness_stability_matches_theory",
        "delay_bounded",
    ):
        assert _check(smoke, name).passed is True, _check(smoke, name).reason
    drift = smoke.data["local_sgd_drift"]
    for h in {r["heterogeneity"] for r in drift}:
        sync = next(r for r in drift if r["heterogeneity"] == h and r["k"] == 0)
        k1 = next(r for r in drift if r["heterogeneity"] == h and r["k"] == 1)
        assert k1["measured"] == pytest.approx(sync["measured"], rel=1e-9, abs=1e-15)
    dd = smoke.data["delay_distribution"][0]
    assert len(dd["realized_counts"]) == dd["tau_max"] + 1 and sum(dd["realized_counts"]) > 0


def test_dead_worker_is_detected_and_no_process_is_left(smoke: LensResult) -> None:
    (ev,) = smoke.data["faults"]
    assert ev["kind"] == "exit" and ev["detected"]
    assert ev["detect_latency_s"] < ev["timeout_s"] + 2.0
    assert list(ev["exit_codes"]) == [EXIT_PEER_FAILURE, EXIT_INJECTED]
    assert ev["leftover_pids"] == [] and len(ev["pids"]) == 2
    assert not any(pid_alive(p) for p in ev["pids"])
    assert smoke.data["launch"]["main_launch_exit_codes"] == [0, 0]
    assert smoke.data["launch"]["main_launch_leftover_pids"] == []


def test_every_math_check_was_evaluated(smoke: LensResult) -> None:
    for c in smoke.checks:
        if c.severity == "error":
            assert c.passed is not None, c.name


def test_phase_wraps_the_lens(smoke: LensResult, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen = {}

    def fake(cfg: DistributedConfig, seed: int) -> LensResult:
        seen["cfg"], seen["seed"] = cfg, seed
        return smoke

    monkeypatch.setattr("multilens.lenses.distributed.phase.run_distributed", fake)
    ctx = PhaseContext(profile="smoke", seed=7, out_dir=tmp_path, config={"workers": [1, 2]}, artifacts={})
    out = DistributedPhase().run(ctx)
    assert seen["seed"] == 7 and seen["cfg"].workers == (1, 2)
    assert out.metrics["distributed.parity_max_abs_diff"] == smoke.data["ddp_parity_max_abs_diff"]
    assert "distributed.noise_floor_ratio_2" in out.metrics and "distributed.best_workers" in out.metrics
    assert out.recommendations == tuple(smoke.data["recommendations"])
    assert set(out.artifacts) == set(DistributedPhase.produces)


def test_hung_worker_times_out_and_is_killed() -> None:
    cfg = replace(DistributedConfig.for_profile("smoke"), fault_timeout_s=2.0)
    res = launch(fault_job(cfg, SEED, "hang"), 2, deadline_s=120.0, grace_s=1.0)
    ev = summarize_fault(
        "hang",
        1,
        cfg.fault_step,
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
    cfg = replace(DistributedConfig.for_profile("smoke"), fault_timeout_s=600.0)  # nobody detects anything
    res = launch(fault_job(cfg, SEED, "hang"), 2, deadline_s=6.0, grace_s=600.0)
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
