"""`multilens scaling fit FILE.csv`: JSON on good input; one line and exit 2 on malformed input."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from multilens.cli import app

runner = CliRunner()


def _law_csv(path, with_c=False, rows=None):
    rng = np.random.default_rng(0)
    N = np.repeat([1e6, 3e6, 1e7, 3e7], 4)
    D = np.tile([2e7, 6e7, 2e8, 6e8], 4)
    L = (1.7 + 400 / N**0.34 + 410 / D**0.28) * np.exp(rng.normal(0, 0.005, N.size))
    lines = ["N,C,loss" if with_c else "N,D,loss"]
    for n, d, l in zip(N, D, L):
        lines.append(f"{n},{6 * n * d if with_c else d},{l}")
    if rows:
        lines += rows
    path.write_text("\n".join(lines) + "\n")
    return path


def test_fit_json_has_params_allocation_and_diagnostics(tmp_path):
    r = runner.invoke(app, ["scaling", "fit", str(_law_csv(tmp_path / "a.csv")), "--bootstrap", "20", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert set(d["params"]) == {"E", "A", "B", "alpha", "beta"}
    for v in d["params"].values():
        assert v["ci_low"] <= v["estimate"] <= v["ci_high"]
    assert abs(d["params"]["alpha"]["estimate"] - 0.34) < 0.1
    a, b = d["allocation"]["a"]["estimate"], d["allocation"]["b"]["estimate"]
    assert abs(a + b - 1) < 1e-12
    assert (
        abs(a - d["params"]["beta"]["estimate"] / (d["params"]["alpha"]["estimate"] + d["params"]["beta"]["estimate"]))
        < 1e-12
    )
    assert d["n_points"] == 16 and d["diagnostics"]["converged"] is True


def test_n_c_loss_columns_give_the_same_fit(tmp_path):
    one = runner.invoke(app, ["scaling", "fit", str(_law_csv(tmp_path / "a.csv")), "--bootstrap", "10", "--json"])
    two = runner.invoke(
        app, ["scaling", "fit", str(_law_csv(tmp_path / "b.csv", with_c=True)), "--bootstrap", "10", "--json"]
    )
    pa, pb = json.loads(one.stdout)["params"], json.loads(two.stdout)["params"]
    for k in pa:
        assert abs(pa[k]["estimate"] - pb[k]["estimate"]) <= 1e-6 * abs(pa[k]["estimate"])


def test_compute_form(tmp_path):
    r = runner.invoke(
        app, ["scaling", "fit", str(_law_csv(tmp_path / "a.csv")), "--form", "compute", "--bootstrap", "10", "--json"]
    )
    assert r.exit_code == 0, r.output
    assert set(json.loads(r.stdout)["params"]) == {"A", "alpha", "L_inf"}


def test_malformed_csv_exits_2_naming_the_problem(tmp_path):
    cases = {
        "missing column": ("N,loss\n1,2\n", "D"),
        "non-numeric": (None, "row"),
        "nan": (None, "nan"),
        "non-positive": (None, "> 0"),
        "too few": ("N,D,loss\n1e6,1e7,2.0\n2e6,1e7,1.9\n", "5"),
    }
    for name, (text, fragment) in cases.items():
        p = tmp_path / f"{name}.csv"
        if text is not None:
            p.write_text(text)
        elif name == "non-numeric":
            _law_csv(p, rows=["1e6,abc,2.0"])
        elif name == "nan":
            _law_csv(p, rows=["1e6,nan,2.0"])
        else:
            _law_csv(p, rows=["-1e6,1e7,2.0"])
        r = runner.invoke(app, ["scaling", "fit", str(p), "--json"])
        assert r.exit_code == 2, (name, r.output)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("multilens: error:"), (name, r.stderr)
        assert fragment.lower() in lines[0].lower(), (name, lines[0])
    r = runner.invoke(app, ["scaling", "fit", str(tmp_path / "nope.csv")])
    assert r.exit_code == 2 and "nope.csv" in r.stderr
