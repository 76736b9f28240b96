"""``multilens.diagnose``: every model-facing lens on your own trained model, post hoc.

``diagnose(subject, lenses=("curvature",), seed=0, out="runs/mine")`` runs each requested lens on
a user's :class:`~multilens.subject.Subject` and writes the same artifacts as ``multilens run``
(report.html, summary.json, manifest.json, assumptions.md, risks.md, checklist.md,
results.sqlite), gates from the default policy included. A lens turns the Subject into its own
subject with its package's ``from_subject(subject, settings)``; a lens without one, or whose
``from_subject`` raises :class:`~multilens.lenses.contract.NotApplicable` (no ``embed``, no labels,
no held-out data), is listed as skipped with the reason, never a traceback. Measurements run
inside :func:`~multilens.subject.untouched`: the model's parameters, buffers, grads and training
flags and the global RNG states are the same before and after.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from multilens.config import config_hash, from_dict
from multilens.experiments.lock import RunDirLock
from multilens.experiments.store import Store
from multilens.lenses.contract import NotApplicable, Runtime
from multilens.lenses.registry import get_lens
from multilens.protocol.gates import evaluate_gate, load_policy, not_evaluated
from multilens.protocol.runner import PhaseRecord, protocol_status
from multilens.provenance import code_identity, environment
from multilens.subject import Subject, untouched


@dataclass(frozen=True)
class DiagnoseReport:
    """What ``diagnose`` measured: the summary dict, every check, the artifact paths."""

    summary: dict[str, Any]
    paths: dict[str, Path]

    @property
    def checks(self) -> list[dict[str, Any]]:
        return [
            c | {"lens": ph["name"]}
            for ph in self.summary["phases"]
            for c in (ph.get("result") or {}).get("checks", [])
        ]

    @property
    def status(self) -> str:
        return self.summary["status"]


def subject_description(subject: Subject) -> dict[str, Any]:
    m = subject.model
    return {
        "name": subject.name,
        "model_class": type(m).__name__,
        "parameters": int(sum(p.numel() for p in m.parameters())),
        "dtype": str(subject.dtype).removeprefix("torch."),
        "device": str(subject.device),
        "training_flag": bool(m.training),
        "embed": subject.embed,
        "input_range": list(subject.input_range) if subject.input_range else None,
        "train": type(subject.train).__name__ if subject.train is not None else None,
        "holdout": type(subject.holdout).__name__ if subject.holdout is not None else None,
    }


def _settings(entry: Any, profile: str, settings: dict[str, Any] | None) -> Any:
    cls = entry.load("Settings")
    given = (settings or {}).get(entry.name, (settings or {}).get(entry.section))
    if given is None or isinstance(given, cls):
        return given or cls.for_profile(profile)
    return from_dict(cls, given, where=entry.section, base=cls.for_profile(profile))


def measure_on_subject(entry: Any, subject: Subject, settings: Any, seed: int, runtime: Runtime) -> Any:
    """One lens on a user's Subject; raises NotApplicable with the reason when it does not apply."""
    import importlib

    mod = importlib.import_module(entry.module)
    adapt = getattr(mod, "from_subject", None)
    if adapt is None:
        try:
            adapt = importlib.import_module(f"{entry.module}.adapter").from_subject
        except ModuleNotFoundError:
            raise NotApplicable(
                f"lens `{entry.name}` measures its own training runs, not a given trained model"
            ) from None
    with untouched(subject.model):
        lens_subject, lens_settings = adapt(subject, settings)
        return mod.measure(lens_subject, lens_settings, seed=seed, runtime=runtime)


