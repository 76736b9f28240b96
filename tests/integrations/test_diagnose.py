"""`multilens.diagnose` on a user's conv net with BatchNorm and dropout: a report, and nothing changed."""

from __future__ import annotations

import json
import random

import numpy as np
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

import multilens as ml
from convnet import ConvNet, digits_loaders
from multilens.cli import app
from multilens.subject import model_fingerprint, same_fingerprint


def _trained_convnet() -> tuple[ConvNet, object, object]:
    g = torch.Generator().manual_seed(1)
    model = ConvNet()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    train, holdout = digits_loaders(n_train=200)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for x, y in train:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()  # leaves .grad populated: diagnose must not touch it
        opt.step()
    model.train()  # the user's flag: diagnose must leave it as it was
    return model, train, holdout


def test_diagnose_writes_every_artifact_and_changes_nothing(tmp_path, fast_settings):
    model, train, holdout = _trained_convnet()
    before = model_fingerprint(model)
    rng_before = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    subject = ml.Subject(model, F.cross_entropy, train=train, holdout=holdout, name="my convnet")
    rep = ml.diagnose(
        subject, ("curvature", "scaling"), seed=0, out=tmp_path / "d", profile="smoke", settings=fast_settings
    )
    for name in ("report", "summary", "manifest", "assumptions", "risks", "checklist", "store"):
        assert rep.paths[name].is_file(), name
    by = {p["name"]: p for p in rep.summary["phases"]}
    assert by["curvature"]["status"] == "done"
    assert by["scaling"]["status"] == "skipped" and "not a given trained model" in by["scaling"]["error"]
    res = by["curvature"]["result"]
    top = next(e for e in res["estimates"] if e["name"].startswith("lambda_1") or "top" in e["name"])
    assert top["value"] is not None and top["value"] > 0
    assert res["data"]["hessian"]["mode"] == "eval"
    assert "curvature.kappa" in rep.summary["metrics"]
    assert any(c["kind"] == "agreement" for c in rep.checks)
    # nothing changed: parameters, buffers, grads, training flags, global RNG states
    assert same_fingerprint(before, model_fingerprint(model))
    assert torch.equal(rng_before[0], torch.get_rng_state())
    assert np.array_equal(rng_before[1], np.random.get_state()[1]) and rng_before[2] == random.getstate()
    summary = json.loads(rep.paths["summary"].read_text())
    assert summary["subject"]["model_class"] == "ConvNet" and summary["subject"]["training_flag"] is True


def test_representation_needs_embed_and_runs_with_it(tmp_path):
    model, train, holdout = _trained_convnet()
    subject = ml.Subject(model, F.cross_entropy, train=train, holdout=holdout)
    rep = ml.diagnose(subject, ("representation",), seed=0, out=tmp_path / "d", profile="smoke")
    ph = rep.summary["phases"][0]
    assert ph["status"] == "skipped" and "embed" in ph["error"]
    assert rep.status == "complete"
    before = model_fingerprint(model)
    with_embed = ml.Subject(model, F.cross_entropy, train=train, holdout=holdout, embed="features")
    rep2 = ml.diagnose(with_embed, ("representation",), seed=0, out=tmp_path / "e", profile="smoke")
    ph2 = rep2.summary["phases"][0]
    assert ph2["status"] == "done", ph2["error"]
    assert any("rankme" in e["name"].lower() for e in ph2["result"]["estimates"])
    assert same_fingerprint(before, model_fingerprint(model))


def test_cli_diagnose_on_a_saved_checkpoint(tmp_path, monkeypatch):
    ckpt = tmp_path / "convnet.pt"
    monkeypatch.setenv("MULTILENS_EXAMPLE_CKPT", str(ckpt))
    import diagnose_checkpoint as ex

    monkeypatch.setattr(ex, "CHECKPOINT", ckpt)
    ex.train_and_save(ckpt, epochs=1)
    cfg = tmp_path / "fast.py"
    cfg.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(ex.__file__.rsplit('/', 1)[0])!r})\n"
        "import diagnose_checkpoint as ex\n"
        f"ex.CHECKPOINT = __import__('pathlib').Path({str(ckpt)!r})\n"
        "subject = ex.subject\n"
    )
    r = CliRunner().invoke(
        app, ["diagnose", f"{cfg}:subject", "--out", str(tmp_path / "out"), "--profile", "smoke", "--lens", "curvature"]
    )
    assert r.exit_code in (0, 1), r.output  # 1 only when a default stop gate blocks on this small model
    assert (tmp_path / "out" / "report.html").is_file()
    assert r.stdout.strip().splitlines()[-1].startswith("protocol")


def test_cli_diagnose_bad_factory_is_one_line_exit_2(tmp_path):
    r = CliRunner().invoke(app, ["diagnose", f"{tmp_path}/missing.py:subject"])
    assert r.exit_code == 2 and "does not exist" in r.stderr and "Traceback" not in r.output
    f = tmp_path / "f.py"
    f.write_text("def subject():\n    return 3\n")
    r = CliRunner().invoke(app, ["diagnose", f"{f}:subject"])
    assert r.exit_code == 2 and "must return a multilens.Subject" in r.stderr


def test_diagnose_calibration_on_a_users_classifier(tmp_path):
    model, train, holdout = _trained_convnet()
    before = model_fingerprint(model)
    rep = ml.diagnose(
        ml.Subject(model, F.cross_entropy, train=train, holdout=holdout),
        ("calibration",),
        seed=0,
        out=tmp_path / "c",
        profile="smoke",
    )
    ph = rep.summary["phases"][0]
    assert ph["status"] == "done", ph["error"]
    names = {e["name"] for e in ph["result"]["estimates"]}
    assert any("ece" in n for n in names)
    assert same_fingerprint(before, model_fingerprint(model))
    no_holdout = ml.diagnose(
        ml.Subject(model, F.cross_entropy, train=train), ("calibration",), seed=0, out=tmp_path / "n", profile="smoke"
    )
    assert no_holdout.summary["phases"][0]["status"] == "skipped"
    assert "holdout" in no_holdout.summary["phases"][0]["error"]


class _DictNet(torch.nn.Module):
    """A model whose forward returns a dict, as many user models do."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.Tanh(), torch.nn.Linear(16, 10))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.body(x), "aux": x.mean(1)}


def test_dict_outputs_via_forward_fn_and_float64_models(tmp_path, fast_settings):
    train, holdout = digits_loaders(n_train=128)
    net = _DictNet()
    subject = ml.Subject(net, F.cross_entropy, train=train, holdout=holdout, forward_fn=lambda m, x: m(x)["logits"])
    rep = ml.diagnose(subject, ("curvature",), seed=0, out=tmp_path / "dict", profile="smoke", settings=fast_settings)
    assert rep.summary["phases"][0]["status"] == "done", rep.summary["phases"][0]["error"]
    x, y = next(iter(holdout))
    net64 = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.Tanh(), torch.nn.Linear(16, 10)).double()
    sub64 = ml.Subject(net64, F.cross_entropy, train=(x.double(), y), holdout=(x.double(), y))
    rep64 = ml.diagnose(sub64, ("curvature",), seed=0, out=tmp_path / "f64", profile="smoke", settings=fast_settings)
    ph = rep64.summary["phases"][0]
    assert ph["status"] == "done", ph["error"]
    assert rep64.summary["subject"]["dtype"] == "float64"
    assert next(net64.parameters()).dtype == torch.float64  # the user's model keeps its dtype
