"""`multilens export mlflow` round-trips through an SQLite tracking store, read back with MlflowClient."""

from __future__ import annotations

import warnings

import pytest
import torch.nn.functional as F
from typer.testing import CliRunner

import multilens as ml
from convnet import ConvNet, digits_loaders
from multilens.cli import app


def test_export_round_trip(tmp_path, fast_settings):
    pytest.importorskip("mlflow", reason="extra `mlflow` not installed")
    from mlflow.tracking import MlflowClient

    train, holdout = digits_loaders(n_train=128)
    rep = ml.diagnose(
        ml.Subject(ConvNet().eval(), F.cross_entropy, train=train, holdout=holdout),
        ("curvature",),
        seed=0,
        out=tmp_path / "run",
        profile="smoke",
        settings=fast_settings,
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        r = CliRunner().invoke(app, ["export", "mlflow", str(tmp_path / "run"), "--tracking-uri", uri])
        assert r.exit_code == 0, r.output
        rid = r.stdout.strip().split()[-1]
        run = MlflowClient(tracking_uri=uri).get_run(rid)
        arts = {a.path for a in MlflowClient(tracking_uri=uri).list_artifacts(rid)}
    est = {e["name"]: e for e in rep.summary["phases"][0]["result"]["estimates"] if e["value"] is not None}
    name, e = next((k, v) for k, v in est.items() if v["ci_low"] is not None)
    assert run.data.metrics[f"curvature.{name}"] == pytest.approx(e["value"])
    assert run.data.metrics[f"curvature.{name}.ci_low"] == pytest.approx(e["ci_low"])
    checks = rep.summary["phases"][0]["result"]["checks"]
    c = checks[0]
    assert run.data.tags[f"check.curvature.{c['name']}"] == c["verdict"]
    assert run.data.params["seed"] == "0"
    assert {"report.html", "summary.json"} <= arts


def test_file_store_uri_is_refused_in_one_line(tmp_path):
    pytest.importorskip("mlflow", reason="extra `mlflow` not installed")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "summary.json").write_text("{}")
    (tmp_path / "run" / "manifest.json").write_text("{}")
    r = CliRunner().invoke(app, ["export", "mlflow", str(tmp_path / "run"), "--tracking-uri", str(tmp_path / "mlruns")])
    assert r.exit_code == 2 and "sqlite" in r.stderr
