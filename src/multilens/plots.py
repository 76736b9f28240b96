"""Small builders of report figures: line plots with error bands or bars, fits, bar charts.

Each function returns a :class:`multilens.results.Figure` whose ``data`` is a list of plain
Plotly trace dicts and whose ``layout`` is a plain dict, so lenses can build figures without
importing plotly and results stay JSON-able. Numbers are converted to Python floats and
non-finite values to ``None`` (Plotly draws a gap there), so a NaN in a measurement never makes
the report's JSON invalid.

Bigger figures are compositions: build traces with :func:`line_trace`, :func:`band_traces`,
:func:`errorbar_trace` and :func:`curve_trace`, then wrap them with :func:`figure`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from multilens.results import Figure

Trace = dict[str, Any]

# Plotly's default colour sequence; a band and the line it belongs to share one colour.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def _translucent(color: str, alpha: float = 0.18) -> str:
    """``#rrggbb`` as an ``rgba(...)`` fill colour."""
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r}, {g}, {b}, {alpha})"


def _num(v: Any) -> float | None:
    """One value as a finite float, or None (missing, NaN, inf)."""
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def floats(values: Iterable[Any]) -> list[float | None]:
    """A sequence (list, tuple, NumPy array) as a list of finite floats or None."""
    return [_num(v) for v in values]


def _axis(label: str, log: bool) -> dict[str, Any]:
    axis: dict[str, Any] = {"title": {"text": label}, "type": "log" if log else "linear"}
    if log:
        axis["exponentformat"] = "power"
    return axis


def _check_lengths(**arrays: Sequence[Any] | None) -> None:
    lengths = {k: len(v) for k, v in arrays.items() if v is not None}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"len({k})={n}" for k, n in lengths.items())
        raise ValueError(f"figure arrays must have equal lengths; got {detail}.")


def figure(
    key: str,
    title: str,
    traces: Sequence[Trace],
    *,
    xlabel: str = "",
    ylabel: str = "",
    xlog: bool = False,
    ylog: bool = False,
    caption: str = "",
    layout: dict[str, Any] | None = None,
) -> Figure:
    """Wrap traces into a Figure with titled (optionally logarithmic) axes.

    ``layout`` entries are merged over the defaults (top-level keys only).
    """
    base: dict[str, Any] = {
        "xaxis": _axis(xlabel, xlog),
        "yaxis": _axis(ylabel, ylog),
        "showlegend": len([t for t in traces if t.get("showlegend", True)]) > 1,
    }
    return Figure(key=key, title=title, data=list(traces), layout=base | dict(layout or {}), caption=caption)


def _colored(trace: Trace, color: str | None) -> Trace:
    if color is None:
        return trace
    return trace | {"line": trace.get("line", {}) | {"color": color}, "marker": {"color": color}}


def line_trace(
    x: Sequence[Any], y: Sequence[Any], name: str = "", *, markers: bool = True, color: str | None = None
) -> Trace:
    """A line (with markers by default) through (x, y)."""
    _check_lengths(x=x, y=y)
    mode = "lines+markers" if markers else "lines"
    return _colored({"type": "scatter", "mode": mode, "name": name, "x": floats(x), "y": floats(y)}, color)


def band_traces(
    x: Sequence[Any], lo: Sequence[Any], hi: Sequence[Any], name: str = "", *, color: str = PALETTE[0]
) -> list[Trace]:
    """A shaded band between ``lo`` and ``hi`` (two traces: the upper edge, then the filled lower)."""
    _check_lengths(x=x, lo=lo, hi=hi)
    edge = {"type": "scatter", "mode": "lines", "line": {"width": 0}, "hoverinfo": "skip", "showlegend": False}
    upper = edge | {"name": f"{name} upper", "x": floats(x), "y": floats(hi)}
    lower = edge | {
        "name": f"{name} interval",
        "x": floats(x),
        "y": floats(lo),
        "fill": "tonexty",
        "fillcolor": _translucent(color),
    }
    return [upper, lower]


