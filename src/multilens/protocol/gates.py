"""Go/no-go gates: policy rules evaluated on measured metrics.

Four rule kinds are the chapter's concrete release examples (seed lines 57-96), plus a plain
threshold:

- ``objective``:   J = R_emp + lambda * Omega + rho * W          (compared with ``op``/``threshold``)
- ``geometry``:    s = m / (1 + kappa)                             (margin over curvature proxy)
- ``composition``: L_sys = prod_i L_i                              (Lipschitz bound of a pipeline)
- ``certificate``: slack = u_max - u                               (certified bound vs policy limit)
- ``threshold``:   the metric itself

A gate's ``action`` is ``stop`` (halt the protocol after its phase), ``warn`` (record a risk) or
``fallback``: a named, implemented fallback (:class:`Fallback`) runs instead: ``swap`` replaces
hand-off artifacts by their declared alternatives (a failed L(N, D) fit hands on Approach 2's
allocation), ``rerun`` reruns the phase with changed settings (a learning rate halved, the
recommendation restricted to the fitted range) and evaluates the gate again. The report says what
the fallback changed; when it cannot run or does not make the gate pass, the gate acts as
``then`` (stop or warn).

Each input is a number or the name of a measured metric (``"metric:curvature.margin"``). With
``use = "ci_low"`` (or ``"ci_high"``, or a table per input such as ``use = { m = "ci_low" }``) a
gate reads the least favourable end of the metric's interval (``<metric>_ci_low``) instead of its
point estimate; a metric without that interval end leaves the gate not evaluated. The
comparison allows ``tolerance`` (default 1e-9) in the rule's favour because in floating point
0.015 - 0.012 = 0.0029999999999999996 and 0.18 / 1.5 = 0.12000000000000001: a value equal to
its threshold up to rounding is equal. A gate whose inputs are missing or not finite is not
passed (``passed`` None) and counts as a failure for its action: no evidence is no go.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from multilens.config import from_dict, load_toml
from multilens.errors import ConfigError

Kind = Literal["threshold", "objective", "geometry", "composition", "certificate"]
_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
_INPUTS: dict[str, tuple[str, ...]] = {
    "threshold": ("value",),
    "objective": ("r_emp", "lam", "omega", "rho", "w"),
    "geometry": ("m", "kappa"),
    "composition": ("lipschitz",),
    "certificate": ("u", "u_max"),
}


@dataclass(frozen=True)
class Fallback:
    """What a failed ``action = "fallback"`` gate does instead of stopping or warning."""

    kind: Literal["swap", "rerun"]
    name: str = ""  # a short label for the report, e.g. "Approach 2 allocation"
    replace: dict[str, str] = field(default_factory=dict)  # swap: artifact -> the artifact that replaces it
    set: dict[str, Any] = field(default_factory=dict)  # rerun: dotted settings keys -> new values
    scale: dict[str, float] = field(default_factory=dict)  # rerun: dotted numeric settings keys -> factors
    max_times: int = 1  # rerun: at most this many reruns (each applies `set`/`scale` again)
    reevaluate: bool = True  # rerun: evaluate the gate after each rerun and stop when it passes
    then: Literal["stop", "warn"] = "warn"  # the gate's action when the fallback cannot make it pass

    def __post_init__(self) -> None:
        if self.kind not in ("swap", "rerun"):
            raise ConfigError(f"fallback `kind` must be 'swap' or 'rerun'; got {self.kind!r}.")
        if self.kind == "swap" and not self.replace:
            raise ConfigError('a `swap` fallback needs `replace = { artifact = "replacement artifact" }`.')
        if self.kind == "rerun" and not (self.set or self.scale):
            raise ConfigError("a `rerun` fallback needs `set` or `scale` (the settings it changes).")
        if not isinstance(self.max_times, int) or self.max_times < 1:
            raise ConfigError(f"fallback `max_times` must be an int >= 1; got {self.max_times!r}.")
        if self.then not in ("stop", "warn"):
            raise ConfigError(f"fallback `then` must be 'stop' or 'warn'; got {self.then!r}.")
        for k, f in self.scale.items():
            if not (isinstance(f, (int, float)) and f > 0):
                raise ConfigError(f"fallback `scale.{k}` must be a positive number; got {f!r}.")


@dataclass(frozen=True)
class GateRule:
    name: str
    kind: Kind
    inputs: dict[str, Any]
    op: Literal["<=", ">=", "<", ">"]
    threshold: float
    action: Literal["stop", "warn", "fallback"] = "warn"
    phase: str = ""  # evaluated after this phase; "" = after all phases
    tolerance: float = 1e-9
    description: str = ""
    use: Any = "value"  # "value" | "ci_low" | "ci_high" | {input: "ci_low" | "ci_high" | "value"}
    fallback: Fallback | None = None  # required with action = "fallback"

    def __post_init__(self) -> None:
        if isinstance(self.fallback, dict):
            object.__setattr__(
                self, "fallback", from_dict(Fallback, self.fallback, where=f"gate `{self.name}`.fallback")
            )
        if self.action == "fallback" and self.fallback is None:
            raise ConfigError(f'gate `{self.name}`: action = "fallback" needs a [gate.fallback] table.')
        if self.action != "fallback" and self.fallback is not None:
            raise ConfigError(f'gate `{self.name}`: a fallback table needs action = "fallback".')
        if self.action == "fallback" and not self.phase:
            raise ConfigError(f"gate `{self.name}`: a fallback gate needs the `phase` whose outputs it changes.")
        uses = self.use.values() if isinstance(self.use, dict) else [self.use]
        if any(u not in ("value", "ci_low", "ci_high") for u in uses):
            raise ConfigError(
                f"gate `{self.name}`: `use` must be value, ci_low or ci_high (or a table of them); got {self.use!r}."
            )
        if isinstance(self.use, dict) and set(self.use) - set(_INPUTS.get(self.kind, ())):
            raise ConfigError(
                f"gate `{self.name}`: `use` names unknown input(s) {sorted(set(self.use) - set(_INPUTS[self.kind]))}."
            )
        if self.kind not in _INPUTS:
            raise ConfigError(f"gate `{self.name}`: `kind` must be one of {sorted(_INPUTS)}; got {self.kind!r}.")
        need = set(_INPUTS[self.kind])
        got = set(self.inputs)
        if need != got:
            missing, extra = sorted(need - got), sorted(got - need)
            raise ConfigError(
                f"gate `{self.name}` of kind {self.kind} needs inputs {sorted(need)}"
                + (f"; missing {missing}" if missing else "")
                + (f"; unknown {extra}" if extra else "")
                + "."
            )
        if self.op not in _OPS:
            raise ConfigError(f"gate `{self.name}`: `op` must be one of {sorted(_OPS)}; got {self.op!r}.")
        if self.action not in ("stop", "warn", "fallback"):
            raise ConfigError(
                f"gate `{self.name}`: `action` must be 'stop', 'warn' or 'fallback'; got {self.action!r}."
            )
        if not math.isfinite(self.threshold):
            raise ConfigError(f"gate `{self.name}`: `threshold` must be finite; got {self.threshold}.")
        if self.tolerance < 0:
            raise ConfigError(f"gate `{self.name}`: `tolerance` must be >= 0; got {self.tolerance}.")

    @property
    def metrics(self) -> list[str]:
        """Names of the measured metrics this rule reads."""
        out = []
        for v in self.inputs.values():
            for item in v if isinstance(v, list) else [v]:
                if isinstance(item, str):
                    out.append(item.removeprefix("metric:"))
        return out


@dataclass(frozen=True)
class GateResult:
    name: str
    kind: str
    metric: str
    value: float | None
    op: str
    threshold: float
    action: str
    passed: bool | None
    reason: str
    phase: str
    inputs: dict[str, Any] = field(default_factory=dict)
    skipped: bool = False  # not evaluated because its phase did not run (stopped, or not in the run)
    description: str = ""
    fallback: dict[str, Any] | None = None  # what the fallback did: {name, kind, status, changed, ...}

    def to_dict(self) -> dict[str, Any]:
        v = self.value if self.value is not None and math.isfinite(self.value) else None
        return {
            "name": self.name,
            "kind": self.kind,
            "metric": self.metric,
            "value": v,
            "op": self.op,
            "threshold": self.threshold,
            "action": self.action,
            "passed": self.passed,
            "reason": self.reason,
            "phase": self.phase,
            "inputs": self.inputs,
            "skipped": self.skipped,
            "description": self.description,
            "fallback": self.fallback,
            "effective_action": self.effective_action,
        }

    @property
    def effective_action(self) -> str:
        """stop | warn; a fallback gate acts as ``then`` unless its fallback resolved it."""
        if self.action != "fallback":
            return self.action
        fb = self.fallback or {}
        return "resolved" if fb.get("status") == "applied" else str(fb.get("then", "warn"))

    @property
    def blocks(self) -> bool:
        """A stop gate that failed or lacked its inputs (no evidence is no go); skipped gates do not.

        A fallback gate blocks only when its fallback could not resolve it and its ``then`` is stop.
        """
        return self.effective_action == "stop" and self.passed is not True and not self.skipped


class _Missing(Exception):
    pass


def _resolve(value: Any, metrics: Mapping[str, Any], where: str, use: str = "value") -> float:
    if isinstance(value, str):
        key = value.removeprefix("metric:")
        if use != "value":
            key = f"{key}_{use}"
        v = metrics.get(key)
        if v is None:
            raise _Missing(f"metric `{key}` ({where}) was not measured")
        value = v
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Missing(f"{where} is not a number ({value!r})")
    if not math.isfinite(float(value)):
        raise _Missing(f"{where} is not finite ({value!r})")
    return float(value)


def gate_value(rule: GateRule, metrics: Mapping[str, Any]) -> tuple[float, dict[str, Any]]:
    """Compute the rule's scalar from its inputs; raises _Missing when an input is unavailable."""
    r = {k: v for k, v in rule.inputs.items()}

    def use(k: str) -> str:
        return rule.use.get(k, "value") if isinstance(rule.use, dict) else rule.use

    if rule.kind == "threshold":
        x = _resolve(r["value"], metrics, "value", use("value"))
        return x, {"value": x}
    if rule.kind == "objective":
        vals = {k: _resolve(r[k], metrics, k, use(k)) for k in _INPUTS["objective"]}
        return vals["r_emp"] + vals["lam"] * vals["omega"] + vals["rho"] * vals["w"], vals
    if rule.kind == "geometry":
        m, kappa = _resolve(r["m"], metrics, "m", use("m")), _resolve(r["kappa"], metrics, "kappa", use("kappa"))
        if kappa <= -1.0:
            raise _Missing(f"kappa must be > -1 for s = m/(1+kappa); got {kappa}")
        return m / (1.0 + kappa), {"m": m, "kappa": kappa}
    if rule.kind == "composition":
        ls = r["lipschitz"]
        if not isinstance(ls, list) or not ls:
            raise _Missing("lipschitz must be a non-empty list")
        vals_l = [_resolve(v, metrics, f"lipschitz[{i}]", use("lipschitz")) for i, v in enumerate(ls)]
        return math.prod(vals_l), {"lipschitz": vals_l}
    u, umax = _resolve(r["u"], metrics, "u", use("u")), _resolve(r["u_max"], metrics, "u_max", use("u_max"))
    return umax - u, {"u": u, "u_max": umax}


