"""Reports of a protocol run: a self-contained HTML page and a Markdown twin.

``render_html`` and ``render_markdown`` are pure functions of the runner's ``summary`` and
``manifest`` dicts; ``write_report`` writes both next to each other atomically (temp file in the
same folder, then ``os.replace``), so a reader never sees a half-written report. The figure
builders in :mod:`multilens.plots` produce :class:`multilens.results.Figure` specs
as plain data for the lenses.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from multilens.io import atomic_write_text
from multilens.plots import bars, figure, line_with_band, line_with_errorbars, scatter_with_curve
from multilens.report.html import render_html
from multilens.report.markdown import render_markdown

__all__ = [
    "bars",
    "figure",
    "line_with_band",
    "line_with_errorbars",
    "render_html",
    "render_markdown",
    "scatter_with_curve",
    "write_atomic",
    "write_report",
]

REPORT_FILES = {"html": "report.html", "markdown": "report.md"}


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically with the user's umask (see :func:`multilens.io.atomic_write_text`)."""
    return atomic_write_text(path, text)


def write_report(out_dir: Path, summary: Mapping[str, Any], manifest: Mapping[str, Any]) -> dict[str, Path]:
    """Render and write ``report.html`` and ``report.md`` into ``out_dir`` (created if missing).

    Returns ``{"html": path, "markdown": path}``. Both texts are rendered before either file is
    written, so a rendering error leaves any earlier report untouched.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = {"html": render_html(summary, manifest), "markdown": render_markdown(summary, manifest)}
    return {kind: write_atomic(out_dir / REPORT_FILES[kind], text) for kind, text in texts.items()}
