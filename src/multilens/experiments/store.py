"""The results store: one embedded SQLite file per run directory (``results.sqlite``).

Table ``runs`` is keyed by ``(config_hash, seed)`` (unique), with ``status`` one of ``done``,
``failed``, ``running``. A finished run's metrics and curves are written in one transaction, so
a run killed at any point is either fully ``done`` or not. On resume, ``done`` rows are never
rewritten (their bytes stay the same); ``running`` rows (killed mid-way) and ``failed`` rows are
redone. Table ``phase_results`` caches each protocol phase's JSON output so ``multilens report``
can re-render a report without recomputing anything. Nothing is pickled: payloads are JSON.

Every finished run and cached phase records the code that produced it (package version, git
commit, and a hash of the package's sources: :func:`multilens.provenance.code_identity`). A result
produced by other code is *stale*: it is recomputed, unless the store was opened with
``reuse_stale=True``, in which case it is reused and reported as "cached from <commit>".
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from multilens.errors import StoreError

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    config_hash TEXT NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('done', 'failed', 'running')),
    sweep TEXT NOT NULL,
    config_json TEXT NOT NULL,
    metrics_json TEXT,
    curves_json TEXT,
    error TEXT,
    started_utc TEXT,
    finished_utc TEXT,
    wall_time_s REAL,
    attempts INTEGER NOT NULL DEFAULT 1,
    code_hash TEXT,
    code_commit TEXT,
    UNIQUE (config_hash, seed)
);
CREATE TABLE IF NOT EXISTS phase_results (
    phase TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    seed INTEGER NOT NULL,
    payload_json TEXT NOT NULL,
    finished_utc TEXT NOT NULL,
    code_json TEXT NOT NULL,
    UNIQUE (phase, config_hash, seed)
);
"""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(frozen=True)
class RunRecord:
    config_hash: str
    seed: int
    status: str
    sweep: str
    config: dict[str, Any]
    metrics: dict[str, Any] | None
    curves: dict[str, Any] | None
    error: str | None
    wall_time_s: float | None
    attempts: int


