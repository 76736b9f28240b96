"""Export a multilens run directory to MLflow: estimates, intervals, check verdicts, config, artifacts.

Every estimate becomes a metric ``<phase>.<estimate>`` with ``.ci_low``/``.ci_high`` beside it,
every check's verdict a metric ``check.<phase>.<check>`` (1 pass, 0 fail, -1 not evaluated) and a
tag, the config the run's params (flattened, dotted keys), and report.html plus summary.json the
run's artifacts. Use an SQLite tracking URI (``sqlite:///mlflow.db``); MLflow's file store is
deprecated. Needs ``mlflow-skinny`` (extra ``mlflow``).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from multilens.errors import ConfigError

_BAD = re.compile(r"[^A-Za-z0-9_\-./ ]")


def _key(text: str) -> str:
    return _BAD.sub("_", text)[:250]


def _flatten(d: Any, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    else:
        out[_key(prefix)] = json.dumps(d)[:6000] if not isinstance(d, str) else d[:6000]
    return out


def run_records(
    summary: dict[str, Any], manifest: dict[str, Any]
) -> tuple[dict[str, float], dict[str, str], dict[str, str]]:
    """(metrics, params, tags) of a run directory's summary and manifest."""
    metrics: dict[str, float] = {}
    tags: dict[str, str] = {
        "multilens.status": summary.get("status", ""),
        "multilens.headline": summary.get("headline", ""),
    }
    for ph in summary.get("phases", []):
        res = ph.get("result") or {}
        for e in res.get("estimates", []):
            base = _key(f"{ph['name']}.{e['name']}")
            for suffix, k in (("", "value"), (".ci_low", "ci_low"), (".ci_high", "ci_high")):
                if e.get(k) is not None:
                    metrics[base + suffix] = float(e[k])
        for c in res.get("checks", []):
            key = _key(f"check.{ph['name']}.{c['name']}")
            metrics[key] = {True: 1.0, False: 0.0, None: -1.0}[c.get("passed")]
            tags[key[:250]] = c.get("verdict") or ""
        tags[_key(f"phase.{ph['name']}")] = ph.get("status", "")
    for g in summary.get("gates", []):
        tags[_key(f"gate.{g['name']}")] = {True: "pass", False: "fail", None: "not evaluated"}[g.get("passed")]
    params = _flatten(manifest.get("config", {}))
    params["seed"] = str(summary.get("seed"))
    params["git_commit"] = str(manifest.get("git_commit"))
    return metrics, params, tags


def export_run(
    run_dir: str | Path, tracking_uri: str, experiment: str = "multilens", run_name: str | None = None
) -> str:
    """Log a run directory to MLflow; returns the MLflow run id."""
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as e:
        raise ConfigError("MLflow export needs mlflow-skinny: pip install 'multilens[mlflow]'.") from e
    d = Path(run_dir)
    sp, mp = d / "summary.json", d / "manifest.json"
    if not sp.is_file() or not mp.is_file():
        raise ConfigError(
            f"`{d}` has no summary.json/manifest.json; pass a directory written by multilens run or diagnose."
        )
    if tracking_uri.startswith("file:") or "://" not in tracking_uri:
        raise ConfigError(
            f"`--tracking-uri` {tracking_uri!r}: use an SQLite store such as sqlite:///mlflow.db "
            "(the file store is deprecated)."
        )
    summary, manifest = json.loads(sp.read_text()), json.loads(mp.read_text())
    metrics, params, tags = run_records(summary, manifest)
    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is not None:
        exp_id = exp.experiment_id
    else:
        # Artifacts next to the SQLite file (as `mlflow server` keeps ./mlartifacts), not in the caller's cwd.
        where = None
        if tracking_uri.startswith("sqlite:///"):
            where = (Path(tracking_uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()
        exp_id = client.create_experiment(experiment, artifact_location=where)
    run = client.create_run(exp_id, run_name=run_name or summary.get("title"), tags=tags)
    rid = run.info.run_id
    from mlflow.entities import Metric, Param

    ts = int(time.time() * 1000)
    items = list(metrics.items())
    for i in range(0, len(items), 500):
        client.log_batch(rid, metrics=[Metric(k, v, ts, 0) for k, v in items[i : i + 500]])
    pitems = list(params.items())
    for i in range(0, len(pitems), 90):
        client.log_batch(rid, params=[Param(k, v) for k, v in pitems[i : i + 90]])
    for name in ("report.html", "summary.json"):
        if (d / name).is_file():
            client.log_artifact(rid, str(d / name))
    client.set_terminated(rid, "FINISHED" if summary.get("status") == "complete" else "FAILED")
    return rid
