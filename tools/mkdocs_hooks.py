"""mkdocs hook: copy plotly.js (from the installed plotly package, offline) next to the built pages."""

from __future__ import annotations

import shutil
from pathlib import Path


def on_post_build(config, **kwargs):  # noqa: ANN001 - mkdocs hook signature
    import plotly

    src = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    dst = Path(config["site_dir"]) / "assets" / "plotly.min.js"
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
