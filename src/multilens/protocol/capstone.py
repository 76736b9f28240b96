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
from multilens.data.family import FamilySpec
from multilens.data.teacher_student import TeacherStudentTask
from multilens.experiments.executors import make_executor
from multilens.experiments.lock import RunDirLock
from multilens.experiments.store import Store
from multilens.io import atomic_write_json, atomic_write_text
from multilens.protocol import governance
from multilens.protocol.config import RunConfig
from multilens.protocol.decision import decision_md, decision_record
from multilens.protocol.runner import run_protocol
from multilens.provenance import code_identity, environment
from multilens.results import check_counts

ARTIFACTS = {
    "report": "report.html",
    "report_md": "report.md",
    "summary": "summary.json",
    "manifest": "manifest.json",
    "assumptions": "assumptions.md",
    "risks": "risks.md",
    "checklist": "checklist.md",
    "decision": "decision.md",
    "store": "results.sqlite",
}


def _data_checksums(cfg: RunConfig) -> dict[str, str]:
    """Checksums of the bundled data and of the teacher-student task as this run configured it."""
    sums = {"sklearn_digits": digits_checksum(), "shared_family": FamilySpec().checksum()}
    if "scaling" in cfg.phases:
        sc = cfg.lens_config("scaling")
        sc = getattr(sc, "subject", sc)
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


def overall_check_counts(summary: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Checks of every phase and the cross-lens checks by kind and verdict; a failed or skipped
    phase's key checks count as not evaluated."""
    checks = [c for ph in summary["phases"] for c in (ph.get("result") or {}).get("checks", [])]
    checks += summary.get("cross_checks", [])
    counts = check_counts(checks)
    for ph in summary["phases"]:
        counts["agreement"]["not evaluated"] += len(ph.get("missing_checks") or [])
    return counts


def headline(summary: dict[str, Any]) -> str:
    """The one line that says how the run ended and why (also the CLI's last line)."""
    st = summary["status"]
    failed_checks = len(governance.failed_error_checks(summary))
    if st == "failed":
        why = "phase(s) " + ", ".join(f"`{p}`" for p in summary.get("failed_phases", [])) + " failed"
        if summary.get("blocking_gates"):
            why += "; stop gate(s) " + ", ".join(f"`{g}`" for g in summary["blocking_gates"]) + " blocked"
        return f"protocol failed: {why}"
    if st == "stopped":
        gates = ", ".join(f"`{g}`" for g in summary.get("blocking_gates", []))
        return f"protocol stopped: stop gate(s) {gates} blocked after phase `{summary.get('stopped_at')}`"
    if failed_checks:
        return f"protocol complete with {failed_checks} failed error-severity check(s): see risks.md"
    return "protocol complete: every phase ran, no stop gate blocked, no error-severity check failed"


def finalize(
    out_dir: Path, summary: dict[str, Any], manifest: dict[str, Any], store: Store | None
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Add cross-checks, recommendations and governance to the summary; write every artifact."""
    from multilens.report import write_report

    summary = dict(summary)
    summary["cross_checks"] = list(summary.get("consistency") or [])  # the policy's [[consistency]] rules
    summary["recommendations"] = [r for ph in summary["phases"] for r in ph.get("recommendations", [])]
    summary["check_counts"] = overall_check_counts(summary)
    summary["headline"] = headline(summary)
    summary["decision"] = decision_record(summary)
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
    atomic_write_text(paths["decision"], decision_md(summary["decision"], summary["headline"]))
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
    reuse_stale: bool = False,
    stress: bool | None = None,
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Run the protocol into ``out_dir`` (locked for this process) and write every artifact.

    A second process on the same ``out_dir`` raises :class:`~multilens.experiments.lock.RunDirLocked`
    (one line naming the holder; exit status 2 in the CLI) before anything is computed.
    """
    out = Path(out_dir)
    with RunDirLock(out):
        ex = make_executor(executor, workers, address)
        try:
            summary = run_protocol(
                cfg, out, ex, progress=progress, on_phase=on_phase, reuse_stale=reuse_stale, stress=stress
            )
        finally:
            ex.close()
        summary["executor"] = {"kind": ex.name, "workers": ex.workers}
        manifest = build_manifest(cfg, summary)
        manifest["executor"] = summary["executor"]
        manifest["code"] = code_identity()
        with Store(out / "results.sqlite", reuse_stale=reuse_stale) as store:
            summary, paths = finalize(out, summary, manifest, store)
    return summary, paths


def rerender(out_dir: str | Path) -> dict[str, Path]:
    """Re-render every report artifact from the run directory's store."""
    from multilens.errors import ConfigError

    out = Path(out_dir)
    db = out / "results.sqlite"
    if not db.is_file():
        raise ConfigError(f"`{out}` has no results.sqlite; pass a directory written by `multilens run`.")
    with RunDirLock(out), Store(db, reuse_stale=True) as store:
        summary, manifest = store.get_meta("summary"), store.get_meta("manifest")
        if summary is None or manifest is None:
            raise ConfigError(
                f"the store in `{out}` has no finished protocol run; run `multilens run --out {out}` to finish it."
            )
        base = {
            k: v
            for k, v in summary.items()
            if k
            not in (
                "cross_checks",
                "recommendations",
                "assumptions",
                "risks",
                "checklist",
                "artifacts",
                "headline",
                "check_counts",
                "decision",
            )
        }
        return finalize(out, base, manifest, store)[1]
