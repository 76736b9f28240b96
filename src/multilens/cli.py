"""The command-line interface: parse -> config -> library call -> print. No math here.

Every MultilensError becomes one line on stderr and exit status 2 (bad input); `multilens gate`
exits 1 when a gate fails. Tracebacks are never shown for bad input.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from multilens.errors import MultilensError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Measure the mathematical structure of training runs.",
)
scaling_app = typer.Typer(no_args_is_help=True, help="Scaling-law fits on your own runs.")
app.add_typer(scaling_app, name="scaling")
out = Console()
err = Console(stderr=True)


class ProfileName(str, Enum):
    smoke = "smoke"
    quick = "quick"
    full = "full"


class ExecutorName(str, Enum):
    local = "local"
    ray = "ray"


class FormName(str, Enum):
    chinchilla = "chinchilla"
    compute = "compute"


def _fail(e: Exception) -> None:
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    typer.echo(f"multilens: error: {msg}", err=True)  # one unwrapped line, whatever the terminal width
    raise typer.Exit(2)


def _guard(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except MultilensError as e:
        _fail(e)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False, allow_nan=False)


@app.command()
def run(
    profile: Optional[ProfileName] = typer.Option(None, help="smoke (tests, <1 min), quick (default) or full."),
    config: Optional[Path] = typer.Option(
        None, "--config", help="A run TOML file (profile, seed, phases, lens tables)."
    ),
    out_dir: Path = typer.Option(
        Path("runs/latest"), "--out", help="Run directory; rerun with the same one to resume."
    ),
    executor: ExecutorName = typer.Option(ExecutorName.local, help="Where sweeps run: a local process pool or Ray."),
    address: Optional[str] = typer.Option(
        None, help="Ray cluster address (with --executor ray); default starts a local Ray."
    ),
    workers: Optional[int] = typer.Option(None, min=1, help="Parallel workers (default: number of cores)."),
    seed: Optional[int] = typer.Option(None, min=0, help="Protocol seed (overrides the config file)."),
) -> None:
    """Run the capstone protocol and write the report and its artifacts into --out."""
    from multilens.config import load_toml
    from multilens.errors import ConfigError
    from multilens.protocol.capstone import run_capstone
    from multilens.protocol.config import run_config_from_dict

    def go() -> None:
        if address and executor is not ExecutorName.ray:
            raise ConfigError("`--address` only applies to `--executor ray`; drop it or add --executor ray.")
        data = load_toml(config) if config else {}
        cfg = run_config_from_dict(data, profile=profile.value if profile else None, seed=seed)
        out.print(
            f"[bold]multilens run[/] profile={cfg.profile} seed={cfg.seed} phases={', '.join(cfg.phases)} -> {out_dir}"
        )
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=out,
            transient=False,
        ) as bar:
            tasks: dict[str, Any] = {}

            def progress(label: str, done: int, total: int) -> None:
                if label not in tasks:
                    tasks[label] = bar.add_task(f"sweep {label}", total=total)
                bar.update(tasks[label], completed=done, total=total)

            def on_phase(name: str, title: str) -> None:
                bar.console.print(f"phase [cyan]{name}[/]: {title}")

            summary, paths = run_capstone(cfg, out_dir, executor.value, workers, address, progress, on_phase)
        _print_summary(summary)
        out.print(f"report: {paths['report'].resolve()}")
        if summary["status"] == "failed":
            raise typer.Exit(1)

    _guard(go)


def _print_summary(summary: dict[str, Any]) -> None:
    t = Table(
        title=f"protocol {summary['status']}"
        + (f" (stopped after {summary['stopped_at']})" if summary.get("stopped_at") else "")
    )
    for c in ("phase", "status", "checks pass/fail/n.e.", "wall s"):
        t.add_column(c)
    for ph in summary["phases"]:
        checks = (ph.get("result") or {}).get("checks", [])
        p = sum(c["passed"] is True for c in checks)
        f = sum(c["passed"] is False for c in checks)
        n = sum(c["passed"] is None for c in checks)
        t.add_row(
            Text(ph["name"]),
            ph["status"] + (" (cached)" if ph.get("cached") else ""),
            f"{p}/{f}/{n}",
            f"{ph['wall_time_s']:.1f}",
        )
    out.print(t)
    _print_gates(summary["gates"])


def _print_gates(gates: list[dict[str, Any]]) -> None:
    t = Table(title="gates")
    for c in ("gate", "value", "rule", "action", "verdict"):
        t.add_column(c)
    for g in gates:
        v = "—" if g["value"] is None else f"{g['value']:.6g}"
        verdict = {True: "[green]pass[/]", False: "[red]fail[/]", None: "[yellow]not evaluated[/]"}[g["passed"]]
        t.add_row(Text(g["name"]), v, f"{g['op']} {g['threshold']:g}", g["action"], verdict)
    out.print(t)


@scaling_app.command("fit")
def scaling_fit(
    csv: Path = typer.Argument(..., help="CSV with columns N,D,loss (or N,C,loss with D = C/(6N))."),
    form: FormName = typer.Option(
        FormName.chinchilla, help="chinchilla: L(N,D)=E+A/N^a+B/D^b; compute: L(C)=A*C^-a+L_inf."
    ),
    bootstrap: int = typer.Option(200, min=10, help="Bootstrap refits (resampling rows) for the intervals."),
    seed: int = typer.Option(0, min=0, help="Bootstrap seed."),
    as_json: bool = typer.Option(False, "--json", help="Print the fit as JSON."),
) -> None:
    """Fit a scaling law to your own runs, with bootstrap intervals and diagnostics."""
    from multilens.lenses.scaling import load_scaling_csv, scaling_fit_report

    def go() -> None:
        data = load_scaling_csv(csv)
        rep = scaling_fit_report(data, bootstrap=bootstrap, seed=seed, form=form.value)
        if as_json:
            typer.echo(_dumps(rep))
            return
        t = Table(title=f"{form.value} fit on {rep['n_points']} points")
        for c in ("parameter", "estimate", "95% CI"):
            t.add_column(c)
        for k, v in {**rep["params"], **rep.get("allocation", {})}.items():
            t.add_row(k, _fmt(v["estimate"]), Text(f"[{_fmt(v['ci_low'])}, {_fmt(v['ci_high'])}]"))
        out.print(t)
        out.print({k: v for k, v in rep["diagnostics"].items() if not isinstance(v, list)})

    _guard(go)


def _fmt(x: Any) -> str:
    return "—" if x is None else f"{x:.6g}"


@app.command()
def report(run_dir: Path = typer.Argument(..., help="A run directory written by `multilens run`.")) -> None:
    """Re-render report.html and the other artifacts from a run directory's store."""
    from multilens.protocol.capstone import rerender

    def go() -> None:
        paths = rerender(run_dir)
        out.print(f"report: {paths['report'].resolve()}")

    _guard(go)


