"""Result types shared by every lens: estimates with intervals, checks with verdicts, figures.

A lens returns a :class:`LensResult`. Everything in it is plain data (frozen dataclasses of
floats, strings, lists and dicts) so it can be written to JSON and SQLite without pickling and
rendered by the report without knowing which lens produced it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA_VERSION = 1


def _finite_or_none(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class Estimate:
    """A measured quantity with its uncertainty.

    ``ci_low``/``ci_high`` are a ``level`` interval obtained by ``method`` (e.g. "bootstrap
    percentile", "normal, stderr over seeds"). ``n`` is the number of samples behind it (runs,
    seeds, probes, bootstrap refits). A quantity that could not be measured has ``value`` None
    and says why in ``note``.
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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("value", "ci_low", "ci_high", "stderr"):
            d[k] = _finite_or_none(d[k])
        d["n"] = int(d["n"])
        if d["converged"] is not None:
            d["converged"] = bool(d["converged"])
        if d["n_iter"] is not None:
            d["n_iter"] = int(d["n_iter"])
        return d


@dataclass(frozen=True)
class Check:
    """A named agreement between a measurement and a prediction (or a threshold).

    ``passed`` is computed by the code that builds the check, from ``observed``, ``expected``
    and ``tolerance``; ``reason`` says in words why it passed or failed. ``passed`` is None
    when the check could not be evaluated (and ``reason`` says why); that is never a pass.
    """

    name: str
    passed: bool | None
    observed: float | None = None
    expected: float | None = None
    tolerance: float | None = None
    reason: str = ""
    severity: str = "error"  # "error" raises a risk when failed; "info" does not

    def __post_init__(self) -> None:
        # numpy bools and floats sneak in from computed verdicts; store plain Python values.
        if self.passed is not None:
            object.__setattr__(self, "passed", bool(self.passed))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("observed", "expected", "tolerance"):
            d[k] = _finite_or_none(d[k])
        return d

    @property
    def verdict(self) -> str:
        if self.passed is None:
            return "not evaluated"
        return "pass" if self.passed else "fail"


def check_within(
    name: str, observed: float, expected: float, tol: float, *, relative: bool = False, what: str = ""
) -> Check:
    """Check |observed - expected| <= tol (or tol*|expected| when ``relative``)."""
    if observed is None or not math.isfinite(observed) or not math.isfinite(expected):
        return Check(name, None, observed, expected, tol, f"{what or name}: non-finite value, not evaluated")
    bound = tol * abs(expected) if relative else tol
    err = abs(observed - expected)
    ok = err <= bound
    kind = "relative " if relative else ""
    reason = (
        f"{what or name}: |{observed:.6g} - {expected:.6g}| = {err:.3g} "
        f"{'<=' if ok else '>'} {kind}tolerance {bound:.3g}"
    )
    return Check(name, bool(ok), float(observed), float(expected), float(bound), reason)


def check_in_interval(name: str, value: float, low: float | None, high: float | None, what: str = "") -> Check:
    """Check that ``value`` (e.g. a theory prediction) lies inside [low, high] (a measured CI)."""
    if low is None or high is None or not all(math.isfinite(v) for v in (value, low, high)):
        return Check(name, None, value, None, None, f"{what or name}: interval unavailable, not evaluated")
    ok = low <= value <= high
    reason = f"{what or name}: {value:.6g} {'inside' if ok else 'outside'} [{low:.6g}, {high:.6g}]"
    return Check(name, bool(ok), float(value), (low + high) / 2, (high - low) / 2, reason)


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
    """An assumption a phase relies on, where it comes from, and whether/how it was checked."""

    text: str
    source: str
    checked_by: str = ""  # name of a Check, or "" when not checked
    status: str = "unchecked"  # "holds", "violated", "unchecked"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LensResult:
    """Everything one lens measured: estimates, the theory's predictions, checks, figures."""

    lens: str
    estimates: tuple[Estimate, ...] = ()
    checks: tuple[Check, ...] = ()
    figures: tuple[Figure, ...] = ()
    tables: tuple[Table, ...] = ()
    assumptions: tuple[Assumption, ...] = ()
    predictions: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)  # lens-specific JSON-able payload
    notes: tuple[str, ...] = ()
    schema_version: int = SCHEMA_VERSION

    def estimate(self, name: str) -> Estimate:
        for e in self.estimates:
            if e.name == name:
                return e
        raise KeyError(f"no estimate named {name!r} in lens {self.lens!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "lens": self.lens,
            "estimates": [e.to_dict() for e in self.estimates],
            "checks": [c.to_dict() | {"verdict": c.verdict} for c in self.checks],
            "figures": [f.to_dict() for f in self.figures],
            "tables": [t.to_dict() for t in self.tables],
            "assumptions": [a.to_dict() for a in self.assumptions],
            "predictions": self.predictions,
            "data": self.data,
            "notes": list(self.notes),
        }
