"""The capstone protocol runner: ordered phases, typed hand-offs, gates, and an honest status.

``run_protocol`` executes the configured phases in order. Before anything runs it checks that
every artifact a phase consumes is produced, with the same type, by an earlier phase. After each
phase it evaluates the policy's gates for that phase; a failed ``stop`` gate halts the protocol,
a failed ``warn`` gate raises a risk. A phase that raises is recorded as failed with its error
(its key checks count as not evaluated); phases that need its artifacts are skipped, the rest run.

The status is computed from two independent facts: ``failed`` when any phase failed (whatever
the gates did), else ``stopped`` when a stop gate blocked, else ``complete``. Every gate of the
policy appears in the summary, with "not evaluated" and the reason when it could not run.

Resumability: each phase's output is cached in the store under (phase, config hash, seed) with
the code that produced it; sweeps inside phases skip runs already done by the same code. A cached
result from other code is recomputed, or with ``reuse_stale`` reused and marked "cached from
<commit>".
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from multilens.config import config_hash
from multilens.errors import ConfigError
from multilens.experiments.store import Store
from multilens.lenses.registry import get_lens
from multilens.protocol.config import RunConfig
from multilens.protocol.consistency import evaluate_consistency
from multilens.protocol.gates import GateResult, Policy, evaluate_gate, load_policy, not_evaluated
from multilens.protocol.perturb import recommendation_stability
from multilens.protocol.phase import LensPhase, PhaseContext, PhaseOutput
from multilens.protocol.stress import run_stress
from multilens.results import check_counts

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
    cached: bool
    config_hash: str
    cached_from: str | None = None  # the commit of stale code a reused result came from
    missing_checks: list[str] = field(default_factory=list)
    fallbacks: list[dict[str, Any]] = field(default_factory=list)  # reruns a fallback gate caused

    def to_dict(self) -> dict[str, Any]:
        res = self.result or {}
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
            "recommendations": [r | {"source": self.name} for r in res.get("recommendations", [])],
            "cached": self.cached,
            "cached_from": self.cached_from,
            "config_hash": self.config_hash,
            "missing_checks": self.missing_checks,
            "fallbacks": self.fallbacks,
            "check_counts": res.get("check_counts") or check_counts([]),
        }


def _tname(t: Any) -> str:
    return getattr(t, "__name__", str(t))


# Hand-offs are persisted in the store as JSON (so a resumed protocol can reuse them).
JSON_TYPES = (dict, list, float, int, str, bool)


def check_handoffs(phases: list[Any]) -> None:
    """Every consumed artifact is produced by an earlier phase with the same JSON type."""
    available: dict[str, Any] = {}
    for ph in phases:
        for name, typ in ph.produces.items():
            if typ not in JSON_TYPES:
                raise ConfigError(
                    f"phase `{ph.name}` declares `{name}` as {_tname(typ)}; hand-offs must be JSON types "
                    f"({', '.join(t.__name__ for t in JSON_TYPES)}) so they can be stored."
                )
        for name, typ in ph.uses.items():
            if name in available and available[name] is not typ:
                raise ConfigError(
                    f"phase `{ph.name}` uses `{name}` as {_tname(typ)} but it is produced as {_tname(available[name])}."
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


def build_phases(cfg: RunConfig) -> list[LensPhase]:
    """One generic phase per configured lens, with the hand-offs between them checked."""
    phases = [LensPhase(get_lens(p)) for p in cfg.phases]
    check_handoffs(phases)
    return phases


def _payload(out: PhaseOutput) -> dict[str, Any]:
    return {"result": out.result.to_dict(), "artifacts": out.artifacts, "metrics": out.metrics}


def protocol_status(records: list[PhaseRecord], gates: list[GateResult]) -> tuple[str, list[str], list[str]]:
    """(status, failed phases, blocking gates): failed takes precedence over stopped."""
    failed = [r.name for r in records if r.status == "failed"]
    blocking = [g.name for g in gates if g.blocks and not g.reason.startswith("not evaluated: phase")]
    status = "failed" if failed else ("stopped" if blocking else "complete")
    return status, failed, blocking


def _dotted_get(obj: Any, key: str) -> Any:
    for part in key.split("."):
        if obj is None:
            raise ConfigError(f"`{key}`: the part `{part}` is switched off in this run")
        obj = getattr(obj, part)
    return obj


def _dotted_set(table: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    out = dict(table)
    head, _, rest = key.partition(".")
    out[head] = _dotted_set(dict(out.get(head) or {}), rest, value) if rest else value
    return out


def rerun_config(cfg: RunConfig, phase: str, fb: Any, gate: str) -> tuple[RunConfig, list[dict[str, Any]]]:
    """The run config with the fallback's ``set``/``scale`` applied to ``phase``'s table, and what changed."""
    table = dict(cfg.sections.get(phase, {}))
    current = cfg.lens_config(phase)
    changed = []
    for key, value in fb.set.items():
        changed.append({"setting": f"{phase}.{key}", "before": _dotted_get(current, key), "after": value})
        table = _dotted_set(table, key, value)
    for key, factor in fb.scale.items():
        before = _dotted_get(current, key)
        if isinstance(before, bool) or not isinstance(before, (int, float)):
            raise ConfigError(f"gate `{gate}`: fallback scales `{phase}.{key}`, which is not a number ({before!r})")
        changed.append({"setting": f"{phase}.{key}", "before": before, "after": before * factor})
        table = _dotted_set(table, key, before * factor)
    new = dataclasses.replace(cfg, sections={**cfg.sections, phase: table})
    new.lens_config(phase)  # validate the changed settings now
    return new, changed


def _summary_of(v: Any, depth: int = 0) -> Any:
    """A short form of an artifact for the report: scalars, short lists, small nested tables."""
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    if isinstance(v, list):
        return [_summary_of(x, depth + 1) for x in v] if len(v) <= 8 and depth < 2 else f"<list of {len(v)}>"
    if isinstance(v, dict):
        if depth >= 2:
            return f"<table of {len(v)}>"
        return {k: _summary_of(x, depth + 1) for k, x in v.items()}
    return repr(v)[:80]


def run_protocol(
    cfg: RunConfig,
    out_dir: Path,
    executor: Any,
    policy: Policy | None = None,
    progress: Progress | None = None,
    on_phase: Callable[[str, str], None] | None = None,
    reuse_stale: bool = False,
    stress: bool | None = None,
) -> dict[str, Any]:
    """Run every phase, evaluate gates (running fallbacks), consistency rules and stress tests.

    ``stress`` None runs the policy's stress tests in the full profile only.
    """
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
    stopped_at: str | None = None
    handoffs: list[dict[str, Any]] = []
    with Store(out_dir / "results.sqlite", reuse_stale=reuse_stale) as store:
        store.put_meta("run_config", cfg.to_dict())

        def execute(
            ph: Any, run_cfg: RunConfig
        ) -> tuple[dict[str, Any] | None, bool, str | None, str | None, float, str]:
            """(payload, cached, cached_from, error, wall, hash) of one phase under ``run_cfg``."""
            inputs = {k: artifacts[k] for k in (*ph.consumes, *ph.uses) if k in artifacts}
            # The cache key covers the phase's config and the hand-offs it reads: a changed input
            # (another main model, another lambda_max) recomputes the phase instead of reusing it.
            base = run_cfg.phase_hash(ph.name)
            h = base if not inputs else config_hash({"phase": base, "inputs": inputs})
            t0 = time.perf_counter()
            hit = store.get_phase(ph.name, h, run_cfg.seed)
            if hit is not None:
                payload, code = hit
                stale = code.get("source_hash") != store.code["source_hash"]
                cached_from = str(code.get("git_commit") or code.get("source_hash")) if stale else None
                return payload, True, cached_from, None, time.perf_counter() - t0, h
            ctx = PhaseContext(run_cfg.profile, run_cfg.seed, out_dir, run_cfg.sections.get(ph.name, {}),
                               dict(artifacts), store, executor, progress)  # fmt: skip
            try:
                out = ph.run(ctx)
                for name, typ in ph.produces.items():
                    if not isinstance(out.artifacts.get(name), typ):
                        raise TypeError(
                            f"phase `{ph.name}` declared it produces `{name}` as {_tname(typ)} but returned "
                            f"{type(out.artifacts.get(name)).__name__}"
                        )
                payload = _payload(out)
                store.put_phase(ph.name, h, run_cfg.seed, payload)
                return payload, False, None, None, time.perf_counter() - t0, h
            except Exception as e:  # a failing phase is recorded; the protocol goes on
                error = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=6)}"
                return None, False, None, error, time.perf_counter() - t0, h

        def apply_fallback(rule: Any, res: GateResult, ph: Any, rec: PhaseRecord) -> tuple[GateResult, PhaseRecord]:
            """Run the gate's fallback; return the gate result with what it did, and the phase's record."""
            fb = rule.fallback
            info: dict[str, Any] = {"name": fb.name or fb.kind, "kind": fb.kind, "then": fb.then, "changed": []}
            if fb.kind == "swap":
                missing = [v for v in fb.replace.values() if v not in artifacts]
                if missing:
                    info.update(status="failed", reason=f"replacement artifact(s) {missing} were not produced")
                    return dataclasses.replace(res, fallback=info), rec
                for k, v in fb.replace.items():
                    info["changed"].append({"artifact": k, "before": _summary_of(artifacts.get(k)),
                                            "after": _summary_of(artifacts[v]), "from": v})  # fmt: skip
                    artifacts[k] = artifacts[v]
                info.update(status="applied", reason=f"hand-off(s) {', '.join(fb.replace)} replaced by "
                            f"{', '.join(fb.replace.values())}")  # fmt: skip
                return dataclasses.replace(res, fallback=info), rec
            run_cfg, current, new_res = cfg, rec, res
            for attempt in range(1, fb.max_times + 1):
                try:
                    run_cfg, changed = rerun_config(run_cfg, ph.name, fb, rule.name)
                except ConfigError as e:
                    info.update(status="failed", reason=str(e), reruns=attempt - 1)
                    return dataclasses.replace(res, fallback=info), current
                info["changed"].extend(changed)
                payload, cached, cached_from, error, wall, h = execute(ph, run_cfg)
                if payload is None:
                    info.update(status="failed", reason=f"the rerun failed: {(error or '').splitlines()[0]}",
                                reruns=attempt)  # fmt: skip
                    return dataclasses.replace(res, fallback=info), current
                artifacts.update(payload["artifacts"])
                metrics.update(payload["metrics"])
                current = dataclasses.replace(current, result=payload["result"], metrics=payload["metrics"],
                                              cached=cached, cached_from=cached_from, config_hash=h,
                                              wall_time_s=current.wall_time_s + wall)  # fmt: skip
                new_res = evaluate_gate(rule, metrics)
                if not fb.reevaluate or new_res.passed is True:
                    break
            info["reruns"] = attempt
            ok = (not fb.reevaluate) or new_res.passed is True
            info.update(status="applied" if ok else "failed",
                        reason=("rerun with the changed settings" + ("; the gate now passes" if fb.reevaluate else ""))
                        if ok else f"after {attempt} rerun(s) the gate still fails: {new_res.reason}",
                        gate_after=new_res.reason)  # fmt: skip
            current = dataclasses.replace(current, fallbacks=[*current.fallbacks, {"gate": rule.name, **info}])
            return dataclasses.replace(res, fallback=info), current

        for ph in phases:
            cons = {k: _tname(v) for k, v in ph.consumes.items()}
            cons.update({k: f"{_tname(v)} (optional: {'used' if k in artifacts else 'not available'})"
                         for k, v in ph.uses.items()})  # fmt: skip
            prod = {k: _tname(v) for k, v in ph.produces.items()}
            h0 = cfg.phase_hash(ph.name)

            def record(status: str, error: str | None, wall: float = 0.0, h: str = h0, **kw: Any) -> PhaseRecord:
                res, mets, cached = kw.pop("result", None), kw.pop("metrics", {}), kw.pop("cached", False)
                return PhaseRecord(ph.name, ph.title, status, wall, cons, prod, error, res, mets, cached, h, **kw)  # noqa: B023

            if stopped_at is not None:
                records.append(record("stopped", f"not run: the protocol stopped at gate(s) after `{stopped_at}`",
                                      missing_checks=list(ph.key_checks)))  # fmt: skip
                gates.extend(not_evaluated(g, f"phase `{ph.name}` stopped") for g in policy.for_phase(ph.name))
                continue
            missing = [k for k in ph.consumes if k in failed_producers or k not in artifacts]
            if missing:
                records.append(record("skipped", f"skipped: needs {missing}, which a failed phase did not produce",
                                      missing_checks=list(ph.key_checks)))  # fmt: skip
                failed_producers.update(ph.produces)
            else:
                if on_phase:
                    on_phase(ph.name, ph.title)
                for k in (*ph.consumes, *ph.uses):
                    handoffs.append({"consumer": ph.name, "artifact": k, "required": k in ph.consumes,
                                     "available": k in artifacts, "value": _summary_of(artifacts.get(k))})  # fmt: skip
                payload, cached, cached_from, error, wall, h = execute(ph, cfg)
                if payload is None:
                    records.append(record("failed", error, wall, h, missing_checks=list(ph.key_checks)))
                    failed_producers.update(ph.produces)
                else:
                    artifacts.update(payload["artifacts"])
                    metrics.update(payload["metrics"])
                    records.append(record("done", None, wall, h, result=payload["result"], metrics=payload["metrics"],
                                          cached=cached, cached_from=cached_from))  # fmt: skip
            # Reruns first (each replaces the phase's outputs), then every other gate on the final
            # outputs, then swaps (so a later rerun can never undo a swap of hand-offs).
            rules = policy.for_phase(ph.name)
            done = records[-1].status == "done"
            by_name: dict[str, GateResult] = {}
            for g in rules:
                if g.action == "fallback" and g.fallback.kind == "rerun":
                    res = evaluate_gate(g, metrics)
                    if res.passed is not True and done:
                        res, records[-1] = apply_fallback(g, res, ph, records[-1])
                    by_name[g.name] = res
            for g in rules:
                if g.name in by_name:
                    continue
                res = evaluate_gate(g, metrics)
                if g.action == "fallback" and res.passed is not True and done:
                    res, records[-1] = apply_fallback(g, res, ph, records[-1])
                by_name[g.name] = res
            results = [by_name[g.name] for g in rules]
            gates.extend(results)
            if any(g.blocks for g in results):
                stopped_at = ph.name
        final = policy.for_phase("")
        if stopped_at is None:
            gates.extend(evaluate_gate(g, metrics) for g in final)
        else:
            gates.extend(not_evaluated(g, "the protocol stopped before the final gates") for g in final)
        ran = {r.name for r in records}
        for g in policy.gates:
            if g.phase and g.phase not in ran:
                gates.append(not_evaluated(g, f"phase `{g.phase}` is not in this run"))
        consistency = evaluate_consistency(policy.consistency, metrics)
        run_stress_tests = stress if stress is not None else cfg.profile == "full"
        partial = {"metrics": metrics}
        stress_results = (
            run_stress(policy, partial, artifacts, store, cfg)
            if run_stress_tests
            else [
                {
                    "name": r.name,
                    "kind": r.kind,
                    "expected": r.expected,
                    "passed": None,
                    "verdict": "not run: pass --stress (the full profile runs stress tests by default)",
                    "description": r.description,
                }
                for r in policy.stress
            ]  # fmt: skip
        )
        stability = recommendation_stability(
            artifacts, metrics, cfg, policy, release=bool(run_stress_tests), executor=executor
        )
        store_counts = store.counts()
    status, failed, blocking = protocol_status(records, gates)
    return {
        "schema_version": 3,
        "title": cfg.title,
        "profile": cfg.profile,
        "seed": cfg.seed,
        "status": status,
        "failed_phases": failed,
        "blocking_gates": blocking,
        "stopped_at": stopped_at,
        "started_utc": started,
        "wall_time_s": time.perf_counter() - t_start,
        "phases": [r.to_dict() for r in records],
        "gates": [g.to_dict() for g in gates],
        "metrics": metrics,
        "artifacts_final": {k: _summary_of(v) for k, v in artifacts.items()},
        "handoffs": handoffs,
        "consistency": consistency,
        "stress": stress_results,
        "stress_run": bool(run_stress_tests),
        "recommendation_stability": stability,
        "store_counts": store_counts,
        "policy": {
            "source": policy.source,
            "gates": [g.name for g in policy.gates],
            "consistency": [c.name for c in policy.consistency],
            "stress": [t.name for t in policy.stress],
        },  # fmt: skip
    }