@app.command()
def gate(
    policy: Path = typer.Option(..., "--policy", help="Policy TOML with [[gate]] tables."),
    metrics: Path = typer.Option(..., "--metrics", help="JSON object of metric name -> number."),
    as_json: bool = typer.Option(False, "--json", help="Print the gate results as JSON."),
) -> None:
    """Evaluate go/no-go gates on metrics: exit 0 if all pass, 1 if one fails, 2 on bad input."""
    from multilens.errors import ConfigError
    from multilens.protocol.gates import evaluate_policy, load_policy

    def go() -> int:
        pol = load_policy(policy)
        if not metrics.is_file():
            raise ConfigError(f"metrics file `{metrics}` does not exist; pass a JSON file of name -> number.")
        try:
            m = json.loads(metrics.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"metrics file `{metrics}` is not valid JSON ({e}); fix it.") from None
        if not isinstance(m, dict):
            raise ConfigError(f"metrics file `{metrics}` must hold a JSON object of name -> number.")
        results = evaluate_policy(pol, m)
        if as_json:
            typer.echo(_dumps([r.to_dict() for r in results]))
        else:
            _print_gates([r.to_dict() for r in results])
        return 0 if all(r.passed is True for r in results) else 1

    code = _guard(go)
    raise typer.Exit(code)


@app.command()
def lens(
    name: str = typer.Argument(..., help="Lens name (see `multilens lens --help`)."),
    set_: list[str] = typer.Option([], "--set", help="Override a config field: key=value (repeatable)."),
    profile: ProfileName = typer.Option(ProfileName.quick, help="Config defaults: smoke, quick or full."),
    seed: int = typer.Option(0, min=0, help="Seed."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    out_dir: Optional[Path] = typer.Option(
        None,
        "--out",
        help="Also write result.json, report.html and one JSON file per figure here (default runs/lens-NAME).",
    ),
) -> None:
    """Run one lens on its default model and data and print its result."""
    from multilens.config import apply_overrides, from_dict
    from multilens.lenses.registry import get_lens

    def go() -> None:
        entry = get_lens(name)
        cls = entry.load("config")
        cfg = from_dict(cls, apply_overrides({}, set_), where=entry.section, base=cls.for_profile(profile.value))
        result = entry.load("run")(cfg, seed=seed)
        d = result.to_dict()
        files = _write_lens_files(out_dir or Path("runs") / f"lens-{entry.name}", entry.name, d, cfg, seed)
        payload = {
            "lens": result.lens,
            **d["data"],
            "estimates": d["estimates"],
            "checks": d["checks"],
            "predictions": d["predictions"],
            "notes": d["notes"],
            "files": files,
        }
        if as_json:
            typer.echo(_dumps(payload))
            return
        _print_lens(d)
        for k, v in files.items():
            out.print(Text(f"{k}: {v}"))

    _guard(go)


def _write_lens_files(folder: Path, name: str, d: dict[str, Any], cfg: Any, seed: int) -> dict[str, str]:
    """result.json, a one-phase report.html and figures/<key>.json (Plotly JSON) per figure."""
    import dataclasses

    from multilens.io import atomic_write_json
    from multilens.report import write_report

    folder.mkdir(parents=True, exist_ok=True)
    files = {"result": str(atomic_write_json(folder / "result.json", d))}
    for f in d["figures"]:
        safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in f["key"])
        files[f"figure {f['key']}"] = str(
            atomic_write_json(
                folder / "figures" / f"{safe}.json", {"data": f["data"], "layout": f["layout"], "title": f["title"]}
            )
        )
    summary = {
        "schema_version": 1,
        "title": f"multilens lens {name}",
        "profile": "lens",
        "seed": seed,
        "status": "complete",
        "stopped_at": None,
        "wall_time_s": 0.0,
        "started_utc": "",
        "phases": [
            {
                "name": name,
                "title": name,
                "status": "done",
                "wall_time_s": 0.0,
                "consumes": {},
                "produces": {},
                "error": None,
                "result": d,
                "metrics": {},
            }
        ],
        "gates": [],
        "cross_checks": [],
        "recommendations": [],
        "risks": [],
        "checklist": [],
        "artifacts": {},
    }
    manifest = {"config": dataclasses.asdict(cfg), "seeds": [seed]}
    files["report"] = str(write_report(folder, summary, manifest)["html"])
    return files


