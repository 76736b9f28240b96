"""The capstone protocol runner: ordered phases, typed hand-offs, gates, governance artifacts.

``run_protocol`` executes the configured phases in order. Before anything runs it checks that
every artifact a phase consumes is produced, with the same type, by an earlier phase. After each
phase it evaluates the policy's gates for that phase; a failed ``stop`` gate halts the protocol
(the report says where and why), a failed ``warn`` gate raises a risk. A phase that raises is
recorded as failed with its error; phases that need its artifacts are skipped, the rest run.

Resumability: each phase's output is cached in the store under (phase, config hash, seed), and
sweeps inside phases skip runs already done, so running again with the same --out recomputes
nothing that finished.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from multilens.errors import ConfigError
from multilens.experiments.store import Store
from multilens.lenses.registry import get_lens
from multilens.protocol.config import RunConfig
from multilens.protocol.gates import GateResult, Policy, evaluate_policy, load_policy
from multilens.protocol.phase import PhaseContext, PhaseOutput

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class PhaseRecord:
    name: str
    title: str
    status: str  # done | failed | skipped | stopped
    wall_time_s: float
    consumes: dict[str, str]
    produces: dict[str, str]
    error: str | None
    result: dict[str, Any] | None
    metrics: dict[str, Any]
    recommendations: list[str]
    cached: bool
    config_hash: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "status": self.status,
            "wall_time_s": self.wall_time_s,
            "consumes": self.consumes,
            "produces": self.produces,
            "error": self.error,
            "result": self.result,
            "metrics": self.metrics,
            "recommendations": self.recommendations,
            "cached": self.cached,
            "config_hash": self.config_hash,
        }


def _tname(t: Any) -> str:
    return getattr(t, "__name__", str(t))


# Hand-offs are persisted in the store as JSON (so a resumed protocol can reuse them).
JSON_TYPES = (dict, list, float, int, str, bool)


def build_phases(cfg: RunConfig) -> list[Any]:
    """Instantiate the phases and check the typed hand-offs between them."""
    phases = [get_lens(p).load("phase")() for p in cfg.phases]
    available: dict[str, Any] = {}
    for ph in phases:
        for name, typ in ph.produces.items():
            if typ not in JSON_TYPES:
                raise ConfigError(
                    f"phase `{ph.name}` declares `{name}` as {_tname(typ)}; hand-offs must be JSON types "
                    f"({', '.join(t.__name__ for t in JSON_TYPES)}) so they can be stored."
                )
        for name, typ in ph.consumes.items():
            if name not in available:
                raise ConfigError(
                    f"phase `{ph.name}` consumes `{name}`, which no earlier phase produces; "
                    f"add its producer to `phases` before `{ph.name}`."
                )
            if available[name] is not typ:
                raise ConfigError(
                    f"phase `{ph.name}` consumes `{name}` as {_tname(typ)} but it is produced as "
                    f"{_tname(available[name])}."
                )
        available.update(ph.produces)
    return phases


def _phase_payload(out: PhaseOutput) -> dict[str, Any]:
    return {
        "result": out.result.to_dict(),
        "artifacts": out.artifacts,
        "metrics": out.metrics,
        "recommendations": list(out.recommendations),
    }


def _gate(
    policy: Policy, metrics: dict[str, Any], phase: str, gates: list[GateResult], status: str, stopped_at: str | None
) -> tuple[str, str | None]:
    """Evaluate the gates that follow ``phase``; a blocking failure stops the protocol."""
    results = evaluate_policy(policy, metrics, phase=phase)
    gates.extend(results)
    if any(g.blocks for g in results):
        return "stopped", phase or "end"
    return status, stopped_at


def run_protocol(
    cfg: RunConfig,
    out_dir: Path,
    executor: Any,
    policy: Policy | None = None,
    progress: Progress | None = None,
    on_phase: Callable[[str, str], None] | None = None,
) -> dict[str, Any]:
    """Run every phase, evaluate gates; return the summary (also persisted by the caller)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    policy = policy if policy is not None else load_policy(cfg.policy or None)
    phases = build_phases(cfg)
    t_start = time.perf_counter()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    records: list[PhaseRecord] = []
    gates: list[GateResult] = []
    metrics: dict[str, Any] = {}
    artifacts: dict[str, Any] = {}
    failed_producers: set[str] = set()
    status, stopped_at = "complete", None
    with Store(out_dir / "results.sqlite") as store:
        store.put_meta("run_config", cfg.to_dict())
        for ph in phases:
            h = cfg.phase_hash(ph.name)
            cons = {k: _tname(v) for k, v in ph.consumes.items()}
            prod = {k: _tname(v) for k, v in ph.produces.items()}
            if status == "stopped":
                records.append(
                    PhaseRecord(
                        ph.name,
                        ph.title,
                        "stopped",
                        0.0,
                        cons,
                        prod,
                        f"not run: the protocol stopped at gate(s) after `{stopped_at}`",
                        None,
                        {},
                        [],
                        False,
                        h,
                    )
                )
                continue
            missing = [k for k in ph.consumes if k in failed_producers or k not in artifacts]
            if missing:
                records.append(
                    PhaseRecord(
                        ph.name,
                        ph.title,
                        "skipped",
                        0.0,
                        cons,
                        prod,
                        f"skipped: needs {missing}, which a failed phase did not produce",
                        None,
                        {},
                        [],
                        False,
                        h,
                    )
                )
                failed_producers.update(ph.produces)
                status, stopped_at = _gate(policy, metrics, ph.name, gates, status, stopped_at)
                continue
            if on_phase:
                on_phase(ph.name, ph.title)
            t0 = time.perf_counter()
            payload = store.get_phase(ph.name, h, cfg.seed)
            cached = payload is not None
            error = None
            if payload is None:
                ctx = PhaseContext(
                    cfg.profile,
                    cfg.seed,
                    out_dir,
                    cfg.sections.get(ph.name, {}),
                    dict(artifacts),
                    store,
                    executor,
                    progress,
                )
                try:
                    out = ph.run(ctx)
                    for name, typ in ph.produces.items():
                        if not isinstance(out.artifacts.get(name), typ):
                            raise TypeError(
                                f"phase `{ph.name}` declared it produces `{name}` as "
                                f"{_tname(typ)} but returned {type(out.artifacts.get(name)).__name__}"
                            )
                    payload = _phase_payload(out)
                    store.put_phase(ph.name, h, cfg.seed, payload)
                except Exception as e:  # a failing phase is recorded; the protocol goes on
                    payload = None  # including one whose output could not be stored
                    error = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=6)}"
            wall = time.perf_counter() - t0
            if payload is None:
                records.append(
                    PhaseRecord(ph.name, ph.title, "failed", wall, cons, prod, error, None, {}, [], False, h)
                )
                failed_producers.update(ph.produces)
                status, stopped_at = _gate(policy, metrics, ph.name, gates, status, stopped_at)
                continue
            artifacts.update(payload["artifacts"])
            metrics.update(payload["metrics"])
            records.append(
                PhaseRecord(
                    ph.name,
                    ph.title,
                    "done",
                    wall,
                    cons,
                    prod,
                    None,
                    payload["result"],
                    payload["metrics"],
                    payload["recommendations"],
                    cached,
                    h,
                )
            )
            status, stopped_at = _gate(policy, metrics, ph.name, gates, status, stopped_at)
        if status != "stopped":
            status, stopped_at = _gate(policy, metrics, "", gates, status, stopped_at)
        # Gates of phases that are not in this run are reported as not evaluated (not as failures).
        ran = {r.name for r in records}
        for g in policy.gates:
            if g.phase and g.phase not in ran:
                gates.append(
                    GateResult(
                        g.name,
                        g.kind,
                        ",".join(g.metrics),
                        None,
                        g.op,
                        g.threshold,
                        g.action,
                        None,
                        f"not evaluated: phase `{g.phase}` is not in this run",
                        g.phase,
                    )
                )
        if any(r.status == "failed" for r in records) and status == "complete":
            status = "failed"
        store_counts = store.counts()
    return {
        "schema_version": 1,
        "title": cfg.title,
        "profile": cfg.profile,
        "seed": cfg.seed,
        "status": status,
        "stopped_at": stopped_at,
        "started_utc": started,
        "wall_time_s": time.perf_counter() - t_start,
        "phases": [r.to_dict() for r in records],
        "gates": [g.to_dict() for g in gates],
        "metrics": metrics,
        "store_counts": store_counts,
        "policy": {"source": policy.source, "gates": [g.name for g in policy.gates]},
    }