def errorbar_trace(
    x: Sequence[Any],
    y: Sequence[Any],
    lo: Sequence[Any],
    hi: Sequence[Any],
    name: str = "",
    *,
    mode: str = "markers",
    color: str | None = None,
) -> Trace:
    """Points (or a line) at y with asymmetric error bars reaching from ``lo`` to ``hi``."""
    _check_lengths(x=x, y=y, lo=lo, hi=hi)
    ys, los, his = floats(y), floats(lo), floats(hi)
    plus = [None if v is None or h is None else max(h - v, 0.0) for v, h in zip(ys, his)]
    minus = [None if v is None or low is None else max(v - low, 0.0) for v, low in zip(ys, los)]
    trace = {
        "type": "scatter",
        "mode": mode,
        "name": name,
        "x": floats(x),
        "y": ys,
        "error_y": {"type": "data", "symmetric": False, "array": plus, "arrayminus": minus, "visible": True},
    }
    return _colored(trace, color)


def curve_trace(
    x: Sequence[Any], y: Sequence[Any], name: str = "fit", *, dash: str = "dash", color: str | None = None
) -> Trace:
    """A smooth curve (no markers), e.g. a fitted law or a theoretical prediction."""
    _check_lengths(x=x, y=y)
    trace = {"type": "scatter", "mode": "lines", "name": name, "x": floats(x), "y": floats(y), "line": {"dash": dash}}
    return _colored(trace, color)


def line_with_band(
    key: str,
    title: str,
    x: Sequence[Any],
    y: Sequence[Any],
    lo: Sequence[Any] | None = None,
    hi: Sequence[Any] | None = None,
    name: str = "",
    xlog: bool = False,
    ylog: bool = False,
    *,
    xlabel: str = "",
    ylabel: str = "",
    caption: str = "",
) -> Figure:
    """A line through (x, y) over a shaded [lo, hi] interval band (the band is optional)."""
    traces = band_traces(x, lo, hi, name, color=PALETTE[0]) if lo is not None and hi is not None else []
    traces.append(line_trace(x, y, name, color=PALETTE[0]))
    return figure(key, title, traces, xlabel=xlabel, ylabel=ylabel, xlog=xlog, ylog=ylog, caption=caption)


def line_with_errorbars(
    key: str,
    title: str,
    x: Sequence[Any],
    y: Sequence[Any],
    lo: Sequence[Any],
    hi: Sequence[Any],
    name: str = "",
    xlog: bool = False,
    ylog: bool = False,
    *,
    xlabel: str = "",
    ylabel: str = "",
    caption: str = "",
) -> Figure:
    """A line through (x, y) with asymmetric error bars from ``lo`` to ``hi``."""
    trace = errorbar_trace(x, y, lo, hi, name, mode="lines+markers")
    return figure(key, title, [trace], xlabel=xlabel, ylabel=ylabel, xlog=xlog, ylog=ylog, caption=caption)


def scatter_with_curve(
    key: str,
    title: str,
    x: Sequence[Any],
    y: Sequence[Any],
    curve_x: Sequence[Any],
    curve_y: Sequence[Any],
    name: str = "measured",
    curve_name: str = "fit",
    xlog: bool = False,
    ylog: bool = False,
    *,
    lo: Sequence[Any] | None = None,
    hi: Sequence[Any] | None = None,
    xlabel: str = "",
    ylabel: str = "",
    caption: str = "",
) -> Figure:
    """Measured points (with error bars when ``lo``/``hi`` are given) and a fitted or predicted curve."""
    if lo is not None and hi is not None:
        points = errorbar_trace(x, y, lo, hi, name)
    else:
        _check_lengths(x=x, y=y)
        points = {"type": "scatter", "mode": "markers", "name": name, "x": floats(x), "y": floats(y)}
    traces = [points, curve_trace(curve_x, curve_y, curve_name)]
    return figure(key, title, traces, xlabel=xlabel, ylabel=ylabel, xlog=xlog, ylog=ylog, caption=caption)


def bars(
    key: str,
    title: str,
    labels: Sequence[Any],
    values: Sequence[Any],
    lo: Sequence[Any] | None = None,
    hi: Sequence[Any] | None = None,
    name: str = "",
    ylog: bool = False,
    *,
    xlabel: str = "",
    ylabel: str = "",
    caption: str = "",
) -> Figure:
    """A bar chart of ``values`` per label, with error bars when ``lo``/``hi`` are given."""
    _check_lengths(labels=labels, values=values, lo=lo, hi=hi)
    trace: Trace = {"type": "bar", "name": name, "x": [str(v) for v in labels], "y": floats(values)}
    if lo is not None and hi is not None:
        trace["error_y"] = errorbar_trace(labels, values, lo, hi)["error_y"]
    xaxis = _axis(xlabel, False) | {"type": "category"}
    return figure(key, title, [trace], ylabel=ylabel, ylog=ylog, caption=caption, layout={"xaxis": xaxis})