def _label(rule: GateRule) -> str:
    return {"threshold": "value", "objective": "J", "geometry": "s", "composition": "L_sys", "certificate": "slack"}[
        rule.kind
    ]


def evaluate_gate(rule: GateRule, metrics: Mapping[str, Any]) -> GateResult:
    """Evaluate one rule; the verdict is computed, with tolerance in the rule's favour."""
    metric = ",".join(rule.metrics) or "(literal inputs)"
    try:
        value, used = gate_value(rule, metrics)
    except _Missing as e:
        return GateResult(
            rule.name,
            rule.kind,
            metric,
            None,
            rule.op,
            rule.threshold,
            rule.action,
            None,
            f"not evaluated: {e}; counts as a failure",
            rule.phase,
            description=rule.description,
        )
    op = _OPS[rule.op]
    # Tolerance: shift the threshold toward passing by `tolerance`.
    slack = rule.tolerance if rule.op in ("<=", "<") else -rule.tolerance
    passed = bool(op(value, rule.threshold + slack))
    verdict = "pass" if passed else ("blocks" if rule.action == "stop" else "warns")
    end = "" if rule.use == "value" else f" (reading {rule.use} of the intervals)"
    reason = (
        f"{_label(rule)} = {value:.6g} {rule.op} {rule.threshold:g} (tol {rule.tolerance:g}) is {passed}: {verdict}"
        + end
    )
    return GateResult(rule.name, rule.kind, metric, value, rule.op, rule.threshold, rule.action, passed, reason,
                      rule.phase, used, description=rule.description)  # fmt: skip


