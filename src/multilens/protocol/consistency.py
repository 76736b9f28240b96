"""Cross-lens consistency checks, predeclared in the policy's ``[[consistency]]`` tables (C.18, C.20).

Where two lenses (or two phases) measure the same thing, the policy names the metrics, the
criterion and the discrepancy band before the run. A rule is evaluated only when every metric it
names was measured; otherwise it is listed as not evaluated with the missing metrics and the phase
that should have produced them. A failed rule raises a risk and is taken up by the decision record.

Comparisons (``compare``):

* ``overlap``: the 95% intervals of ``metrics[0]`` and ``metrics[1]`` are at most ``band`` apart
  (``band = 0``: they overlap). With ``scale = "log10"`` the intervals are compared in decades.
* ``all_overlap``: every pair of the listed metrics' intervals is at most ``band`` apart.
* ``abs_diff``: ``|metrics[0] - metrics[1]| <= band`` on the point values (exact identities).
* ``le``: ``metrics[0]`` does not exceed ``metrics[1]`` (a bound): the lower end of the first
  interval (its value when it has none) <= the upper end of the second (its value) + ``band``.
* ``positive``: the lower end of ``metrics[0]``'s interval is > ``band`` (a rank correlation that
  says two quantities move together).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from multilens.config import from_dict
from multilens.errors import ConfigError
from multilens.results import Check

Compare = Literal["overlap", "all_overlap", "abs_diff", "le", "positive"]
_N_METRICS = {"overlap": 2, "abs_diff": 2, "le": 2, "positive": 1}


@dataclass(frozen=True)
class ConsistencyRule:
    name: str
    metrics: tuple[str, ...]
    compare: Compare
    band: float = 0.0
    scale: Literal["linear", "log10"] = "linear"
    kind: Literal["agreement", "bound"] = "agreement"
    number: int = 0  # the item of issue 14 / C.20 it implements, for the reader
    description: str = ""
    severity: Literal["error", "info"] = "error"
    # The checks whose assumptions bear on this rule: when it fails, the decision record resolves it from the
    # statuses of only those assumptions (empty: every assumption of the lenses whose metrics it compares).
    assumptions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", tuple(m.removeprefix("metric:") for m in self.metrics))
        object.__setattr__(self, "assumptions", tuple(self.assumptions))
        if self.compare not in ("overlap", "all_overlap", "abs_diff", "le", "positive"):
            raise ConfigError(
                f"consistency `{self.name}`: `compare` must be overlap, all_overlap, abs_diff, le or positive; "
                f"got {self.compare!r}."
            )
        need = _N_METRICS.get(self.compare)
        if need is not None and len(self.metrics) != need:
            raise ConfigError(
                f"consistency `{self.name}`: `{self.compare}` compares {need} metric(s); got {len(self.metrics)}."
            )
        if self.compare == "all_overlap" and len(self.metrics) < 2:
            raise ConfigError(f"consistency `{self.name}`: `all_overlap` needs at least 2 metrics.")
        if not (math.isfinite(self.band) and self.band >= 0 or self.compare == "positive"):
            raise ConfigError(f"consistency `{self.name}`: `band` must be a finite number >= 0; got {self.band}.")
        if self.scale not in ("linear", "log10"):
            raise ConfigError(f"consistency `{self.name}`: `scale` must be linear or log10; got {self.scale!r}.")
        if self.kind not in ("agreement", "bound"):
            raise ConfigError(f"consistency `{self.name}`: `kind` must be agreement or bound; got {self.kind!r}.")

    def needs(self) -> list[str]:
        """The metric keys this rule reads (intervals where the comparison uses them)."""
        if self.compare == "abs_diff":
            return list(self.metrics)
        if self.compare == "positive":
            return [f"{self.metrics[0]}_ci_low"]
        if self.compare == "le":
            return list(self.metrics)
        return [k for m in self.metrics for k in (m, f"{m}_ci_low", f"{m}_ci_high")]

    @property
    def criterion(self) -> str:
        unit = " decades" if self.scale == "log10" else ""
        return {
            "overlap": f"the two 95% intervals are at most {self.band:g}{unit} apart"
            + (" (they overlap)" if self.band == 0 else ""),
            "all_overlap": f"every pair of 95% intervals is at most {self.band:g}{unit} apart",
            "abs_diff": f"|{self.metrics[0]} - {self.metrics[-1]}| <= {self.band:g}",
            "le": f"lower end of {self.metrics[0]} <= upper end of {self.metrics[-1]} + {self.band:g}",
            "positive": f"lower end of the interval of {self.metrics[0]} > {self.band:g}",
        }[self.compare]


def consistency_rules(tables: Any, source: str = "") -> tuple[ConsistencyRule, ...]:
    if not isinstance(tables, list):
        raise ConfigError(f"policy `{source}`: `consistency` must be an array of tables ([[consistency]]).")
    rules = []
    for i, t in enumerate(tables):
        if not isinstance(t, dict) or "name" not in t:
            raise ConfigError(f"policy `{source}`: consistency[{i}] needs a `name`.")
        t = dict(t)
        t["metrics"] = tuple(t.get("metrics", ()))
        rules.append(from_dict(ConsistencyRule, t, where=f"consistency[{i}]"))
    names = [r.name for r in rules]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"policy `{source}`: consistency name `{dup[0]}` is used twice; names must be unique.")
    return tuple(rules)


def _interval(m: Mapping[str, Any], key: str, log: bool) -> tuple[float, float, float]:
    v, lo, hi = float(m[key]), float(m[f"{key}_ci_low"]), float(m[f"{key}_ci_high"])
    if log:
        if min(v, lo, hi) <= 0:
            raise ValueError(f"`{key}` has a non-positive value or interval end; it cannot be compared in decades")
        return math.log10(v), math.log10(lo), math.log10(hi)
    return v, lo, hi


def _gap(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    return max(0.0, b[1] - a[2], a[1] - b[2])


def _end(m: Mapping[str, Any], key: str, end: str) -> float:
    v = m.get(f"{key}_{end}")
    return float(m[key] if v is None else v)


def evaluate_rule(rule: ConsistencyRule, m: Mapping[str, Any]) -> Check:
    """One rule on the run's metrics: a Check with the rule's kind, criterion and a computed verdict."""
    base = {"kind": rule.kind, "criterion": rule.criterion, "severity": rule.severity}
    missing = [k for k in rule.needs() if m.get(k) is None or not math.isfinite(float(m[k]))]
    if missing:
        phases = sorted({k.split(".")[0] for k in missing})
        why = f"not evaluated: {', '.join(missing)} not measured in this run (phase(s) {', '.join(phases)})"
        return Check(rule.name, None, reason=why, **base)
    log = rule.scale == "log10"
    try:
        if rule.compare in ("overlap", "all_overlap"):
            ivs = [_interval(m, k, log) for k in rule.metrics]
            pairs = [(i, j) for i in range(len(ivs)) for j in range(i + 1, len(ivs))]
            gaps = {(i, j): _gap(ivs[i], ivs[j]) for i, j in pairs}
            worst = max(gaps, key=lambda p: gaps[p])
            ok = gaps[worst] <= rule.band
            shown = "; ".join(
                f"{k} {ivs[i][0]:.4g} [{ivs[i][1]:.4g}, {ivs[i][2]:.4g}]" for i, k in enumerate(rule.metrics)
            )
            unit = " (log10)" if log else ""
            reason = (
                f"{shown}{unit}: largest gap between intervals {gaps[worst]:.4g} {'<=' if ok else '>'} {rule.band:g}"
            )
            return Check(rule.name, bool(ok), ivs[worst[0]][0], ivs[worst[1]][0], rule.band, reason, **base)
        if rule.compare == "abs_diff":
            a, b = float(m[rule.metrics[0]]), float(m[rule.metrics[1]])
            ok = abs(a - b) <= rule.band
            return Check(rule.name, bool(ok), a, b, rule.band,
                         f"{rule.metrics[0]} = {a:.6g}, {rule.metrics[1]} = {b:.6g}: |diff| = {abs(a - b):.3g} "
                         f"{'<=' if ok else '>'} {rule.band:g}", **base)  # fmt: skip
        if rule.compare == "le":
            lo, hi = _end(m, rule.metrics[0], "ci_low"), _end(m, rule.metrics[1], "ci_high")
            ok = lo <= hi + rule.band
            ratio = hi / lo if lo > 0 else None
            return Check(rule.name, bool(ok), lo, hi, rule.band,
                         f"{rule.metrics[0]} (lower end) = {lo:.6g} {'<=' if ok else '>'} "
                         f"{rule.metrics[1]} (upper end) = {hi:.6g} + {rule.band:g}",
                         bound_ratio=ratio, **base)  # fmt: skip
        lo = float(m[f"{rule.metrics[0]}_ci_low"])
        ok = lo > rule.band
        return Check(rule.name, bool(ok), float(m.get(rule.metrics[0], lo)), rule.band, None,
                     f"{rule.metrics[0]}: lower end {lo:.4g} {'>' if ok else '<='} {rule.band:g}", **base)  # fmt: skip
    except ValueError as e:
        return Check(rule.name, None, reason=f"not evaluated: {e}", **base)


def evaluate_consistency(rules: tuple[ConsistencyRule, ...], metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every rule's Check as a dict, with its number, metrics and description for the report."""
    out = []
    for r in rules:
        d = evaluate_rule(r, metrics).to_dict()
        d.update(number=r.number, metrics=list(r.metrics), description=r.description, compare=r.compare,
                 assumptions=list(r.assumptions))  # fmt: skip
        out.append(d)
    return out
