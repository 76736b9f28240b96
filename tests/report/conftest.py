"""A synthetic protocol summary and manifest for the report tests.

It is built from the real result types and figure builders so it has exactly the shape the
protocol runner writes, and it carries hostile strings (script tags, pipes, U+2028) in titles,
notes, reasons and figure data.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

import multilens.plots as F
from multilens.results import Assumption, Check, Estimate, LensResult, Table, check_in_interval, check_within

XSS = "<script>alert(1)</script>"
SCRIPT_BREAKER = "</script><script>alert(2)</script>\u2028\u2029"


def _scaling_result() -> LensResult:
    n = np.array([1e3, 3e3, 1e4, 3e4, 1e5])
    loss = 2.0 * n**-0.3 + 0.1
    lo, hi = loss * 0.9, loss * 1.1
    grid = np.geomspace(1e3, 1e5, 50)
    figs = (
        F.scatter_with_curve(
            "loss_vs_n", "Loss vs data size", n, loss, grid, 2.0 * grid**-0.3 + 0.1,
            xlog=True, ylog=True, lo=lo, hi=hi, xlabel="samples", ylabel="test loss", caption="power-law fit",
        ),
        F.line_with_band("loss_curve", "Training loss", np.arange(1, 51), np.exp(-np.arange(1, 51) / 10),
                         np.exp(-np.arange(1, 51) / 10) * 0.8, np.exp(-np.arange(1, 51) / 10) * 1.2,
                         name="seed mean", ylog=True, xlabel="step", ylabel="loss"),
    )  # fmt: skip
    return LensResult(
        lens="scaling",
        estimates=(
            Estimate("alpha", 0.301, 0.27, 0.33, 0.015, 0.95, "bootstrap percentile", 200, note="exponent"),
            Estimate("r2", 0.9987, n=5),
            Estimate("irreducible_loss", None, note="not identifiable | too few points"),
        ),
        checks=(
            check_within("alpha_matches_theory", 0.301, 0.3, 0.05, kind="agreement"),
            check_within("r2_high", 0.9987, 1.0, 1e-5, what="fit quality", kind="sanity"),
            check_in_interval("prediction_in_ci", 0.3, None, None, kind="agreement"),
        ),
        figures=figs,
        tables=(
            Table("fit", "Fitted points", ["n", "loss | mean"], [[1000, 0.5], [3000, float("nan")]], caption="a|b"),
        ),
        assumptions=(Assumption("loss follows a power law", "Kaplan et al. 2020", "r2_high"),),
        predictions={"alpha": 0.3},
        notes=("fitted on 5 sizes",),
    )


def _curvature_result() -> LensResult:
    k = np.arange(1, 11)
    eig = 10.0 / k
    figs = (
        F.bars("top_eigs", "Top Hessian eigenvalues", [f"λ{i}" for i in k], eig, eig * 0.95, eig * 1.05, ylog=True),
        F.line_with_errorbars("trace_vs_probes", "Hutchinson trace vs probes", [4, 8, 16, 32, 64],
                              [10.2, 9.9, 10.05, 10.01, 10.0], [9.0, 9.3, 9.7, 9.8, 9.9],
                              [11.4, 10.5, 10.4, 10.2, 10.1], xlog=True, xlabel="probes", ylabel="trace"),
    )  # fmt: skip
    return LensResult(
        lens="curvature",
        estimates=(
            Estimate("lambda_max", 10.0, 9.9, 10.1, 0.05, 0.9, "lanczos over 3 seeds", 3, converged=True, n_iter=40),
            Estimate("trace", 10.0, stderr=0.1, n=64, converged=False, n_iter=500, note="hit the cap"),
        ),
        checks=(
            Check("edge_of_stability", False, 10.0, 2 / 0.1, 0.5, "lambda_max 10 < 2/lr = 20", "info", kind="bound"),
        ),
        figures=figs,
        notes=(XSS,),
    )


def _hostile_result() -> LensResult:
    fig = F.line_with_band("hostile", SCRIPT_BREAKER, [1, 2, 3], [1, 4, 9], name=SCRIPT_BREAKER, caption=XSS)
    return LensResult(
        lens="calibration",
        estimates=(Estimate(f"ece {XSS}", 0.012345678, 0.01, 0.015, level=0.95, method="bootstrap"),),
        checks=(Check(f"ece_small {XSS}", True, 0.012, 0.0, 0.02, f"ok {XSS}", kind="agreement"),),
        figures=(fig,),
        notes=(f"note {XSS}",),
        data={"payload": SCRIPT_BREAKER},
    )


def _phase(name: str, title: str, status: str, result: LensResult | None, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "title": title,
        "status": status,
        "wall_time_s": 12.5,
        "consumes": {"train_runs": "list"},
        "produces": {name: "LensResult"},
        "error": None,
        "result": None if result is None else result.to_dict(),
        "metrics": {f"{name}.metric": 0.5, f"{name}.missing": None},
    } | extra


def make_summary() -> dict[str, Any]:
    """A summary with 5 phases (done x3, skipped, failed), 5 drawable figures and hostile text."""
    return {
        "schema_version": 1,
        "title": "Capstone smoke run",
        "profile": "smoke",
        "seed": 12345,
        "status": "stopped",
        "stopped_at": "robustness",
        "wall_time_s": 754.2,
        "started_utc": "2026-01-01T00:00:00Z",
        "phases": [
            _phase("scaling", "Scaling laws", "done", _scaling_result()),
            _phase("curvature", "Curvature", "done", _curvature_result()),
            _phase("calibration", f"Calibration {XSS}", "done", _hostile_result()),
            _phase("fairness", "Fairness", "skipped", None),
            _phase("robustness", "Robustness", "failed", None, error="Traceback ...\nValueError: <bad> | boom"),
        ],
        "gates": [
            {
                "name": "fit_quality",
                "metric": "scaling.r2",
                "value": 0.9987,
                "op": ">=",
                "threshold": 0.9,
                "action": "stop",
                "passed": True,
                "reason": "r2 0.9987 >= 0.9",
                "phase": "scaling",
            },
            {
                "name": "trace_converged",
                "metric": "curvature.metric",
                "value": 0.5,
                "op": "<=",
                "threshold": 0.1,
                "action": "warn",
                "passed": False,
                "reason": "0.5 > 0.1",
                "phase": "curvature",
            },
            {
                "name": "robust_acc",
                "metric": "robustness.acc",
                "value": None,
                "op": ">",
                "threshold": 0.5,
                "action": "stop",
                "passed": False,
                "reason": "phase failed",
                "phase": "robustness",
            },
            {
                "name": "unmeasured",
                "metric": "x.y",
                "value": None,
                "op": "<",
                "threshold": 1.0,
                "action": "warn",
                "passed": None,
                "reason": "not measured",
                "phase": "fairness",
            },
        ],  # fmt: skip
        "cross_checks": [
            Check("sharpness_vs_generalization", True, 0.8, 0.7, 0.2, "agree", kind="agreement").to_dict(),
            Check("calibration_vs_scaling", None, None, None, None, "needs both phases", kind="agreement").to_dict(),
        ],
        "recommendations": [{"text": "Use lr <= 0.1 | measured", "source": "curvature", "rests_on": ["ece_small"]}],
        "risks": [
            {
                "id": "R1",
                "title": "Sharp minima",
                "trigger": "lambda_max > 2/lr",
                "likelihood": "low",
                "impact": "high",
                "mitigation": "lower lr",
                "status": "open",
            },
        ],  # fmt: skip
        "checklist": [
            {"item": "seeds recorded", "status": "done", "evidence": "manifest.seeds"},
            {"item": "data checksums", "status": "partial", "evidence": "digits only"},
            {"item": "hardware", "status": "missing", "evidence": ""},
        ],
        "artifacts": {"summary": "summary.json", "store": "runs.sqlite", "evil": "javascript:alert(1)"},
    }


def make_manifest() -> dict[str, Any]:
    return {
        "package_versions": {"numpy": "2.4.6", "torch": "2.13.0"},
        "python": "3.11.9",
        "torch": "2.13.0",
        "git_commit": None,
        "cpu": "2 cores",
        "seeds": [12345, 12346],
        "config": {"scaling": {"sizes": [1000, 3000]}, "note": XSS + " ```"},
        "config_hashes": {"scaling": "abc123"},
        "data_checksums": {"digits": "sha256:0f"},
        "command": "multilens run --profile smoke",
        "wall_times": {"scaling": 12.5},
    }


def _n_figures(summary: dict[str, Any]) -> int:
    return sum(len((p.get("result") or {}).get("figures", [])) for p in summary["phases"])


@pytest.fixture
def summary() -> dict[str, Any]:
    """A fresh synthetic summary (tests may mutate it)."""
    return copy.deepcopy(make_summary())


@pytest.fixture
def manifest() -> dict[str, Any]:
    return make_manifest()


@pytest.fixture
def n_figures() -> int:
    """How many (drawable) figures the synthetic summary has."""
    return _n_figures(make_summary())


@pytest.fixture
def hostile() -> dict[str, str]:
    """The hostile strings planted in the synthetic summary."""
    return {"xss": XSS, "breaker": SCRIPT_BREAKER}
