"""Provenance: package versions, git commit, hardware, data checksums, command line.

Everything in a run directory's ``manifest.json`` comes from here, read at run time.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

_PACKAGES = ("multilens", "torch", "numpy", "scipy", "scikit-learn", "typer", "rich", "plotly", "ray")


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for p in _PACKAGES:
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            out[p] = None
    return out


def git_state(start: Path | None = None) -> dict[str, Any]:
    """The commit and dirtiness of the git checkout the package is imported from (if any)."""
    here = start or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return {"commit": None, "dirty": None}
        status = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> dict[str, Any]:
    import torch

    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "os": platform.platform(),
        "cuda": torch.cuda.is_available(),
        "torch_threads": torch.get_num_threads(),
    }


def environment() -> dict[str, Any]:
    import torch

    g = git_state()
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "package_versions": package_versions(),
        "git_commit": g["commit"],
        "git_dirty": g["dirty"],
        "hardware": hardware(),
        "cpu": cpu_name(),
        "command": " ".join(sys.argv),
    }
