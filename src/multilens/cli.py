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
    mlflow: Optional[str] = typer.Option(None, "--mlflow", help="Also export the run to this MLflow tracking URI."),
    reuse_stale: bool = typer.Option(
        False,
        "--reuse-stale",
        help="Reuse results cached by other code (marked 'cached from <commit>') instead of recomputing.",
    ),
    stress: Optional[bool] = typer.Option(
        None,
        "--stress/--no-stress",
        help="Run the policy's stress tests (shift, contention, budget contraction); default: full profile only.",
    ),
) -> None:
    """Run the capstone protocol and write the report and its artifacts into --out.

    Exit status: 0 when every phase completed and no stop gate blocked; 1 when a phase failed or a
    stop gate blocked (the last line says which); 2 on bad input (including an --out in use).
    """
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

            summary, paths = run_capstone(
                cfg,
                out_dir,
                executor.value,
                workers,
                address,
                progress,
                on_phase,
                reuse_stale=reuse_stale,
                stress=stress,
            )
        _print_summary(summary)
        out.print(Text(f"report: {paths['report'].resolve()}"))
        if mlflow:
            from multilens.integrations.mlflow import export_run

            out.print(Text(f"mlflow run: {export_run(out_dir, mlflow)}"))
        typer.echo(summary["headline"])  # the last line says how the run ended
        if summary["status"] != "complete":
            raise typer.Exit(1)

    _guard(go)


def _print_summary(summary: dict[str, Any]) -> None:
    t = Table(
        title=f"protocol {summary['status']}"
        + (f" (stopped after {summary['stopped_at']})" if summary.get("stopped_at") else "")
    )
    for c in ("phase", "status", "evidence pass/fail/n.e.", "sanity pass/fail/n.e.", "wall s"):
        t.add_column(c)
    for ph in summary["phases"]:
        cc = ph.get("check_counts") or {}
        ev = [sum(cc.get(k, {}).get(v, 0) for k in ("agreement", "bound")) for v in ("pass", "fail", "not evaluated")]
        ev[2] += len(ph.get("missing_checks") or [])
        sa = [cc.get("sanity", {}).get(v, 0) for v in ("pass", "fail", "not evaluated")]
        status = ph["status"] + (
            f" (cached from {ph['cached_from']})"
            if ph.get("cached_from")
            else (" (cached)" if ph.get("cached") else "")
        )
        t.add_row(
            Text(ph["name"]), Text(status), "/".join(map(str, ev)), "/".join(map(str, sa)), f"{ph['wall_time_s']:.1f}"
        )
    out.print(t)
    _print_gates(summary["gates"])
    _print_cross(summary)


def _print_gates(gates: list[dict[str, Any]]) -> None:
    t = Table(title="gates")
    for c in ("gate", "value", "rule", "action", "verdict"):
        t.add_column(c)
    for g in gates:
        v = "—" if g["value"] is None else f"{g['value']:.6g}"
        verdict = {True: "[green]pass[/]", False: "[red]fail[/]", None: "[yellow]not evaluated[/]"}[g["passed"]]
        fb = g.get("fallback") or {}
        action = g["action"] + (f" -> {fb.get('name')}: {fb.get('status')}" if fb else "")
        t.add_row(Text(g["name"]), v, f"{g['op']} {g['threshold']:g}", Text(action), verdict)
    out.print(t)


def _print_cross(summary: dict[str, Any]) -> None:
    t = Table(title="cross-lens consistency (predeclared) and stress tests")
    for c in ("#", "check", "kind", "verdict"):
        t.add_column(c)
    colour = {True: "[green]pass[/]", False: "[red]fail[/]", None: "[yellow]not evaluated[/]"}
    for c in summary.get("consistency", []):
        t.add_row(str(c.get("number", "")), Text(c["name"]), c["kind"], colour[c["passed"]])
    for st in summary.get("stress", []):
        t.add_row("stress", Text(st["name"]), st["kind"], colour[st["passed"]])
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


export_app = typer.Typer(no_args_is_help=True, help="Export a run directory to a tracker.")
app.add_typer(export_app, name="export")


