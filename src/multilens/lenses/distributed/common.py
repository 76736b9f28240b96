"""Small helpers shared by the parts of the distributed lens (figure traces, JSON-safe floats).

Timing values differ between two runs of the same seed; every trace, estimate, check, metric and
data key that carries one is named with "timing" (or "latency", "speedup", "time_s", ...), so
reproducibility tests can tell measured times from computed numbers.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

LENS = "distributed"
EPS64 = float(np.finfo(np.float64).eps)


def f(x: Any) -> float | None:
    """A finite float or None (JSON-safe)."""
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def available_cores(n_cores: int = 0) -> int:
    if n_cores:
        return n_cores
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def trace(x: Any, y: Any, name: str, mode: str = "lines+markers", **extra: Any) -> dict[str, Any]:
    return {"type": "scatter", "mode": mode, "name": name, "x": [f(v) for v in x], "y": [f(v) for v in y]} | extra


def err_trace(x: Any, y: Any, lo: Any, hi: Any, name: str, mode: str = "markers") -> dict[str, Any]:
    ys = [f(v) for v in y]
    plus = [None if v is None or f(h) is None else max(f(h) - v, 0.0) for v, h in zip(ys, hi)]  # type: ignore[operator]
    minus = [None if v is None or f(lw) is None else max(v - f(lw), 0.0) for v, lw in zip(ys, lo)]  # type: ignore[operator]
    return trace(
        x,
        y,
        name,
        mode,
        error_y={"type": "data", "symmetric": False, "array": plus, "arrayminus": minus, "visible": True},
    )


def layout(xlabel: str, ylabel: str, xlog: bool = False, ylog: bool = False, **extra: Any) -> dict[str, Any]:
    return {
        "xaxis": {"title": {"text": xlabel}, "type": "log" if xlog else "linear"},
        "yaxis": {"title": {"text": ylabel}, "type": "log" if ylog else "linear"},
    } | extra


def subsample(n: int, max_points: int = 300) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, max_points)).round().astype(int))
