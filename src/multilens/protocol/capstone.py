"""``multilens run``: the protocol plus its manifest, cross-checks, governance and report.

Writes into the run directory: results.sqlite (the store), summary.json, manifest.json,
report.html, report.md, assumptions.md, risks.md, checklist.md. Every file is written
atomically; the final summary and manifest are also kept in the store so ``multilens report``
can re-render everything from the store alone.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from multilens.data.digits import digits_checksum
from multilens.data.teacher_student import TeacherStudentTask
from multilens.experiments.executors import make_executor
from multilens.experiments.store import Store
from multilens.io import atomic_write_json, atomic_write_text
from multilens.protocol import governance
from multilens.protocol.config import RunConfig
from multilens.protocol.consistency import evaluate_cross_checks
from multilens.protocol.runner import run_protocol
from multilens.provenance import environment

ARTIFACTS = {
    "report": "report.html",
    "report_md": "report.md",
    "summary": "summary.json",
    "manifest": "manifest.json",
    "assumptions": "assumptions.md",
    "risks": "risks.md",
    "checklist": "checklist.md",
    "store": "results.sqlite",
}


def _data_checksums(cfg: RunConfig) -> dict[str, str]:
    """Checksums of the bundled data and of the teacher-student task as this run configured it."""
    sums = {"sklearn_digits": digits_checksum()}
    if "scaling" in cfg.phases:
        sc = cfg.lens_config("scaling")
        task = TeacherStudentTask(
            sc.d_in,
            sc.teacher_width,
            sc.noise_std,
            teacher_seed=0,
            decay=sc.teacher_decay,
            input_scale=sc.teacher_input_scale,
        )
        sums["scaling_teacher_student"] = task.checksum()
    return sums


def build_manifest(cfg: RunConfig, summary: dict[str, Any]) -> dict[str, Any]:
    env = environment()
    return {
        **env,
        "seeds": [cfg.seed],
        "config": cfg.to_dict(),
        "config_hashes": {p: cfg.phase_hash(p) for p in cfg.phases},
        "data_checksums": _data_checksums(cfg),
        "wall_times": {ph["name"]: ph["wall_time_s"] for ph in summary["phases"]} | {"total": summary["wall_time_s"]},
    }


def finalize(
    out_dir: Path, summary: dict[str, Any], manifest: dict[str, Any], store: Store | None
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Add cross-checks, recommendations and governance to the summary; write every artifact."""
    from multilens.report import write_report

    summary = dict(summary)
    summary["cross_checks"] = [c.to_dict() | {"verdict": c.verdict} for c in evaluate_cross_checks(summary["metrics"])]
    summary["recommendations"] = [
        {"text": r, "source": ph["name"]} for ph in summary["phases"] for r in ph.get("recommendations", [])
    ]
    summary["assumptions"] = governance.assumptions(summary)
    summary["risks"] = governance.risks(summary)
    summary["checklist"] = governance.checklist(summary, manifest, store)
    summary["artifacts"] = dict(ARTIFACTS)
    paths = {k: out_dir / v for k, v in ARTIFACTS.items()}
    atomic_write_json(paths["summary"], summary)
    atomic_write_json(paths["manifest"], manifest)
    atomic_write_text(paths["assumptions"], governance.assumptions_md(summary["assumptions"]))
    atomic_write_text(paths["risks"], governance.risks_md(summary["risks"]))
    atomic_write_text(paths["checklist"], governance.checklist_md(summary["checklist"]))
    write_report(out_dir, summary, manifest)
    if store is not None:
        store.put_meta("summary", summary)
        store.put_meta("manifest", manifest)
    return summary, paths


def run_capstone(
    cfg: RunConfig,
    out_dir: str | Path,
    executor: str = "local",
    workers: int | None = None,
    address: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    on_phase: Callable[[str, str], None] | None = None,
) -> tuple[dict[str, Any], dict[str, Path]]:
    out = Path(out_dir)
    ex = make_executor(executor, workers, address)
    try:
        summary = run_protocol(cfg, out, ex, progress=progress, on_phase=on_phase)
    finally:
        ex.close()
    summary["executor"] = {"kind": ex.name, "workers": ex.workers}
    manifest = build_manifest(cfg, summary)
    manifest["executor"] = summary["executor"]
    with Store(out / "results.sqlite") as store:
        summary, paths = finalize(out, summary, manifest, store)
    return summary, paths


def rerender(out_dir: str | Path) -> dict[str, Path]:
    """Re-render every report artifact from the run directory's store."""
    from multilens.errors import ConfigError

    out = Path(out_dir)
    db = out / "results.sqlite"
    if not db.is_file():
        raise ConfigError(f"`{out}` has no results.sqlite; pass a directory written by `multilens run`.")
    with Store(db) as store:
        summary, manifest = store.get_meta("summary"), store.get_meta("manifest")
        if summary is None or manifest is None:
            raise ConfigError(
                f"the store in `{out}` has no finished protocol run; run `multilens run --out {out}` to finish it."
            )
        base = {
            k: v
            for k, v in summary.items()
            if k not in ("cross_checks", "recommendations", "assumptions", "risks", "checklist", "artifacts")
        }
        return finalize(out, base, manifest, store)[1]