@export_app.command("mlflow")
def export_mlflow(
    run_dir: Path = typer.Argument(..., help="A run directory written by `multilens run` or `diagnose`."),
    tracking_uri: str = typer.Option(..., "--tracking-uri", help="MLflow tracking URI, e.g. sqlite:///mlflow.db."),
    experiment: str = typer.Option("multilens", help="MLflow experiment name (created if missing)."),
) -> None:
    """Log every estimate (with .ci_low/.ci_high), check verdict, the config and the report to MLflow."""
    from multilens.integrations.mlflow import export_run

    def go() -> None:
        rid = export_run(run_dir, tracking_uri, experiment)
        typer.echo(f"mlflow run: {rid}")

    _guard(go)


def load_factory(spec: str) -> Any:
    """Call ``FILE.py:FUNCTION`` (the app-factory pattern) and return what it returns."""
    import importlib.util

    from multilens.errors import ConfigError

    path, _, func = spec.rpartition(":")
    if not path or not func:
        raise ConfigError(f"`{spec}` must look like FILE.py:FUNCTION (e.g. examples/diagnose_checkpoint.py:subject).")
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"`{path}` does not exist; pass the path of a Python file defining `{func}`.")
    mod_spec = importlib.util.spec_from_file_location(f"_multilens_user_{p.stem}", p)
    mod = importlib.util.module_from_spec(mod_spec)
    try:
        mod_spec.loader.exec_module(mod)
    except Exception as e:
        raise ConfigError(f"`{path}` raised {type(e).__name__} when imported: {e}") from None
    fn = getattr(mod, func, None)
    if not callable(fn):
        raise ConfigError(f"`{path}` has no function `{func}`; define `def {func}() -> multilens.Subject`.")
    return fn()


@app.command()
def diagnose(
    factory: str = typer.Argument(..., help="FILE.py:FUNCTION returning a multilens.Subject."),
    lens_names: list[str] = typer.Option(["curvature"], "--lens", help="A lens to run (repeatable)."),
    out_dir: Path = typer.Option(Path("runs/diagnose"), "--out", help="Run directory for the report and store."),
    seed: int = typer.Option(0, min=0, help="Seed."),
    profile: ProfileName = typer.Option(ProfileName.quick, help="Lens settings defaults: smoke, quick or full."),
    mlflow: Optional[str] = typer.Option(None, "--mlflow", help="Also export to this MLflow tracking URI."),
) -> None:
    """Run lenses on your own trained model: exit 0 complete, 1 a lens failed or a stop gate blocked, 2 bad input."""
    from multilens.diagnosis import diagnose as run_diagnose
    from multilens.errors import ConfigError
    from multilens.subject import Subject

    def go() -> int:
        subject = load_factory(factory)
        if not isinstance(subject, Subject):
            raise ConfigError(f"`{factory}` returned {type(subject).__name__}; it must return a multilens.Subject.")
        rep = run_diagnose(subject, tuple(lens_names), seed=seed, out=out_dir, profile=profile.value)
        _print_summary(rep.summary)
        out.print(Text(f"report: {rep.paths['report'].resolve()}"))
        if mlflow:
            from multilens.integrations.mlflow import export_run

            out.print(Text(f"mlflow run: {export_run(out_dir, mlflow)}"))
        typer.echo(rep.summary["headline"])
        return 0 if rep.status == "complete" else 1

    raise typer.Exit(_guard(go))


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


def _lens_help() -> str:
    from multilens.lenses.registry import LENSES

    names = "\n".join(f"  {e.name:<16} {e.summary}" for e in LENSES)
    return (
        "Run one lens on its default subject and print its result.\n\n"
        "Exit status: 0, or 1 when an error-severity agreement or bound check failed, 2 on bad input.\n\n"
        f"Lenses:\n\n{names}"
    )


