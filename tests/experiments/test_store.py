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
