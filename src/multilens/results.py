"""Result types shared by every lens: estimates with intervals, checks with kinds, parts, results.

A lens returns a :class:`LensResult`, built from :class:`Part` objects (one per sub-study) by
:meth:`LensResult.from_parts`. Everything in it is plain data (frozen dataclasses of floats,
strings, lists and dicts) so it can be written to JSON and SQLite without pickling and rendered
by the report without knowing which lens produced it.

Three rules are enforced here, once, at construction:

* every :class:`Check` has a ``kind``: ``agreement`` (a measurement against an independent
  prediction), ``bound`` (one-sided against a theorem's bound) or ``sanity`` (an identity or a
  self-test). Only agreements and bounds count as evidence (:data:`EVIDENCE_KINDS`);
* an :class:`Assumption`'s status is derived from the checks it names in ``checked_by``; a name
  (or pattern) that matches no check of the result is an error, and no status is ever written in;
* a :class:`Recommendation` names the checks it rests on and is dropped (and listed as dropped,
  with the reason) unless all of them passed.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

SCHEMA_VERSION = 2

CheckKind = Literal["agreement", "bound", "sanity"]
CHECK_KINDS: tuple[str, ...] = ("agreement", "bound", "sanity")
EVIDENCE_KINDS: tuple[str, ...] = ("agreement", "bound")
SEVERITIES: tuple[str, ...] = ("error", "info")


def _finite_or_none(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class Estimate:
    """A measured quantity with its uncertainty.

    ``ci_low``/``ci_high`` are a ``level`` interval obtained by ``method`` (e.g. "bootstrap
    percentile over examples", "Student t over 5 seeds"). ``n`` is the number of samples behind it
    (runs, seeds, probes, bootstrap refits) and ``n_dropped`` how many replicates were left out as
    non-finite. An estimate without an interval or standard error states why in
    ``no_interval_reason`` (e.g. "single seed: variability over initialisations not measured",
    "deterministic: exact to the solver tolerance"). A quantity that could not be measured has
    ``value`` None and says why in ``note``. ``converged``/``n_iter`` are set where a stopping rule
    exists; a fixed budget has ``converged`` None.
    """

    name: str
    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    stderr: float | None = None
    level: float = 0.95
    method: str = ""
    n: int = 0
    unit: str = ""
    note: str = ""
    converged: bool | None = None
    n_iter: int | None = None
    n_dropped: int = 0
    no_interval_reason: str = ""

    @property
    def has_interval(self) -> bool:
        return _finite_or_none(self.ci_low) is not None and _finite_or_none(self.ci_high) is not None

    @property
    def explained(self) -> bool:
        """An interval, a standard error, or a stated reason for having neither."""
        return (
            self.has_interval
            or _finite_or_none(self.stderr) is not None
            or bool(self.no_interval_reason)
            or (self.value is None and bool(self.note))
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("value", "ci_low", "ci_high", "stderr"):
            d[k] = _finite_or_none(d[k])
        d["n"] = int(d["n"])
        d["n_dropped"] = int(d["n_dropped"])
        if d["converged"] is not None:
            d["converged"] = bool(d["converged"])
        if d["n_iter"] is not None:
            d["n_iter"] = int(d["n_iter"])
        return d


@dataclass(frozen=True)
class Check:
    """A named comparison with one stated criterion and a computed verdict.

    ``passed`` is computed by the code that builds the check, from ``observed``, ``expected`` and
    ``tolerance`` (fixed in advance, never the estimator's own error); ``reason`` says in words why
    it passed or failed. ``passed`` is None when the check could not be evaluated (``reason`` says
    why); that is never a pass. ``kind`` is required (keyword): see the module docstring. For a
    ``bound`` check, ``bound_ratio`` is bound/exact where the exact value is known (how loose the
    bound is).
    """

    name: str
    passed: bool | None
    observed: float | None = None
    expected: float | None = None
    tolerance: float | None = None
    reason: str = ""
    severity: str = "error"  # "error" raises a risk when failed; "info" does not
    kind: CheckKind = field(kw_only=True)
    criterion: str = field(default="", kw_only=True)
    bound_ratio: float | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        # numpy bools and floats sneak in from computed verdicts; store plain Python values.
        if self.passed is not None:
            object.__setattr__(self, "passed", bool(self.passed))
        if self.kind not in CHECK_KINDS:
            raise ValueError(f"check `{self.name}`: `kind` must be one of {', '.join(CHECK_KINDS)}; got {self.kind!r}.")
        if self.severity not in SEVERITIES:
            raise ValueError(f"check `{self.name}`: `severity` must be 'error' or 'info'; got {self.severity!r}.")

    @property
    def is_evidence(self) -> bool:
        return self.kind in EVIDENCE_KINDS

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("observed", "expected", "tolerance", "bound_ratio"):
            d[k] = _finite_or_none(d[k])
        d["verdict"] = self.verdict
        return d

    @property
    def verdict(self) -> str:
        if self.passed is None:
            return "not evaluated"
        return "pass" if self.passed else "fail"


def _nonfinite(*xs: float | None) -> bool:
    return any(x is None or not math.isfinite(float(x)) for x in xs)


def check_within(
    name: str,
    observed: float | None,
    expected: float | None,
    tol: float,
    *,
    kind: CheckKind,
    relative: bool = False,
    what: str = "",
    severity: str = "error",
) -> Check:
    """|observed - expected| <= tol (or tol * |expected| when ``relative``); tol fixed in advance."""
    crit = f"|observed - expected| <= {tol:g}{' x |expected|' if relative else ''}"
    if _nonfinite(observed, expected):
        return Check(
            name,
            None,
            _finite_or_none(observed),
            _finite_or_none(expected),
            tol,
            f"{what or name}: non-finite value, not evaluated",
            severity,
            kind=kind,
            criterion=crit,
        )
    bound = tol * abs(expected) if relative else tol
    err = abs(observed - expected)
    ok = err <= bound
    rel = "relative " if relative else ""
    cmp = "<=" if ok else ">"
    reason = f"{what or name}: |{observed:.6g} - {expected:.6g}| = {err:.3g} {cmp} {rel}tolerance {bound:.3g}"
    return Check(
        name, bool(ok), float(observed), float(expected), float(bound), reason, severity, kind=kind, criterion=crit
    )


def check_in_interval(
    name: str,
    value: float | None,
    low: float | None,
    high: float | None,
    *,
    kind: CheckKind,
    what: str = "",
    severity: str = "error",
) -> Check:
    """The prediction ``value`` lies inside the measured interval [low, high]."""
    crit = "the measured interval covers the prediction"
    if _nonfinite(value, low, high):
        return Check(
            name,
            None,
            _finite_or_none(value),
            None,
            None,
            f"{what or name}: interval unavailable, not evaluated",
            severity,
            kind=kind,
            criterion=crit,
        )
    ok = low <= value <= high
    reason = f"{what or name}: {value:.6g} {'inside' if ok else 'outside'} [{low:.6g}, {high:.6g}]"
    return Check(
        name, bool(ok), float(value), (low + high) / 2, (high - low) / 2, reason, severity, kind=kind, criterion=crit
    )


def check_difference_within(
    name: str,
    diff_low: float | None,
    diff_high: float | None,
    tol: float,
    *,
    kind: CheckKind = "agreement",
    what: str = "",
    severity: str = "error",
) -> Check:
    """Equivalence: the whole interval of (measured - predicted) lies within [-tol, +tol]."""
    crit = f"interval of the difference within +-{tol:g}"
    if _nonfinite(diff_low, diff_high):
        return Check(name, None, None, 0.0, tol, f"{what or name}: interval unavailable, not evaluated", severity,
                     kind=kind, criterion=crit)  # fmt: skip
    ok = -tol <= diff_low and diff_high <= tol
    reason = (
        f"{what or name}: difference interval [{diff_low:.4g}, {diff_high:.4g}] "
        f"{'inside' if ok else 'not inside'} [-{tol:g}, {tol:g}]"
    )
    mid = (diff_low + diff_high) / 2
    return Check(name, bool(ok), float(mid), 0.0, float(tol), reason, severity, kind=kind, criterion=crit)


def check_bound(
    name: str,
    observed: float | None,
    bound: float | None,
    *,
    direction: Literal["<=", ">="] = "<=",
    exact: float | None = None,
    what: str = "",
    severity: str = "error",
    slack: float = 0.0,
) -> Check:
    """One-sided: observed <= bound (or >=), with bound/exact reported when the exact value is known."""
    crit = f"observed {direction} bound" + (f" (slack {slack:g})" if slack else "")
    ratio = None
    if exact is not None and bound is not None and not _nonfinite(exact, bound) and exact != 0:
        ratio = float(bound) / float(exact)
    if _nonfinite(observed, bound):
        return Check(name, None, _finite_or_none(observed), _finite_or_none(bound), slack,
                     f"{what or name}: non-finite value, not evaluated", severity, kind="bound", criterion=crit,
                     bound_ratio=ratio)  # fmt: skip
    ok = observed <= bound + slack if direction == "<=" else observed >= bound - slack
    loose = f"; the bound is {ratio:.3g}x the exact value" if ratio is not None else ""
    reason = (
        f"{what or name}: {observed:.6g} {direction if ok else ('>' if direction == '<=' else '<')} {bound:.6g}{loose}"
    )
    return Check(name, bool(ok), float(observed), float(bound), slack, reason, severity, kind="bound", criterion=crit,
                 bound_ratio=ratio)  # fmt: skip


@dataclass(frozen=True)
class Figure:
    """A Plotly figure as plain JSON-able data (``data`` traces and ``layout``)."""

    key: str
    title: str
    data: list[dict[str, Any]]
    layout: dict[str, Any] = field(default_factory=dict)
    caption: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "title": self.title, "data": self.data, "layout": self.layout, "caption": self.caption}


@dataclass(frozen=True)
class Table:
    """A small table for the report: column names and rows of plain values."""

    key: str
    title: str
    columns: list[str]
    rows: list[list[Any]]
    caption: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Assumption:
    """An assumption a lens relies on, where it comes from, and the checks that test it.

    ``checked_by`` names checks of the same result (exact names or ``fnmatch`` patterns such as
    ``"invariance_*_outputs_unchanged"``). The status is never given: :class:`LensResult`
    derives it ("holds" when every named check passed, "violated" when one failed, "unchecked"
    when one was not evaluated or none is named) and fills ``status`` and ``how``.
    """

    text: str
    source: str
    checked_by: tuple[str, ...] = ()
    status: str = field(default="unchecked", init=False)
    how: str = field(default="not checked in this run", init=False)

    def __post_init__(self) -> None:
        cb = self.checked_by
        object.__setattr__(self, "checked_by", (cb,) if isinstance(cb, str) else tuple(cb))

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "source": self.source, "checked_by": list(self.checked_by),
                "status": self.status, "how": self.how}  # fmt: skip


@dataclass(frozen=True)
class Recommendation:
    """Advice derived from measurements; kept only when every check in ``rests_on`` passed."""

    text: str
    rests_on: tuple[str, ...]

    def __post_init__(self) -> None:
        r = self.rests_on
        object.__setattr__(self, "rests_on", (r,) if isinstance(r, str) else tuple(r))
        if not self.rests_on:
            raise ValueError(f"recommendation {self.text[:60]!r} names no check it rests on.")

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "rests_on": list(self.rests_on)}


@dataclass(frozen=True)
class Part:
    """What one sub-study of a lens measured. Parts are combined by :meth:`LensResult.from_parts`."""

    name: str
    estimates: tuple[Estimate, ...] = ()
    checks: tuple[Check, ...] = ()
    figures: tuple[Figure, ...] = ()
    tables: tuple[Table, ...] = ()
    assumptions: tuple[Assumption, ...] = ()
    recommendations: tuple[Recommendation, ...] = ()
    metrics: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    predictions: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("estimates", "checks", "figures", "tables", "assumptions", "recommendations", "notes"):
            object.__setattr__(self, name, tuple(getattr(self, name)))


def _matches(pattern: str, names: list[str]) -> list[str]:
    if any(ch in pattern for ch in "*?["):
        return [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    return [pattern] if pattern in names else []


def resolve_assumption(a: Assumption, checks: dict[str, Check]) -> Assumption:
    """The assumption with its status derived from the named checks (error if a name matches none)."""
    names = list(checks)
    matched: list[str] = []
    for pat in a.checked_by:
        m = _matches(pat, names)
        if not m:
            raise ValueError(f"assumption {a.text[:60]!r} names check `{pat}`, which does not exist in this result.")
        matched += m
    out = replace(a)
    if not matched:
        status, how = "unchecked", "not checked in this run"
    else:
        cs = [checks[n] for n in matched]
        if any(c.passed is False for c in cs):
            status = "violated"
        elif all(c.passed is True for c in cs):
            status = "holds"
        else:
            status = "unchecked"
        how = "; ".join(f"check `{c.name}` ({c.verdict}): {c.reason}" for c in cs)
    object.__setattr__(out, "status", status)
    object.__setattr__(out, "how", how)
    return out


def check_counts(checks: Any) -> dict[str, dict[str, int]]:
    """Counts by kind and verdict: {"agreement": {"pass": 3, "fail": 0, "not evaluated": 1}, ...}."""
    out = {k: {"pass": 0, "fail": 0, "not evaluated": 0} for k in CHECK_KINDS}
    for c in checks:
        d = c if isinstance(c, dict) else c.to_dict()
        kind = d.get("kind") or "sanity"
        verdict = {True: "pass", False: "fail", None: "not evaluated"}[d.get("passed")]
        out[kind][verdict] += 1
    return out


@dataclass(frozen=True)
class LensResult:
    """Everything one lens measured: estimates, checks, figures, tables, metrics and provenance.

    ``metrics`` are the named floats gates and cross-lens checks read (``"<lens>.<name>"``, with
    ``_ci_low``/``_ci_high`` beside those that have an interval); ``outputs`` are the JSON-able
    hand-offs later protocol phases consume. ``recommendations`` holds only those whose checks all
    passed; the others are in ``dropped_recommendations`` with the reason.
    """

    lens: str
    estimates: tuple[Estimate, ...] = ()
    checks: tuple[Check, ...] = ()
    figures: tuple[Figure, ...] = ()
    tables: tuple[Table, ...] = ()
    assumptions: tuple[Assumption, ...] = ()
    recommendations: tuple[Recommendation, ...] = ()
    metrics: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    predictions: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)  # lens-specific JSON-able payload
    notes: tuple[str, ...] = ()
    provenance: dict[str, Any] = field(default_factory=dict)
    parts: tuple[str, ...] = ()
    dropped_recommendations: tuple[dict[str, Any], ...] = ()
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        for name in ("estimates", "checks", "figures", "tables", "assumptions", "recommendations", "notes", "parts"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        by_name: dict[str, Check] = {}
        for c in self.checks:
            if c.name in by_name:
                raise ValueError(f"lens `{self.lens}`: two checks are named `{c.name}`; check names must be unique.")
            by_name[c.name] = c
        seen_est: set[str] = set()
        for e in self.estimates:
            if e.name in seen_est:
                raise ValueError(f"lens `{self.lens}`: two estimates are named `{e.name}`; names must be unique.")
            seen_est.add(e.name)
        object.__setattr__(self, "assumptions", tuple(resolve_assumption(a, by_name) for a in self.assumptions))
        kept, dropped = [], list(self.dropped_recommendations)
        for r in self.recommendations:
            missing = [n for n in r.rests_on if not _matches(n, list(by_name))]
            if missing:
                raise ValueError(f"recommendation {r.text[:60]!r} rests on check `{missing[0]}`, which does not exist.")
            cs = [by_name[m] for n in r.rests_on for m in _matches(n, list(by_name))]
            bad = [c for c in cs if c.passed is not True]
            if bad:
                dropped.append(r.to_dict() | {"reason": "; ".join(f"check `{c.name}` {c.verdict}" for c in bad)})
            else:
                kept.append(r)
        object.__setattr__(self, "recommendations", tuple(kept))
        object.__setattr__(self, "dropped_recommendations", tuple(dropped))
        for k, v in self.metrics.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
                raise ValueError(f"lens `{self.lens}`: metric `{k}` must be a finite number; got {v!r}.")

    @classmethod
    def from_parts(
        cls,
        lens: str,
        parts: list[Part] | tuple[Part, ...],
        *,
        provenance: dict[str, Any] | None = None,
        notes: tuple[str, ...] | list[str] = (),
        data: dict[str, Any] | None = None,
    ) -> LensResult:
        """Concatenate parts; each part's ``data`` is kept under its name, metrics are merged."""

        def cat(attr: str) -> tuple[Any, ...]:
            return tuple(x for p in parts for x in getattr(p, attr))

        metrics: dict[str, float] = {}
        outputs: dict[str, Any] = {}
        predictions: dict[str, Any] = {}
        payload: dict[str, Any] = dict(data or {})
        for p in parts:
            for k in p.metrics:
                if k in metrics:
                    raise ValueError(f"lens `{lens}`: metric `{k}` is set by two parts.")
            metrics.update(p.metrics)
            outputs.update(p.outputs)
            predictions.update(p.predictions)
            if p.data:
                payload[p.name] = p.data
        return cls(
            lens=lens,
            estimates=cat("estimates"),
            checks=cat("checks"),
            figures=cat("figures"),
            tables=cat("tables"),
            assumptions=cat("assumptions"),
            recommendations=cat("recommendations"),
            metrics=metrics,
            outputs=outputs,
            predictions=predictions,
            data=payload,
            notes=tuple(notes) + cat("notes"),
            provenance=dict(provenance or {}),
            parts=tuple(p.name for p in parts),
        )

    def estimate(self, name: str) -> Estimate:
        for e in self.estimates:
            if e.name == name:
                return e
        raise KeyError(f"no estimate named {name!r} in lens {self.lens!r}")

    def check(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"no check named {name!r} in lens {self.lens!r}")

    @property
    def failed_evidence(self) -> list[Check]:
        """Failed error-severity agreement and bound checks."""
        return [c for c in self.checks if c.is_evidence and c.passed is False and c.severity == "error"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "lens": self.lens,
            "parts": list(self.parts),
            "estimates": [e.to_dict() for e in self.estimates],
            "checks": [c.to_dict() for c in self.checks],
            "check_counts": check_counts(self.checks),
            "figures": [f.to_dict() for f in self.figures],
            "tables": [t.to_dict() for t in self.tables],
            "assumptions": [a.to_dict() for a in self.assumptions],
            "recommendations": [r.to_dict() for r in self.recommendations],
            "dropped_recommendations": list(self.dropped_recommendations),
            "metrics": dict(self.metrics),
            "outputs": self.outputs,
            "predictions": self.predictions,
            "data": self.data,
            "notes": list(self.notes),
            "provenance": self.provenance,
        }


def metric_with_interval(name: str, est: Estimate) -> dict[str, float]:
    """``{name, name_ci_low, name_ci_high}`` from an estimate (only the finite parts)."""
    out: dict[str, float] = {}
    for suffix, v in (("", est.value), ("_ci_low", est.ci_low), ("_ci_high", est.ci_high)):
        f = _finite_or_none(v)
        if f is not None:
            out[name + suffix] = f
    return out