def _print_lens(d: dict[str, Any]) -> None:
    t = Table(title=f"lens {d['lens']}: estimates")
    for c in ("estimate", "value", "interval", "n", "converged"):
        t.add_column(c)
    for e in d["estimates"]:
        ci = (
            f"[{_fmt(e['ci_low'])}, {_fmt(e['ci_high'])}]"
            if e["ci_low"] is not None
            else (f"± {_fmt(e['stderr'])}" if e["stderr"] is not None else "—")
        )
        t.add_row(
            *map(
                Text,
                (e["name"], _fmt(e["value"]), ci, str(e["n"]), "—" if e["converged"] is None else str(e["converged"])),
            )
        )
    out.print(t)
    c = Table(title="checks")
    for col in ("check", "verdict", "reason"):
        c.add_column(col)
    for ch in d["checks"]:
        c.add_row(Text(ch["name"]), Text(ch["verdict"]), Text(ch["reason"]))  # Text: no markup parsing of data
    out.print(c)
    for tb in d["tables"]:
        t2 = Table(title=tb["title"])
        for col in tb["columns"]:
            t2.add_column(str(col))
        for row in tb["rows"]:
            t2.add_row(*[Text(_fmt(v) if isinstance(v, float) else str(v)) for v in row])
        out.print(t2)
    for n in d["notes"]:
        out.print(f"note: {n}", markup=False)


@app.command()
def calibration(
    file: Path = typer.Argument(
        ..., help="CSV (label + p_<class> or logit_<class> columns) or .npz (labels + probs or logits)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
    bins: int = typer.Option(15, "--bins", min=1, help="Number of confidence bins (equal-width and equal-mass)."),
    fit_temperature: bool = typer.Option(
        False, "--fit-temperature", help="Fit a temperature on all rows (needs logits) and report it with its interval."
    ),
    validate: Optional[float] = typer.Option(
        None,
        "--validate",
        help="Also fit T on 1-FRAC of the rows and report the metrics before/after on the FRAC held out.",
    ),
    n_boot: int = typer.Option(1000, "--n-boot", min=10, help="Bootstrap resamples over examples for the intervals."),
    seed: int = typer.Option(0, min=0, help="Seed of the bootstrap and of the --validate split."),
) -> None:
    """Calibration of your own predictions: ECE (equal-width and equal-mass), MCE, NLL, Brier, with intervals."""
    from multilens.lenses.calibration.cli_report import calibration_report

    def go() -> None:
        rep = calibration_report(file, bins=bins, fit_temperature=fit_temperature, validate=validate,
                                 n_boot=n_boot, seed=seed)  # fmt: skip
        if as_json:
            typer.echo(_dumps(rep))
            return
        t = Table(title=f"calibration of {rep['n']} predictions, {rep['n_classes']} classes, {bins} bins")
        for c in ("metric", "estimate", "95% CI"):
            t.add_column(c)
        for k, v in rep.items():
            if isinstance(v, dict) and "estimate" in v:
                t.add_row(k, _fmt(v["estimate"]), Text(f"[{_fmt(v['ci_low'])}, {_fmt(v['ci_high'])}]"))
        out.print(t)
        if "validation" in rep:
            val = rep["validation"]
            out.print(Text(f"held-out {val['n_heldout']} rows (T = {val['temperature']['estimate']:.4g} fitted on "
                           f"{val['n_fit']}): " + ", ".join(f"{k} {val['before'][k]['estimate']:.4g} -> "
                                                             f"{val['after'][k]['estimate']:.4g}"
                                                             for k in ("ece", "nll", "brier"))))  # fmt: skip

    _guard(go)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("multilens: interrupted; rerun with the same --out to resume.")
        sys.exit(130)


if __name__ == "__main__":
    main()
