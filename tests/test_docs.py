"""The documentation site builds with `mkdocs build --strict` (a broken reference fails), and every lens has a page."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from multilens.lenses.registry import LENSES

ROOT = Path(__file__).resolve().parents[1]


def test_every_lens_has_a_page_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    for e in LENSES:
        assert (ROOT / "docs" / "lenses" / f"{e.name}.md").is_file(), e.name
        assert f"lenses/{e.name}.md" in nav, e.name


def test_docs_build_strict(tmp_path):
    if shutil.which("mkdocs", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("extra `docs` not installed (mkdocs)")
    mk = str(Path(sys.executable).parent / "mkdocs")
    r = subprocess.run(
        [mk, "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ | {"NO_MKDOCS_2_WARNING": "1"},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "assets" / "plotly.min.js").is_file()
