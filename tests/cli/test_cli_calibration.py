"""`multilens calibration FILE`: good CSV/.npz files give JSON metrics; malformed ones one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from multilens.cli import app
from multilens.lenses.calibration import metrics as M


def _data(n: int = 300, k: int = 3, t0: float = 2.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, k)) * 2
    p = M.softmax(base)
    y = (rng.random(n)[:, None] > np.cumsum(p, 1)).sum(1)
    return y, base * t0


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.write_text("\n".join(",".join(map(str, r)) for r in [header, *rows]) + "\n")
    return path


def _run(*args: str):
    return CliRunner().invoke(app, ["calibration", *args])


def test_csv_probs_json_matches_library(tmp_path: Path) -> None:
    y, z = _data()
    p = M.softmax(z)
    f = _write_csv(
        tmp_path / "p.csv",
        ["label", "p_0", "p_1", "p_2"],
        [[int(a), *(repr(float(v)) for v in b)] for a, b in zip(y, p)],
    )
    res = _run(str(f), "--json", "--bins", "10", "--n-boot", "100")
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    for k in ("ece", "ece_adaptive", "mce", "nll", "brier"):
        assert set(d[k]) == {"estimate", "ci_low", "ci_high"}
        assert d[k]["ci_low"] <= d[k]["estimate"] <= d[k]["ci_high"]
    assert d["ece"]["estimate"] == pytest.approx(M.ece(y, p, 10), abs=1e-12)
    assert d["nll"]["estimate"] == pytest.approx(M.nll(y, p), abs=1e-12)
    assert d["n"] == 300 and d["n_classes"] == 3 and "temperature" not in d


def test_csv_named_classes_in_any_order(tmp_path: Path) -> None:
    f = _write_csv(tmp_path / "n.csv", ["p_dog", "label", "p_cat"], [[0.9, "dog", 0.1], [0.2, "dog", 0.8]])
    d = json.loads(_run(str(f), "--json", "--bins", "2", "--n-boot", "20").output)
    # top-label: conf .9 correct, .8 wrong (label dog, predicted cat): both in bin 1 -> |.85 - .5|
    assert d["ece"]["estimate"] == pytest.approx(0.35, abs=1e-12)


def test_npz_logits_fit_temperature_and_validate(tmp_path: Path) -> None:
    y, z = _data(n=2000, t0=2.0)
    f = tmp_path / "z.npz"
    np.savez(f, labels=y, logits=z)
    res = _run(str(f), "--json", "--fit-temperature", "--validate", "0.3", "--n-boot", "50", "--seed", "1")
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    t = d["temperature"]
    assert t["converged"] is True and t["ci_low"] <= 2.0 <= t["ci_high"]
    assert t["nll_after"] <= t["nll_before"]
    v = d["validation"]
    assert v["n_heldout"] == 600 and v["n_fit"] == 1400
    assert v["after"]["nll"]["estimate"] < v["before"]["nll"]["estimate"]


def test_human_readable_output(tmp_path: Path) -> None:
    y, z = _data(n=100)
    f = tmp_path / "z.npz"
    np.savez(f, labels=y, logits=z)
    res = _run(str(f), "--n-boot", "20")
    assert res.exit_code == 0 and "ece_adaptive" in res.output


@pytest.mark.parametrize(
    "header, rows, match",
    [
        (["lbl", "p_0", "p_1"], [[0, 0.5, 0.5]], "missing column `label`"),
        (["label", "p_0"], [[0, 1.0]], "missing class columns"),
        (["label", "p_0", "p_1"], [[0, 0.5, 0.5], [1, 0.5, 0.6]], r"row 1 \(line 3\): p_ columns sum to 1\.1"),
        (["label", "p_0", "p_1"], [[0, 0.5, 0.5], [1, "nan", 0.5]], r"row 1 \(line 3\), column `p_0`"),
        (["label", "p_0", "p_1"], [[0, 0.5, 0.5], [2, 0.5, 0.5]], r"row 1 \(line 3\), column `label`: '2' is out"),
        (["label", "logit_0", "logit_1"], [[0, 1, "abc"]], r"row 0 \(line 2\), column `logit_1`"),
        (["label", "p_0", "p_1"], [], "no rows"),
    ],
)
def test_malformed_csv_one_line_exit_2(tmp_path: Path, header: list[str], rows: list, match: str) -> None:
    import re

    f = _write_csv(tmp_path / "bad.csv", header, rows)
    res = _run(str(f), "--json")
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in res.output
    assert re.search(match, lines[0]), lines[0]


def test_malformed_npz_and_probs_with_fit_temperature(tmp_path: Path) -> None:
    f = tmp_path / "bad.npz"
    np.savez(f, labels=np.array([0, 1]), probs=np.array([[0.5, 0.5], [0.2, 0.7]]))
    res = _run(str(f))
    assert res.exit_code == 2 and "row 1 sums to 0.9" in res.output
    np.savez(f, labels=np.array([0, 1]), scores=np.array([[0.5, 0.5], [0.2, 0.8]]))
    res = _run(str(f))
    assert res.exit_code == 2 and "exactly one of the arrays `probs` or `logits`" in res.output
    np.savez(f, labels=np.array([0, 1]), probs=np.array([[0.5, 0.5], [0.2, 0.8]]))
    res = _run(str(f), "--fit-temperature")
    assert res.exit_code == 2 and "need logits" in res.output
    res = _run(str(tmp_path / "nope.csv"))
    assert res.exit_code == 2 and "does not exist" in res.output
    y, z = _data(n=50)
    np.savez(f, labels=y, logits=z)
    res = _run(str(f), "--validate", "1.5")
    assert res.exit_code == 2 and "--validate" in res.output