class Store:
    """A thin, explicit wrapper around the SQLite file. Only the parent process writes."""

    def __init__(self, path: str | Path, *, reuse_stale: bool = False, code: dict[str, Any] | None = None) -> None:
        from multilens.provenance import code_identity

        self.path = Path(path)
        self.reuse_stale = reuse_stale
        self.code = dict(code) if code is not None else code_identity()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            self._con.execute("PRAGMA journal_mode=WAL")
            self._con.execute("PRAGMA synchronous=FULL")
            self._con.executescript(_SCHEMA)
            row = self._con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                self._con.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) != SCHEMA_VERSION:
                raise StoreError(
                    f"store `{self.path}` has schema version {row[0]}, this multilens needs "
                    f"{SCHEMA_VERSION}; use a new --out directory."
                )
        except sqlite3.DatabaseError as e:
            raise StoreError(
                f"store `{self.path}` is not a usable SQLite database ({e}); use a new --out directory."
            ) from None

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._con.execute("BEGIN IMMEDIATE")
        try:
            yield self._con
        except BaseException:
            self._con.execute("ROLLBACK")
            raise
        self._con.execute("COMMIT")

    # --- runs -------------------------------------------------------------------------------
    def status(self, config_hash: str, seed: int) -> str | None:
        """``done``, ``failed``, ``running``, None (no row), or ``stale`` (done by other code)."""
        row = self._con.execute(
            "SELECT status, code_hash FROM runs WHERE config_hash=? AND seed=?", (config_hash, seed)
        ).fetchone()
        if row is None:
            return None
        if row[0] == "done" and row[1] != self.code["source_hash"] and not self.reuse_stale:
            return "stale"
        return str(row[0])

    def mark_running(self, config_hash: str, seed: int, sweep: str, config: dict[str, Any]) -> None:
        """Claim a run; a row left ``running`` by a killed process is reclaimed, never duplicated."""
        cfg = json.dumps(config, sort_keys=True)
        with self._tx() as con:
            row = con.execute("SELECT status FROM runs WHERE config_hash=? AND seed=?", (config_hash, seed)).fetchone()
            if row is None:
                con.execute(
                    "INSERT INTO runs (config_hash, seed, status, sweep, config_json, started_utc) "
                    "VALUES (?, ?, 'running', ?, ?, ?)",
                    (config_hash, seed, sweep, cfg, _now()),
                )
            elif row[0] == "done" and self.status(config_hash, seed) != "stale":
                raise StoreError(f"run {config_hash}/{seed} is already done; it must not be recomputed.")
            else:
                con.execute(
                    "UPDATE runs SET status='running', error=NULL, started_utc=?, attempts=attempts+1 "
                    "WHERE config_hash=? AND seed=?",
                    (_now(), config_hash, seed),
                )

    def mark_done(
        self, config_hash: str, seed: int, metrics: dict[str, Any], curves: dict[str, Any], wall_time_s: float
    ) -> None:
        """Write a finished run's metrics and curves in one transaction."""
        with self._tx() as con:
            cur = con.execute(
                "UPDATE runs SET status='done', metrics_json=?, curves_json=?, error=NULL, "
                "finished_utc=?, wall_time_s=?, code_hash=?, code_commit=? "
                "WHERE config_hash=? AND seed=? AND status!='done'",
                (
                    json.dumps(metrics, sort_keys=True, allow_nan=False),
                    json.dumps(curves, sort_keys=True, allow_nan=False),
                    _now(),
                    float(wall_time_s),
                    self.code["source_hash"],
                    self.code.get("git_commit"),
                    config_hash,
                    seed,
                ),
            )
            if cur.rowcount != 1:
                raise StoreError(f"run {config_hash}/{seed} was not claimed before finishing.")

    def mark_failed(self, config_hash: str, seed: int, error: str, wall_time_s: float) -> None:
        with self._tx() as con:
            con.execute(
                "UPDATE runs SET status='failed', error=?, finished_utc=?, wall_time_s=? "
                "WHERE config_hash=? AND seed=? AND status!='done'",
                (error, _now(), float(wall_time_s), config_hash, seed),
            )

    def runs(self, sweep: str | None = None, status: str | None = None) -> list[RunRecord]:
        q = (
            "SELECT config_hash, seed, status, sweep, config_json, metrics_json, curves_json, error, wall_time_s, "
            "attempts FROM runs"
        )
        cond, args = [], []
        if sweep is not None:
            cond.append("sweep=?")
            args.append(sweep)
        if status is not None:
            cond.append("status=?")
            args.append(status)
        if cond:
            q += " WHERE " + " AND ".join(cond)
        q += " ORDER BY sweep, config_hash, seed"
        out = []
        for r in self._con.execute(q, args).fetchall():
            out.append(
                RunRecord(
                    r[0],
                    int(r[1]),
                    r[2],
                    r[3],
                    json.loads(r[4]),
                    json.loads(r[5]) if r[5] else None,
                    json.loads(r[6]) if r[6] else None,
                    r[7],
                    r[8],
                    int(r[9]),
                )
            )
        return out

    def raw_rows(self) -> list[tuple[Any, ...]]:
        """Every column of every run row, for byte-for-byte resume checks."""
        return self._con.execute("SELECT * FROM runs ORDER BY config_hash, seed").fetchall()

    def counts(self) -> dict[str, int]:
        rows = self._con.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall()
        return {str(s): int(n) for s, n in rows}

    # --- phase results ----------------------------------------------------------------------
    def put_phase(self, phase: str, config_hash: str, seed: int, payload: dict[str, Any]) -> None:
        with self._tx() as con:
            con.execute(
                "INSERT INTO phase_results VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(phase, config_hash, seed) DO UPDATE SET payload_json=excluded.payload_json, "
                "finished_utc=excluded.finished_utc, code_json=excluded.code_json",
                (
                    phase,
                    config_hash,
                    seed,
                    json.dumps(payload, sort_keys=True, allow_nan=False),
                    _now(),
                    json.dumps(self.code, sort_keys=True),
                ),
            )

    def get_phase(self, phase: str, config_hash: str, seed: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """``(payload, code)`` of a cached phase result, or None when absent or stale (see class doc)."""
        row = self._con.execute(
            "SELECT payload_json, code_json FROM phase_results WHERE phase=? AND config_hash=? AND seed=?",
            (phase, config_hash, seed),
        ).fetchone()
        if row is None:
            return None
        code = json.loads(row[1])
        if code.get("source_hash") != self.code["source_hash"] and not self.reuse_stale:
            return None
        return json.loads(row[0]), code

    def put_meta(self, key: str, value: Any) -> None:
        with self._tx() as con:
            con.execute(
                "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (key, json.dumps(value, sort_keys=True, allow_nan=False)),
            )

    def get_meta(self, key: str) -> Any:
        row = self._con.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])
