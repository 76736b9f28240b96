"""``multilens.Monitor``: lens measurements during training, as time series aligned to steps.

::

    mon = ml.Monitor(subject, lenses=("curvature",), every=200, out="runs/mine")
    for step, batch in enumerate(loader):
        ...; opt.step()
        mon.step(step)                 # measures when due; cheap otherwise
    mon.event("lr_decay", step)        # drawn on every time-series plot
    mon.close()                        # writes the time series, report and store

Each measurement runs the lenses' ``measure`` on a copy of the model inside
:func:`~multilens.subject.untouched` (global RNG states restored, the model verified unchanged), so
training with and without the Monitor gives bit-identical weights. Each measurement is written
to the store as soon as it is taken: a killed training loses at most the measurement in
progress, and ``Monitor(..., resume=True)`` (or ``load_state_dict``) continues the series. The
Monitor's own cost is measured and reported as a fraction of the training time between steps.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from multilens.diagnosis import DiagnoseReport, _settings, data_checksums, measure_on_subject, subject_description
from multilens.errors import ConfigError
from multilens.experiments.store import Store
from multilens.lenses.contract import NotApplicable, Runtime
from multilens.lenses.registry import get_lens
from multilens.plots import PALETTE
from multilens.results import Figure
from multilens.seeding import derive_seed
from multilens.subject import Subject
from multilens.validation import check_int

STATE_VERSION = 1


class Monitor:
    """Measure ``lenses`` on ``subject`` every ``every`` steps; see the module docstring."""

    def __init__(
        self,
        subject: Subject,
        lenses: tuple[str, ...] | list[str] = ("curvature",),
        *,
        every: int = 200,
        out: str | Path = "runs/monitor",
        seed: int = 0,
        profile: str = "smoke",
        settings: dict[str, Any] | None = None,
        resume: bool = False,
        tensorboard: str | Path | None = None,
    ) -> None:
        if not isinstance(subject, Subject):
            raise ConfigError("`subject` must be a multilens.Subject(model, loss_fn, train=..., holdout=...).")
        self.subject = subject
        self.every = check_int("every", every, 1)
        self.entries = [get_lens(n) for n in lenses]
        self.settings = {e.section: _settings(e, profile, settings) for e in self.entries}
        self.out = Path(out)
        self.seed = seed
        self.profile = profile
        self.records: list[dict[str, Any]] = []  # one per (step, lens): estimates and metrics
        self.events: list[dict[str, Any]] = []
        self.skipped: dict[str, str] = {}
        self.last_results: dict[str, dict[str, Any]] = {}
        self.measure_s = 0.0
        self.t_first: float | None = None
        self.t_last: float | None = None
        self._tb = None
        self._tb_dir = tensorboard
        self.store = Store(self.out / "results.sqlite")
        if resume:
            self.load_state_dict(self.store.get_meta("monitor:state") or self.state_dict())

    # --- training-loop API -------------------------------------------------------------------
    def step(self, step: int) -> bool:
        """Measure if ``step`` is due (``step % every == 0``); returns whether it measured."""
        now = time.perf_counter()
        self.t_first = now if self.t_first is None else self.t_first
        self.t_last = now
        if step % self.every != 0 or any(r["step"] == step for r in self.records):
            return False
        t0 = time.perf_counter()
        for entry in self.entries:
            if entry.section in self.skipped:
                continue
            try:
                res = measure_on_subject(
                    entry,
                    self.subject,
                    self.settings[entry.section],
                    derive_seed(self.seed, "monitor", step),
                    Runtime(out_dir=self.out),
                )
            except NotApplicable as e:
                self.skipped[entry.section] = str(e)
                continue
            d = res.to_dict()
            rec = {
                "step": int(step),
                "lens": entry.section,
                "metrics": d["metrics"],
                "estimates": [
                    {k: e[k] for k in ("name", "value", "ci_low", "ci_high", "unit")} for e in d["estimates"]
                ],
            }
            self.records.append(rec)
            self.last_results[entry.section] = d
            self.store.put_meta(f"monitor:{entry.section}:{int(step):012d}", rec)  # written per measurement
            self._tensorboard(rec)
        self.measure_s += time.perf_counter() - t0
        self.store.put_meta("monitor:state", self.state_dict())
        self.t_last = time.perf_counter()
        return True

    def event(self, name: str, step: int) -> None:
        """Mark an optimizer event (warm-up end, learning-rate decay) at ``step``; drawn on the plots."""
        self.events.append({"name": str(name), "step": int(step)})
        self.store.put_meta("monitor:state", self.state_dict())

    # --- resumability ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "records": list(self.records),
            "events": list(self.events),
            "skipped": dict(self.skipped),
            "measure_s": self.measure_s,
            "every": self.every,
            "lenses": [e.section for e in self.entries],
            "seed": self.seed,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ConfigError(
                f"monitor state has version {state.get('version')!r}; this multilens reads {STATE_VERSION}."
            )
        if state.get("lenses") != [e.section for e in self.entries]:
            raise ConfigError(f"monitor state was written for lenses {state.get('lenses')}; pass the same `lenses`.")
        self.records = list(state["records"])
        self.events = list(state["events"])
        self.skipped = dict(state.get("skipped", {}))
        self.measure_s = float(state.get("measure_s", 0.0))

    # --- output ------------------------------------------------------------------------------
    @property
    def overhead(self) -> float | None:
        """Measurement time as a fraction of the training time between the first and last step."""
        if self.t_first is None or self.t_last is None:
            return None
        train = (self.t_last - self.t_first) - self.measure_s
        return self.measure_s / train if train > 0 else None

    def time_series(self) -> list[Figure]:
        """One figure per (lens, estimate): value with its interval band against step, events marked."""
        figs = []
        keys = sorted({(r["lens"], e["name"]) for r in self.records for e in r["estimates"]})
        for lens, name in keys:
            pts = sorted(
                (r["step"], e)
                for r in self.records
                if r["lens"] == lens
                for e in r["estimates"]
                if e["name"] == name and e["value"] is not None
            )
            if not pts:
                continue
            steps = [p[0] for p in pts]
            traces: list[dict[str, Any]] = []
            if all(p[1]["ci_low"] is not None and p[1]["ci_high"] is not None for p in pts):
                traces.append(
                    {
                        "type": "scatter",
                        "x": steps + steps[::-1],
                        "y": [p[1]["ci_high"] for p in pts] + [p[1]["ci_low"] for p in pts][::-1],
                        "fill": "toself",
                        "line": {"width": 0},
                        "fillcolor": "rgba(31,119,180,0.18)",
                        "name": "interval",
                        "hoverinfo": "skip",
                    }
                )
            traces.append(
                {
                    "type": "scatter",
                    "mode": "lines+markers",
                    "x": steps,
                    "y": [p[1]["value"] for p in pts],
                    "name": name,
                    "line": {"color": PALETTE[0]},
                }
            )
            shapes = [
                {
                    "type": "line",
                    "x0": ev["step"],
                    "x1": ev["step"],
                    "yref": "paper",
                    "y0": 0,
                    "y1": 1,
                    "line": {"dash": "dot", "color": "#888"},
                }
                for ev in self.events
            ]
            notes = [
                {"x": ev["step"], "y": 1, "yref": "paper", "text": ev["name"], "showarrow": False, "yanchor": "bottom"}
                for ev in self.events
            ]
            figs.append(
                Figure(
                    f"monitor.{lens}.{name}",
                    f"{lens}: {name} during training",
                    traces,
                    {
                        "xaxis": {"title": {"text": "step"}},
                        "yaxis": {"title": {"text": name}},
                        "shapes": shapes,
                        "annotations": notes,
                    },
                    "Each point is one Monitor measurement; the band is its interval; dotted lines are "
                    "optimizer events.",
                )
            )
        return figs

    def close(self) -> DiagnoseReport:
        """Write the time series, the report and the store; returns the report's summary and paths."""
        from multilens.protocol.capstone import finalize
        from multilens.protocol.runner import PhaseRecord, protocol_status

        figs = [f.to_dict() for f in self.time_series()]
        records = []
        for e in self.entries:
            if e.section in self.skipped:
                records.append(
                    PhaseRecord(
                        e.section,
                        e.title,
                        "skipped",
                        0.0,
                        {},
                        {},
                        f"not applicable: {self.skipped[e.section]}",
                        None,
                        {},
                        False,
                        "",
                    )
                )
                continue
            last = dict(self.last_results.get(e.section) or {})
            if last:
                last["figures"] = [f for f in figs if f["key"].startswith(f"monitor.{e.section}.")] + last["figures"]
                last["notes"] = [
                    f"last measurement at step {max(r['step'] for r in self.records)}; "
                    f"{sum(r['lens'] == e.section for r in self.records)} measurements"
                ] + last["notes"]
            records.append(
                PhaseRecord(
                    e.section,
                    e.title,
                    "done" if last else "skipped",
                    0.0,
                    {},
                    {},
                    None if last else "no measurement was taken",
                    last or None,
                    last.get("metrics", {}),
                    False,
                    "",
                )
            )
        status, failed, blocking = protocol_status(records, [])
        ov = self.overhead
        summary = {
            "schema_version": 2,
            "title": f"multilens monitor: {self.subject.name}",
            "profile": self.profile,
            "seed": self.seed,
            "status": status,
            "failed_phases": failed,
            "blocking_gates": blocking,
            "stopped_at": None,
            "started_utc": "",
            "wall_time_s": self.measure_s,
            "phases": [r.to_dict() for r in records],
            "gates": [],
            "metrics": {},
            "store_counts": self.store.counts(),
            "policy": {"source": "", "gates": []},
            "subject": subject_description(self.subject),
            "monitor": {
                "every": self.every,
                "measurements": len(self.records),
                "events": self.events,
                "measure_s": self.measure_s,
                "overhead_fraction": ov,
                "overhead": f"{ov:.1%} of training time" if ov is not None else "not measured (fewer than 2 steps)",
            },
        }
        from multilens.provenance import code_identity, environment

        manifest = environment() | {
            "seeds": [self.seed],
            "config": {"lenses": [e.name for e in self.entries], "every": self.every, "profile": self.profile},
            "config_hashes": {},
            "data_checksums": data_checksums(self.subject),
            "code": code_identity(),
            "subject": summary["subject"],
            "wall_times": {"monitor measurements": self.measure_s},
        }
        summary, paths = finalize(self.out, summary, manifest, self.store)
        self.store.put_meta("monitor:state", self.state_dict())
        if self._tb is not None:
            self._tb.close()
        self.store.close()
        return DiagnoseReport(summary, paths)

    def _tensorboard(self, rec: dict[str, Any]) -> None:
        if self._tb_dir is None:
            return
        if self._tb is None:
            try:
                from tensorboardX import SummaryWriter
            except ImportError as e:
                raise ConfigError("`tensorboard=` needs tensorboardX: pip install 'multilens[tensorboard]'.") from e
            self._tb = SummaryWriter(str(self._tb_dir))
        for e in rec["estimates"]:
            if e["value"] is None:
                continue
            tag = f"{rec['lens']}/{e['name']}"
            self._tb.add_scalar(tag, e["value"], rec["step"])
            if e["ci_low"] is not None and e["ci_high"] is not None:
                self._tb.add_scalar(f"{tag}.ci_low", e["ci_low"], rec["step"])
                self._tb.add_scalar(f"{tag}.ci_high", e["ci_high"], rec["step"])