@app.command(help=_lens_help(), context_settings={"help_option_names": ["--help", "-h"]})
def lens(
    name: str = typer.Argument(..., help="Lens name (listed below)."),
    set_: list[str] = typer.Option(
        [], "--set", help="Override a setting: key=value or part.key=value; part=false turns a part off."
    ),
    profile: ProfileName = typer.Option(ProfileName.quick, help="Settings defaults: smoke, quick or full."),
    seed: int = typer.Option(0, min=0, help="Seed."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    out_dir: Optional[Path] = typer.Option(
        None,
        "--out",
        help="Also write result.json, report.html and one JSON file per figure here (default runs/lens-NAME).",
    ),
) -> None:
    from multilens.config import apply_overrides, from_dict
    from multilens.experiments.executors import LocalExecutor
    from multilens.lenses.contract import Runtime, run_lens
    from multilens.lenses.registry import get_lens

    def go() -> int:
        entry = get_lens(name)
        cls = entry.load("Settings")
        cfg = from_dict(cls, apply_overrides({}, set_), where=entry.section, base=cls.for_profile(profile.value))
        executor = LocalExecutor()  # sweeps inside a lens use all cores; the pool starts only if used
        try:
            result = run_lens(entry, cfg, seed, Runtime(executor=executor))
        finally:
            executor.close()
        d = result.to_dict()
        files = _write_lens_files(out_dir or Path("runs") / f"lens-{entry.name}", entry.name, d, cfg, seed)
        failed = [c.name for c in result.failed_evidence]
        if as_json:
            payload = {"lens": result.lens, **d["data"], "estimates": d["estimates"], "checks": d["checks"],
                       "check_counts": d["check_counts"], "metrics": d["metrics"], "predictions": d["predictions"],
                       "recommendations": d["recommendations"], "notes": d["notes"], "files": files,
                       "failed_checks": failed}  # fmt: skip
            typer.echo(_dumps(payload))
        else:
            _print_lens(d)
            for k, v in files.items():
                out.print(Text(f"{k}: {v}"))
            typer.echo(
                f"lens {entry.name}: {len(failed)} error-severity evidence check(s) failed: {', '.join(failed)}"
                if failed
                else f"lens {entry.name}: no error-severity evidence check failed"
            )
        return 1 if failed else 0

    raise typer.Exit(_guard(go))


def _write_lens_files(folder: Path, name: str, d: dict[str, Any], cfg: Any, seed: int) -> dict[str, str]:
    """result.json, a one-phase report.html and figures/<key>.json (Plotly JSON) per figure."""
    import dataclasses

    from multilens.io import atomic_write_json
    from multilens.protocol import governance
    from multilens.protocol.capstone import headline, overall_check_counts
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
                "metrics": d["metrics"],
                "check_counts": d["check_counts"],
            }
        ],
        "gates": [],
        "cross_checks": [],
        "recommendations": [r | {"source": name} for r in d["recommendations"]],
        "checklist": [],
        "artifacts": {},
    }
    summary["check_counts"] = overall_check_counts(summary)
    summary["headline"] = headline(summary)
    summary["risks"] = governance.risks(summary)
    manifest = {"config": dataclasses.asdict(cfg), "seeds": [seed], "provenance": d["provenance"]}
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
    c = Table(title="checks (agreement and bound checks are evidence; sanity checks are self-tests)")
    for col in ("check", "kind", "verdict", "reason"):
        c.add_column(col)
    order = {"agreement": 0, "bound": 1, "sanity": 2}
    for ch in sorted(d["checks"], key=lambda c: order.get(c["kind"], 3)):
        c.add_row(Text(ch["name"]), Text(ch["kind"]), Text(ch["verdict"]), Text(ch["reason"]))  # no markup parsing
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


certify_app = typer.Typer(no_args_is_help=True, help="Failure-rate certificates (the robustness lens writes them).")
app.add_typer(certify_app, name="certify")


@certify_app.command("verify")
def certify_verify(
    cert: Path = typer.Argument(..., help="A certificate JSON written by the robustness lens (make_certificate)."),
) -> None:
    """Recompute a certificate's k, its Clopper-Pearson bound u and digest: exit 0 verified, 1 mismatch, 2 bad file."""
    from multilens.lenses.robustness.certificate import load_certificate, verify_certificate

    try:
        ok, problems = verify_certificate(load_certificate(cert))
    except (OSError, ValueError, TypeError) as e:  # unreadable, not JSON, not a certificate
        typer.echo(f"multilens: error: {cert}: {str(e).splitlines()[0] if str(e) else type(e).__name__}", err=True)
        raise typer.Exit(2) from None
    if ok:
        typer.echo(f"verified: {cert}")
        return
    for p in problems:
        typer.echo(f"mismatch: {p}")
    raise typer.Exit(1)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("multilens: interrupted; rerun with the same --out to resume.")
        sys.exit(130)


if __name__ == "__main__":
    main()
