"""Write one documentation page per registered lens: docs/lenses/<name>.md and docs/figures/<name>.json.

    python tools/gen_lens_docs.py            # runs each lens's smoke profile once for its example figure

Each page says what the lens measures (its summary and module docstring), what its subject is, its
settings (every field with its quick-profile value, one table per part), its checks by kind from
the smoke run, and shows one example figure from that run (Plotly, drawn offline from
assets/plotly.min.js, which the mkdocs hook copies next to the built pages).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import typing
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from multilens.config import _part_type  # noqa: E402
from multilens.lenses.contract import run_lens  # noqa: E402
from multilens.lenses.registry import LENSES  # noqa: E402
from multilens.stats import json_safe  # noqa: E402


def _value(v: typing.Any) -> str:
    return f"`{json.dumps(json_safe(v))}`" if not isinstance(v, str) else f"`{v!r}`"


def settings_tables(settings: typing.Any) -> str:
    hints = typing.get_type_hints(type(settings))
    top, parts = [], []
    for f in dataclasses.fields(settings):
        v = getattr(settings, f.name)
        if _part_type(hints[f.name])[0] is not None:
            parts.append((f.name, v))
        else:
            top.append(f"| `{f.name}` | {_value(v)} |")
    out = ["| setting | quick value |", "|---|---|", *top]
    for name, v in parts:
        out += ["", f"**Part `{name}`**" + (" (off in the quick profile)" if v is None else ""), ""]
        if v is not None:
            out += ["| setting | quick value |", "|---|---|"]
            out += [f"| `{name}.{g.name}` | {_value(getattr(v, g.name))} |" for g in dataclasses.fields(v)]
    return "\n".join(out)


def page(entry: typing.Any, result: typing.Any) -> str:
    d = result.to_dict()
    kinds = {"agreement": [], "bound": [], "sanity": []}
    for c in d["checks"]:
        kinds[c["kind"]].append(c["name"])
    fig = next((f for f in d["figures"] if f["data"]), None)
    lines = [
        f"# {entry.name}",
        "",
        f"**{entry.title}.** {entry.summary}.",
        "",
        f"**Subject:** {entry.subject}. Run it with `multilens lens {entry.name} --json`, or call "
        f"`multilens.lenses.{entry.section}.measure(subject, settings, seed=...)` on your own.",
        "",
        "## Checks (from a smoke run)",
        "",
    ]
    for k, names in kinds.items():
        shown = ", ".join(f"`{n}`" for n in names[:25]) + (f" and {len(names) - 25} more" if len(names) > 25 else "")
        lines.append(f"- **{k}** ({len(names)}): {shown or 'none'}")
    if fig is not None:
        lines += [
            "",
            "## An example figure",
            "",
            f"*{fig['title']}* (smoke profile, seed 0). {fig.get('caption', '')}",
            "",
            f'<div id="fig-{entry.section}" style="height:380px"></div>',
            '<script src="../../assets/plotly.min.js"></script>',
            f"<script>fetch('../../figures/{entry.name}.json').then(r => r.json()).then(f => "
            f"Plotly.newPlot('fig-{entry.section}', f.data, f.layout, {{responsive: true}}));</script>",
        ]
    lines += ["", "## Settings", "", settings_tables(entry.settings_for("quick")), "", "## API", "",
              f"::: multilens.lenses.{entry.section}", ""]  # fmt: skip
    return "\n".join(lines)


def write_nav() -> None:
    """The Lenses section of mkdocs.yml lists every registered lens."""
    p = ROOT / "mkdocs.yml"
    text = p.read_text()
    start = text.index("  - Lenses:\n")
    end = text.index("  - The CLI:")
    items = ["  - Lenses:", "      - lenses/index.md"] + [f"      - lenses/{e.name}.md" for e in LENSES]
    p.write_text(text[:start] + "\n".join(items) + "\n" + text[end:])


def main() -> None:
    write_nav()
    (ROOT / "docs" / "figures").mkdir(parents=True, exist_ok=True)
    for entry in LENSES:
        result = run_lens(entry, entry.settings_for("smoke"), 0)
        fig = next((f for f in result.to_dict()["figures"] if f["data"]), None)
        if fig is not None:
            (ROOT / "docs" / "figures" / f"{entry.name}.json").write_text(
                json.dumps(json_safe({"data": fig["data"], "layout": fig["layout"]}), allow_nan=False)
            )
        (ROOT / "docs" / "lenses" / f"{entry.name}.md").write_text(page(entry, result))
        print(entry.name, flush=True)


if __name__ == "__main__":
    main()