def not_evaluated(rule: GateRule, why: str) -> GateResult:
    """A gate listed but not evaluated because its phase did not run (it neither passes nor blocks)."""
    return GateResult(rule.name, rule.kind, ",".join(rule.metrics), None, rule.op, rule.threshold, rule.action, None,
                      f"not evaluated: {why}", rule.phase, skipped=True, description=rule.description)  # fmt: skip


@dataclass(frozen=True)
class Policy:
    gates: tuple[GateRule, ...]
    source: str = ""
    consistency: tuple[Any, ...] = ()  # multilens.protocol.consistency.ConsistencyRule
    stress: tuple[Any, ...] = ()  # multilens.protocol.stress.StressRule

    def for_phase(self, phase: str) -> list[GateRule]:
        return [g for g in self.gates if g.phase == phase]


def policy_from_dict(data: dict[str, Any], source: str = "") -> Policy:
    from multilens.protocol.consistency import consistency_rules
    from multilens.protocol.stress import stress_rules

    unknown = sorted(set(data) - {"gate", "consistency", "stress", "schema_version"})
    if unknown:
        raise ConfigError(
            f"policy `{source}`: unknown key `{unknown[0]}`; "
            "a policy has [[gate]], [[consistency]] and [[stress]] tables."
        )
    gates = data.get("gate", [])
    if not isinstance(gates, list):
        raise ConfigError(f"policy `{source}`: `gate` must be an array of tables ([[gate]]).")
    rules = []
    for i, g in enumerate(gates):
        if not isinstance(g, dict) or "name" not in g:
            raise ConfigError(f"policy `{source}`: gate[{i}] needs a `name`.")
        rules.append(from_dict(GateRule, g, where=f"gate[{i}]"))
    names = [r.name for r in rules]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"policy `{source}`: gate name `{dup[0]}` is used twice; names must be unique.")
    return Policy(
        tuple(rules),
        source,
        consistency_rules(data.get("consistency", []), source),
        stress_rules(data.get("stress", []), source),
    )


def load_policy(path: str | Path | None = None) -> Policy:
    """Load a policy TOML file; ``None`` loads the default policy shipped with multilens."""
    if path is None:
        path = Path(__file__).resolve().parent.parent / "defaults" / "policy.toml"
    return policy_from_dict(load_toml(path), str(path))


def evaluate_policy(policy: Policy, metrics: Mapping[str, Any], phase: str | None = None) -> list[GateResult]:
    rules = policy.gates if phase is None else policy.for_phase(phase)
    return [evaluate_gate(r, metrics) for r in rules]
