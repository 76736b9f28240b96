"""`multilens gate`: exit 0 when every gate passes, 1 when one fails, 2 on bad input."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from multilens.cli import app

runner = CliRunner()

POLICY = """
[[gate]]
name = "geometry"
kind = "geometry"
inputs = { m = "metric:margin", kappa = "metric:kappa" }
op = ">="
threshold = 0.12

[[gate]]
name = "certificate"
kind = "certificate"
inputs = { u = "metric:u", u_max = 0.015 }
op = ">="
threshold = 0.0
action = "stop"
"""


def _files(tmp_path, metrics, policy=POLICY):
    p, m = tmp_path / "policy.toml", tmp_path / "metrics.json"
    p.write_text(policy)
    m.write_text(json.dumps(metrics) if not isinstance(metrics, str) else metrics)
    return ["gate", "--policy", str(p), "--metrics", str(m)]


def test_all_pass_exits_0(tmp_path):
    r = runner.invoke(app, _files(tmp_path, {"margin": 0.18, "kappa": 0.5, "u": 0.012}) + ["--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert [g["passed"] for g in res] == [True, True]
    assert res[1]["value"] == 0.015 - 0.012


def test_a_failure_exits_1(tmp_path):
    r = runner.invoke(app, _files(tmp_path, {"margin": 0.18, "kappa": 4.0, "u": 0.017}))
    assert r.exit_code == 1
    assert "geometry" in r.stdout and "fail" in r.stdout


def test_missing_metric_is_a_failure_not_a_pass(tmp_path):
    r = runner.invoke(app, _files(tmp_path, {"margin": 0.18, "u": 0.01}))
    assert r.exit_code == 1


def test_bad_inputs_exit_2_with_one_line(tmp_path):
    cases = [
        _files(tmp_path, "{not json"),
        _files(tmp_path, [1, 2]),
        _files(tmp_path, {}, policy="[[gate]]\nname='x'\nkind='geometry'\ninputs={m=1}\nop='>='\nthreshold=1\n"),
        _files(tmp_path, {}, policy="this is = = not toml"),
        ["gate", "--policy", str(tmp_path / "missing.toml"), "--metrics", str(tmp_path / "m.json")],
    ]
    for args in cases:
        r = runner.invoke(app, args)
        assert r.exit_code == 2, (args, r.output)
        assert "Traceback" not in r.output
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("multilens: error:"), r.stderr
