from __future__ import annotations

import sqlite3

import pytest

from multilens.errors import StoreError
from multilens.experiments.store import Store


def test_lifecycle_and_uniqueness(tmp_path):
    with Store(tmp_path / "r.sqlite") as s:
        s.mark_running("h1", 0, "sw", {"a": 1})
        assert s.status("h1", 0) == "running"
        s.mark_done("h1", 0, {"loss": 0.5}, {"step": [1]}, 1.0)
        assert s.status("h1", 0) == "done"
        with pytest.raises(StoreError, match="already done"):
            s.mark_running("h1", 0, "sw", {"a": 1})
        s.mark_running("h2", 0, "sw", {"a": 2})
        s.mark_failed("h2", 0, "boom", 0.1)
        s.mark_running("h2", 0, "sw", {"a": 2})  # retried, not duplicated
        assert s.counts() == {"done": 1, "running": 1}
        assert [r.attempts for r in s.runs()] == [1, 2]
    con = sqlite3.connect(tmp_path / "r.sqlite")
    with pytest.raises(sqlite3.IntegrityError):
        con.execute(
            "INSERT INTO runs (config_hash, seed, status, sweep, config_json) VALUES ('h1', 0, 'done', 'sw', '{}')"
        )
    with pytest.raises(sqlite3.IntegrityError):
        con.execute(
            "INSERT INTO runs (config_hash, seed, status, sweep, config_json) VALUES ('h9', 0, 'weird', 'sw', '{}')"
        )


def test_nan_metrics_are_rejected(tmp_path):
    with Store(tmp_path / "r.sqlite") as s:
        s.mark_running("h", 0, "sw", {})
        with pytest.raises(ValueError):
            s.mark_done("h", 0, {"loss": float("nan")}, {}, 1.0)
        assert s.status("h", 0) == "running"  # the failed transaction left nothing half-written


def test_not_a_database(tmp_path):
    p = tmp_path / "r.sqlite"
    p.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable SQLite"):
        Store(p)


def test_runs_done_by_other_code_are_stale_and_redone_unless_reused(tmp_path):
    """Issue 8.9: a cache keyed on config and seed alone would reuse old numbers under new code."""
    old = {"source_hash": "a" * 16, "git_commit": "old", "version": "0"}
    new = {"source_hash": "b" * 16, "git_commit": "new", "version": "0"}
    with Store(tmp_path / "r.sqlite", code=old) as s:
        s.mark_running("h", 0, "sw", {})
        s.mark_done("h", 0, {"loss": 0.5}, {}, 1.0)
        s.put_phase("p", "ph", 0, {"x": 1})
    with Store(tmp_path / "r.sqlite", code=new) as s:
        assert s.status("h", 0) == "stale" and s.get_phase("p", "ph", 0) is None
        s.mark_running("h", 0, "sw", {})  # a stale run may be reclaimed and recomputed
        s.mark_done("h", 0, {"loss": 0.4}, {}, 1.0)
        assert s.status("h", 0) == "done" and s.runs()[0].attempts == 2
    with Store(tmp_path / "r.sqlite", code=old, reuse_stale=True) as s:
        assert s.status("h", 0) == "done"  # reused on request
        payload, code = s.get_phase("p", "ph", 0)
        assert payload == {"x": 1} and code["git_commit"] == "old"
