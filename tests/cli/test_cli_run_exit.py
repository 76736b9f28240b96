"""`multilens run` exit codes and last line (issue 8.1), the run-directory lock (8.12), umask (8.11).

The exit codes are tested through the real CLI with the default policy: the fake lenses of
tests/protocol stand in for the registry so that a phase can crash on demand.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from multilens.cli import app
from multilens.io import atomic_write_text
from multilens.lenses import registry
from multilens.lenses.registry import LensEntry

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "protocol"))

runner = CliRunner()
PRODUCER = LensEntry("producer", "producer", "_fake_lens", "fake producer", "p", "a float",
                     produces={"fake.value": float}, key_checks=("v positive",))  # fmt: skip


@pytest.fixture
def fake_registry(monkeypatch):
    import multilens.protocol.config as pc

    monkeypatch.setattr(registry, "LENSES", (PRODUCER,))
    monkeypatch.setattr(pc, "LENSES", (PRODUCER,))


def _run(tmp_path, body: str, *extra: str):
    cfg = tmp_path / "run.toml"
    cfg.write_text(textwrap.dedent(body))
    return runner.invoke(app, ["run", "--config", str(cfg), "--out", str(tmp_path / "out"), *extra])


def test_complete_run_exits_0_with_default_policy(tmp_path, fake_registry):
    r = _run(tmp_path, 'phases = ["producer"]\n')
    assert r.exit_code == 0, r.output
    assert r.stdout.strip().splitlines()[-1].startswith("protocol complete")


def test_crashed_phase_exits_1_and_says_so(tmp_path, fake_registry):
    r = _run(tmp_path, 'phases = ["producer"]\n[producer]\nfail = true\n')
    assert r.exit_code == 1, r.output
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("protocol failed") and "`producer`" in last


def test_blocking_stop_gate_exits_1_and_names_the_gate(tmp_path, fake_registry):
    pol = tmp_path / "policy.toml"
    pol.write_text(
        '[[gate]]\nname = "value big"\nkind = "threshold"\ninputs = { value = "metric:fake.value" }\n'
        'op = ">="\nthreshold = 5.0\naction = "stop"\nphase = "producer"\n'
    )
    r = _run(tmp_path, f'phases = ["producer"]\npolicy = "{pol}"\n')
    assert r.exit_code == 1, r.output
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("protocol stopped") and "`value big`" in last


def test_artifacts_honour_the_umask(tmp_path):
    old = os.umask(0o002)
    try:
        p = atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert p.stat().st_mode & 0o777 == 0o664


def test_second_writer_on_the_same_run_dir_exits_2_and_a_dead_holder_is_taken_over(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from multilens.experiments.lock import RunDirLock\n"
         f"l = RunDirLock({str(out)!r}).acquire(); print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        r = subprocess.run([sys.executable, "-m", "multilens.cli", "run", "--profile", "smoke", "--out", str(out)],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
        assert r.returncode == 2, r.stderr
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and f"in use by process {holder.pid}" in lines[0] and "Traceback" not in r.stderr
        assert not (out / "results.sqlite").exists()  # nothing was computed
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        holder.stdout.close()
    from multilens.experiments.lock import RunDirLock

    t0 = time.monotonic()
    with RunDirLock(out):  # the dead holder's lock is taken over at once
        pass
    assert time.monotonic() - t0 < 5


def test_lens_exits_1_when_an_error_agreement_check_fails_and_0_otherwise(tmp_path, fake_registry):
    """Issue 8.13: `multilens lens` is usable in CI: a failed error-severity agreement check exits 1."""
    ok = runner.invoke(app, ["lens", "producer", "--out", str(tmp_path / "a")])
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.strip().splitlines()[-1] == "lens producer: no error-severity evidence check failed"
    bad = runner.invoke(app, ["lens", "producer", "--set", "value=-1.0", "--out", str(tmp_path / "b")])
    assert bad.exit_code == 1, bad.output
    assert "v positive" in bad.stdout.strip().splitlines()[-1]


def test_lens_help_lists_every_lens():
    r = runner.invoke(app, ["lens", "--help"])
    assert r.exit_code == 0
    for e in registry.LENSES:
        assert e.name in r.stdout, e.name
