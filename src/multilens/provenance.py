"""Provenance: package versions, git commit, hardware, data checksums, command line.

Everything in a run directory's ``manifest.json`` comes from here, read at run time.
"""

from __future__ import annotations

import functools
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


@functools.lru_cache(maxsize=1)
def code_identity() -> dict[str, Any]:
    """Which code produced a result: package version, git commit, and a hash of the package's sources.

    The source hash (SHA-256 over every ``.py`` and ``.toml`` file of the installed package, in
    path order) changes with any edit, committed or not, so cached results can be told stale.
    """
    import hashlib

    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for f in sorted(list(root.rglob("*.py")) + list(root.rglob("*.toml"))):
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    g = git_state()
    return {
        "version": package_versions().get("multilens"),
        "git_commit": g["commit"],
        "git_dirty": g["dirty"],
        "source_hash": h.hexdigest()[:16],
    }


def result_provenance(settings: Any, seed: int, wall_time_s: float) -> dict[str, Any]:
    """The provenance every LensResult carries: config hash, seed, code, versions, hardware, time."""
    import dataclasses

    from multilens.config import config_hash

    cfg = dataclasses.asdict(settings) if dataclasses.is_dataclass(settings) else settings
    return {
        "config_hash": config_hash(cfg) if cfg is not None else None,
        "seed": seed,
        "code": code_identity(),
        "package_versions": {k: v for k, v in package_versions().items() if v is not None},
        "hardware": _hardware_cached(),
        "wall_time_s": wall_time_s,
    }


@functools.lru_cache(maxsize=1)
def _hardware_cached() -> dict[str, Any]:
    return hardware()
