"""End to end: `multilens run` killed with SIGKILL mid-sweep resumes with nothing lost or duplicated."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

CONFIG = """
profile = "smoke"
seed = 7
phases = ["scaling"]
[scaling]
seeds = 3
bootstrap = 20
widths = [2, 4, 8, 16, 32, 64, 128]
lr_tuning = false   # one sweep only, so every stored run is a row of the fitted table
invariance = false
"""


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from multilens.cli import main; main()", *args]


def _rows(db: Path) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT * FROM runs ORDER BY config_hash, seed").fetchall()
    finally:
        con.close()


def _count_done(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(db, timeout=1)
        try:
            return con.execute("SELECT COUNT(*) FROM runs WHERE status='done'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:
        return 0


def test_sigkill_mid_sweep_then_resume(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text(CONFIG)
    out = tmp_path / "run"
    db = out / "results.sqlite"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    log = tmp_path / "killed.log"
    with open(log, "wb") as fh:
        p = subprocess.Popen(
            _cli("run", "--config", str(cfg), "--out", str(out), "--workers", "2"),
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    deadline = time.time() + 240
    while time.time() < deadline and _count_done(db) < 4 and p.poll() is None:
        time.sleep(0.05)
    assert p.poll() is None, f"the run ended before it could be killed: {log.read_text()[-500:]}"
    os.killpg(p.pid, signal.SIGKILL)  # the CLI and its pool workers, with no chance to clean up
    p.wait(timeout=30)
    killed = _rows(db)
    done_before = {(r[0], r[1]): r for r in killed if r[2] == "done"}
    assert len(done_before) >= 4
    assert any(r[2] == "running" for r in killed), "nothing was in flight when killed; the test proved nothing"
    assert not (out / "summary.json").exists()

    r = subprocess.run(
        _cli("run", "--config", str(cfg), "--out", str(out), "--workers", "2"),
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert r.returncode in (0, 1), r.stderr[-2000:]  # 1 = a gate failed on smoke data; still complete
    after = _rows(db)
    keys = [(row[0], row[1]) for row in after]
    assert len(keys) == len(set(keys)), "duplicated runs"
    assert all(row[2] == "done" for row in after), "interrupted runs were not redone"
    for k, row in done_before.items():
        assert next(a for a in after if (a[0], a[1]) == k) == row, "a finished run was rewritten"
    assert max(row[11] for row in after) >= 2, "no interrupted run was retried"  # attempts column
    summary = json.loads((out / "summary.json").read_text())
    data = summary["phases"][0]["result"]["data"]
    sweep = summary["phases"][0]["result"]["provenance"]["sweep"]
    # the fitted table is the main sweep; the store also holds the phase's other sweeps (all resumed alike)
    assert data["n_runs"] <= len(after) and 0 < sweep["executed_now"] <= len(after) - len(done_before)
    assert sweep["reused_done"] + sweep["executed_now"] == sweep["total"]
    for name in ("report.html", "report.md", "manifest.json", "assumptions.md", "risks.md", "checklist.md"):
        assert (out / name).stat().st_size > 0, name

    # A second rerun recomputes nothing (phase cached) and `multilens report` re-renders from the store.
    before_html = (out / "report.html").stat().st_mtime_ns
    r2 = subprocess.run(_cli("report", str(out)), capture_output=True, text=True, env=env, timeout=300)
    assert r2.returncode == 0, r2.stderr
    assert (out / "report.html").stat().st_mtime_ns != before_html
    assert _rows(db) == after