def diagnose(
    subject: Subject,
    lenses: tuple[str, ...] | list[str] = ("curvature",),
    *,
    seed: int = 0,
    out: str | Path = "runs/diagnose",
    profile: str = "quick",
    settings: dict[str, Any] | None = None,
    policy: str | Path | None = None,
) -> DiagnoseReport:
    """Run ``lenses`` on ``subject`` and write the run directory ``out`` (see the module docstring)."""
    from multilens.protocol.capstone import finalize

    if not isinstance(subject, Subject):
        raise TypeError("`subject` must be a multilens.Subject(model, loss_fn, train=..., holdout=...).")
    entries = [get_lens(n) for n in lenses]
    pol = load_policy(policy)
    out_dir = Path(out)
    t_start = time.perf_counter()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    records: list[PhaseRecord] = []
    gates = []
    metrics: dict[str, Any] = {}
    with RunDirLock(out_dir), Store(out_dir / "results.sqlite") as store:
        for entry in entries:
            st = _settings(entry, profile, settings)
            h = config_hash(
                {"lens": entry.section, "settings": dataclasses.asdict(st), "subject": subject_description(subject)}
            )
            t0 = time.perf_counter()
            try:
                res = measure_on_subject(entry, subject, st, seed, Runtime(out_dir=out_dir))
                payload = {"result": res.to_dict(), "artifacts": {}, "metrics": dict(res.metrics)}
                store.put_phase(entry.section, h, seed, payload)
                metrics.update(res.metrics)
                records.append(
                    PhaseRecord(
                        entry.section,
                        entry.title,
                        "done",
                        time.perf_counter() - t0,
                        {},
                        {},
                        None,
                        payload["result"],
                        payload["metrics"],
                        False,
                        h,
                    )
                )
            except NotApplicable as e:
                records.append(
                    PhaseRecord(
                        entry.section, entry.title, "skipped", 0.0, {}, {}, f"not applicable: {e}", None, {}, False, h
                    )
                )
            except Exception as e:  # a failing lens is recorded; the others still run
                err = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=6)}"
                records.append(
                    PhaseRecord(
                        entry.section,
                        entry.title,
                        "failed",
                        time.perf_counter() - t0,
                        {},
                        {},
                        err,
                        None,
                        {},
                        False,
                        h,
                        missing_checks=list(entry.key_checks),
                    )
                )
        ran = {r.name for r in records if r.status == "done"}
        for g in pol.gates:
            if g.phase in ran:
                gates.append(evaluate_gate(g, metrics))
            else:
                why = "phase not in this diagnosis" if g.phase else "final gates read the capstone's metrics"
                gates.append(not_evaluated(g, why))
        status, failed, blocking = protocol_status(records, gates)
        summary = {
            "schema_version": 2,
            "title": f"multilens diagnose: {subject.name}",
            "profile": profile,
            "seed": seed,
            "status": status,
            "failed_phases": failed,
            "blocking_gates": blocking,
            "stopped_at": None,
            "started_utc": started,
            "wall_time_s": time.perf_counter() - t_start,
            "phases": [r.to_dict() for r in records],
            "gates": [g.to_dict() for g in gates],
            "metrics": metrics,
            "store_counts": store.counts(),
            "policy": {"source": pol.source, "gates": [g.name for g in pol.gates]},
            "subject": subject_description(subject),
        }
        manifest = environment() | {
            "seeds": [seed],
            "config": {"lenses": [e.name for e in entries], "profile": profile},
            "config_hashes": {r.name: r.config_hash for r in records},
            "data_checksums": data_checksums(subject),
            "subject": summary["subject"],
            "code": code_identity(),
            "wall_times": {r.name: r.wall_time_s for r in records} | {"total": summary["wall_time_s"]},
        }
        summary, paths = finalize(out_dir, summary, manifest, store)
    return DiagnoseReport(summary, paths)


def data_checksums(subject: Subject) -> dict[str, str]:
    """SHA-256 of the subject's train and held-out tensors (in loader order), under :func:`untouched`."""
    import hashlib

    from multilens.subject import tensors_of

    out = {}
    with untouched(None, verify=False):
        for name in ("train", "holdout"):
            data = getattr(subject, name)
            if data is None:
                continue
            x, y = tensors_of(data)
            h = hashlib.sha256()
            for t in (x, y):
                h.update(t.detach().cpu().contiguous().numpy().tobytes())
            out[f"subject_{name}"] = "sha256:" + h.hexdigest()
    return out
