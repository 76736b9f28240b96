"""CSV input of users' runs (every malformed case names its column or row) and the JSON report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from multilens.errors import ConfigError, DataError
from multilens.lenses.scaling import ScalingData, load_scaling_csv, scaling_fit_report, to_estimates
from multilens.lenses.scaling.synthetic import chinchilla_grid_data
from multilens.results import Estimate

GOOD_ROWS = [(1e7, 2e8, 3.9), (1e8, 2e9, 3.1), (1e9, 2e10, 2.5), (3e7, 1e9, 3.3), (3e8, 5e9, 2.8)]


def write(tmp_path: Path, text: str, name: str = "runs.csv") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def csv_text(header: str, rows: list[tuple]) -> str:
    return header + "\n" + "\n".join(",".join(str(v) for v in r) for r in rows) + "\n"


def test_reads_N_D_loss_with_extra_columns(tmp_path):
    text = "seed, N ,D,loss,run\n" + "\n".join(f"{i},{n},{d},{l},r{i}" for i, (n, d, l) in enumerate(GOOD_ROWS))
    data = load_scaling_csv(write(tmp_path, text))
    assert isinstance(data, ScalingData)
    np.testing.assert_array_equal(data.N, [r[0] for r in GOOD_ROWS])
    np.testing.assert_array_equal(data.D, [r[1] for r in GOOD_ROWS])
    np.testing.assert_array_equal(data.loss, [r[2] for r in GOOD_ROWS])
    assert data.n_points == 5
    with pytest.raises(ValueError):
        data.N[0] = 1.0  # results are read-only


def test_reads_N_C_loss_and_converts_D(tmp_path):
    rows = [(n, 6 * n * d, l) for n, d, l in GOOD_ROWS]
    data = load_scaling_csv(write(tmp_path, csv_text("N,C,loss", rows)))
    np.testing.assert_allclose(data.D, [r[1] for r in GOOD_ROWS], rtol=1e-12)
    np.testing.assert_allclose(data.compute, [r[1] for r in rows], rtol=1e-12)


@pytest.mark.parametrize(
    "text, pattern",
    [
        (None, r"does not exist"),
        ("", r"file is empty"),
        ("\n\n", r"file is empty"),
        (csv_text("N,D,seed", GOOD_ROWS), r"missing column `loss`"),
        (csv_text("D,loss,seed", GOOD_ROWS), r"missing column `N`"),
        (csv_text("N,tokens,loss", GOOD_ROWS), r"missing column `D`.*or `C`"),
        (
            csv_text("N,D,loss", GOOD_ROWS[:2] + [(1e9, "abc", 2.5)] + GOOD_ROWS[3:]),
            r"row 3 \(line 4\), column `D`: 'abc' is not a number",
        ),
        (
            csv_text("N,D,loss", GOOD_ROWS[:3] + [(1e9, 2e10, "nan")] + GOOD_ROWS[4:]),
            r"row 4 \(line 5\), column `loss` is 'nan'",
        ),
        (csv_text("N,D,loss", [(1e7, 2e8, "inf")] + GOOD_ROWS[1:]), r"row 1 \(line 2\), column `loss` is 'inf'"),
        (
            csv_text("N,D,loss", GOOD_ROWS[:1] + [(-1e8, 2e9, 3.1)] + GOOD_ROWS[2:]),
            r"row 2 \(line 3\), column `N` is -100000000.0.*> 0",
        ),
        (csv_text("N,D,loss", GOOD_ROWS[:4] + [(3e8, 0, 2.8)]), r"row 5 \(line 6\), column `D` is 0.*> 0"),
        (csv_text("N,C,loss", GOOD_ROWS[:4] + [(3e8, 5e9, -2.8)]), r"row 5 \(line 6\), column `loss` is -2.8"),
        (csv_text("N,D,loss", GOOD_ROWS[:3]), r"has 3 data rows but the fit has 5 parameters"),
        ("N,D,loss\n1,2,3\n4,5\n", r"row 2 \(line 3\) has 2 cells but the header has 3"),
        ("N,D,loss,N\n1,2,3,4\n", r"column `N` appears 2 times"),
    ],
)
def test_malformed_csv_raises_one_line_data_error(tmp_path, text, pattern):
    path = tmp_path / "missing.csv" if text is None else write(tmp_path, text)
    with pytest.raises(DataError, match=pattern) as exc:
        load_scaling_csv(path)
    msg = str(exc.value)
    assert "\n" not in msg
    assert str(path) in msg


def test_min_points_for_the_compute_form(tmp_path):
    data = load_scaling_csv(write(tmp_path, csv_text("N,D,loss", GOOD_ROWS[:3])), min_points=3)
    assert data.n_points == 3
    with pytest.raises(ConfigError, match="`min_points`"):
        load_scaling_csv(write(tmp_path, csv_text("N,D,loss", GOOD_ROWS)), min_points=0)


def test_scaling_data_validates_arrays():
    with pytest.raises(DataError, match=r"`loss`\[1\] is -1"):
        ScalingData([1.0, 2.0], [1.0, 2.0], [1.0, -1.0])
    with pytest.raises(DataError, match="same length"):
        ScalingData([1.0, 2.0], [1.0], [1.0, 2.0])


# ----------------------------------------------------------------------------- report

DATA = chinchilla_grid_data(N=np.geomspace(1e7, 1e10, 6), D=np.geomspace(1e8, 1e11, 6), noise=0.01, seed=0)


def _no_nan(obj) -> None:
    json.dumps(obj, allow_nan=False)  # raises on NaN/inf


def test_chinchilla_report_json(tmp_path):
    rep = scaling_fit_report(DATA, bootstrap=10, seed=1, form="chinchilla")
    _no_nan(rep)
    assert rep["n_points"] == 36
    assert set(rep["params"]) == {"E", "A", "B", "alpha", "beta"}
    for v in rep["params"].values():
        assert set(v) >= {"estimate", "ci_low", "ci_high"}
        assert v["ci_low"] <= v["ci_high"]
    al, be = rep["params"]["alpha"]["estimate"], rep["params"]["beta"]["estimate"]
    assert rep["allocation"]["a"]["estimate"] == pytest.approx(be / (al + be))
    assert rep["allocation"]["b"]["estimate"] == pytest.approx(al / (al + be))
    diag = rep["diagnostics"]
    for k in ("objective", "r2", "rmse", "converged", "n_starts", "n_iter"):
        assert k in diag
    assert diag["n_starts"] == 4500 and diag["converged"] is True
    assert diag["bootstrap"]["n"] == 10 and diag["bootstrap"]["failed"] == 0


def test_compute_report_json_and_no_bootstrap():
    rep = scaling_fit_report(DATA, bootstrap=0, seed=0, form="compute")
    _no_nan(rep)
    assert set(rep["params"]) == {"A", "alpha", "L_inf"}
    assert rep["params"]["alpha"]["ci_low"] is None
    assert "allocation" not in rep
    assert rep["diagnostics"]["bootstrap"]["n"] == 0


def test_report_argument_errors():
    with pytest.raises(ConfigError, match="`form` must be"):
        scaling_fit_report(DATA, form="kaplan")
    with pytest.raises(ConfigError, match="`bootstrap` must be an int >= 0"):
        scaling_fit_report(DATA, bootstrap=-1)
    with pytest.raises(ConfigError, match="`seed` must be"):
        scaling_fit_report(DATA, bootstrap=2, seed=-3, form="compute")


def test_to_estimates():
    from multilens.lenses.scaling import bootstrap_compute_law, fit_compute_law

    fit = fit_compute_law(DATA.compute, DATA.loss)
    boot = bootstrap_compute_law(DATA.compute, DATA.loss, fit, n_boot=20, seed=0)
    est = to_estimates(fit, boot)
    assert [e.name for e in est] == ["scaling.A", "scaling.alpha", "scaling.L_inf"]
    for e in est:
        assert isinstance(e, Estimate)
        assert e.method == "bootstrap percentile over runs" and e.n == 20
        assert e.ci_low <= e.value <= e.ci_high or e.ci_low <= e.ci_high
        assert e.converged is True and e.n_iter == fit.n_iter
        _no_nan(e.to_dict())
    bare = to_estimates(fit, None)
    assert bare[0].ci_low is None and "no bootstrap" in bare[0].note
