"""`multilens run` and `multilens lens` reject bad input with one line and exit 2, before any work."""

from __future__ import annotations

from typer.testing import CliRunner

from multilens.cli import app

runner = CliRunner()


def _one_line_exit_2(args, fragment):
    r = runner.invoke(app, args)
    assert r.exit_code == 2, (args, r.output)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("multilens: error:") and fragment in lines[0], r.stderr
    assert "Traceback" not in r.output


def test_run_bad_inputs(tmp_path):
    out = str(tmp_path / "out")
    _one_line_exit_2(["run", "--address", "1.2.3.4", "--out", out], "--address")
    _one_line_exit_2(["run", "--config", str(tmp_path / "none.toml"), "--out", out], "does not exist")
    bad = tmp_path / "bad.toml"
    bad.write_text('phases = ["scaling"]\n[scaling]\nseedz = 3\n')
    _one_line_exit_2(["run", "--config", str(bad), "--out", out], "`scaling.seedz`")
    bad.write_text('phases = ["astrology"]\n')
    _one_line_exit_2(["run", "--config", str(bad), "--out", out], "unknown lens `astrology`")
    bad.write_text('phases = ["scaling"]\n[scaling]\nbudgets = [1e9, 1e6, 1e7]\n')
    _one_line_exit_2(["run", "--config", str(bad), "--out", out], "increasing")
    assert not (tmp_path / "out").exists()  # nothing ran


def test_lens_bad_inputs():
    _one_line_exit_2(["lens", "nope"], "unknown lens")
    _one_line_exit_2(["lens", "curvature", "--set", "k=0"], "`k` must be an int >= 1")
    _one_line_exit_2(["lens", "distributed", "--set", "bogus=1"], "unknown config key `distributed.bogus`")
    _one_line_exit_2(["lens", "scaling", "--set", "noequals"], "key=value")
