"""Tests of the Markdown report: same content as the HTML one, well-formed GFM tables, escaping."""

from __future__ import annotations

import re
from typing import Any

from multilens.report.markdown import md_cell, md_table, render_markdown

_UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


def _tables(text: str) -> list[list[str]]:
    """Blocks of consecutive lines that start with a pipe."""
    blocks: list[list[str]] = []
    current: list[str] = []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            blocks.append(current)
            current = []
    return blocks


def _assert_well_formed(block: list[str]) -> None:
    assert len(block) >= 2, block
    assert re.fullmatch(r"\|(---\|)+", block[1]), block[1]
    width = len(_UNESCAPED_PIPE.findall(block[0]))
    for line in block:
        assert line.startswith("| ") or line is block[1], line
        assert line.endswith("|"), line
        assert len(_UNESCAPED_PIPE.findall(line)) == width, line


def test_every_table_is_well_formed(summary: dict[str, Any], manifest: dict[str, Any]) -> None:
    text = render_markdown(summary, manifest)
    blocks = _tables(text)
    assert len(blocks) >= 15
    for block in blocks:
        _assert_well_formed(block)


def test_pipes_backslashes_and_newlines_are_escaped() -> None:
    assert md_cell("a | b") == "a \\| b"
    assert md_cell("line 1\nline 2 ") == "line 1<br>line 2"
    assert md_cell(None) == "\u2014" and md_cell("") == " "
    tricky = [["a\\|b", "c\\", "|"], ["x\\\\|y", "\n", "ok"]]
    block = md_table(["h|1", "h2", "h3"], tricky).splitlines()
    _assert_well_formed(block)
    assert md_table(["a", "b"], [["1"], ["1", "2", "3"]]).splitlines()[0] == "| a | b |   |"  # ragged rows padded


def test_same_content_as_html(summary: dict[str, Any], manifest: dict[str, Any]) -> None:
    text = render_markdown(summary, manifest)
    phases = summary["phases"]
    for p in phases:
        assert f"({p['name']}) \u2014 {p['status']}" in text
        result = p["result"] or {}
        for item in result.get("estimates", []) + result.get("checks", []):
            assert item["name"].split(" ")[0] in text
        for fig in result.get("figures", []):
            assert f"({fig['key']})" in text  # figures listed, not drawn
    for heading in ("## Decision record", "## Overview", "## Go/no-go gates", "## Phases",
                    "### Cross-lens consistency (predeclared)", "### Stress tests", "## Recommendations",
                    "## Risk register", "## Reproducibility checklist", "## Artifacts", "## Manifest"):  # fmt: skip
        assert heading in text
    assert "| alpha | 0.301 | [0.27, 0.33] | 95% bootstrap percentile | 0.015 | 200 |" in text
    assert "not identifiable \\| too few points" in text
    assert "sha256:0f" in text and "Plotly" not in text and "<div" not in text


def test_verdicts_come_from_passed(summary: dict[str, Any], manifest: dict[str, Any]) -> None:
    checks = summary["phases"][0]["result"]["checks"]
    checks[0] |= {"passed": False, "verdict": "pass"}
    text = render_markdown(summary, manifest)
    assert re.search(r"^\| alpha_matches_theory \| agreement \| fail \|", text, re.MULTILINE)
    assert re.search(r"^\| prediction_in_ci \| agreement \| not evaluated \|", text, re.MULTILINE)
    assert re.search(r"^\| trace_converged \| curvature \| .* \| warn \| fail \|", text, re.MULTILINE)


def test_raw_html_is_neutralised_and_comparisons_stay_readable(
    summary: dict[str, Any], manifest: dict[str, Any], hostile: dict[str, str]
) -> None:
    text = render_markdown(summary, manifest)
    prose = re.sub(r"^(`{3,})\n.*?\n\1$", "", text, flags=re.MULTILINE | re.DOTALL)  # code blocks are literal
    assert "<script" not in prose.lower() and "</script" not in prose.lower()
    assert hostile["xss"].replace("<", "&lt;") in prose
    assert "\u2028" not in text and "\u2029" not in text
    assert "r2 0.9987 >= 0.9" in text and "lambda_max 10 < 2/lr = 20" in text


def test_config_fence_survives_backticks(summary: dict[str, Any], manifest: dict[str, Any]) -> None:
    text = render_markdown(summary, manifest)
    start = text.index("**config**")
    fence = re.search(r"^(`{3,})$", text[start:], re.MULTILINE)
    assert fence and len(fence.group(1)) == 4  # the config contains a run of three backticks


def test_empty_inputs() -> None:
    text = render_markdown({}, {})
    assert text.startswith("# multilens report") and "_No phases ran._" in text and "_Empty manifest._" in text
