"""`multilens certify verify CERT.json`: exit 0 verified, 1 mismatch, 2 bad file."""

from __future__ import annotations

import json

import torch
from torch import nn
from typer.testing import CliRunner

from multilens.cli import app
from multilens.robustness import make_certificate, write_certificate


def cert_file(tmp_path):
    g = torch.Generator().manual_seed(0)
    net = nn.Linear(4, 3)
    with torch.no_grad():
        net.weight.copy_(torch.randn(3, 4, generator=g))
    x = torch.randn(60, 4, generator=g)
    y = torch.randint(0, 3, (60,), generator=g)
    return write_certificate(make_certificate(net, x, y, cls=0, delta=0.05), tmp_path / "cert.json")


def test_verified_exit_0(tmp_path) -> None:
    res = CliRunner().invoke(app, ["certify", "verify", str(cert_file(tmp_path))])
    assert res.exit_code == 0, res.output
    assert "verified" in res.output


def test_mismatch_exit_1(tmp_path) -> None:
    p = cert_file(tmp_path)
    d = json.loads(p.read_text())
    d["u"] = d["u"] / 2  # a weaker model claiming a better bound
    p.write_text(json.dumps(d))
    res = CliRunner().invoke(app, ["certify", "verify", str(p)])
    assert res.exit_code == 1
    assert "u recomputed" in res.output


def test_bad_file_exit_2(tmp_path) -> None:
    p = tmp_path / "x.json"
    p.write_text("{not json")
    assert CliRunner().invoke(app, ["certify", "verify", str(p)]).exit_code == 2
    p.write_text(json.dumps({"kind": "other"}))
    assert CliRunner().invoke(app, ["certify", "verify", str(p)]).exit_code == 2
    assert CliRunner().invoke(app, ["certify", "verify", str(tmp_path / "missing.json")]).exit_code == 2


def test_the_lens_certificate_verifies(tmp_path) -> None:
    """The certificate the lens hands on (outputs) is a file `certify verify` accepts as written."""
    from multilens.lenses.robustness import Settings, measure
    from multilens.lenses.robustness.lens import Subject

    g = torch.Generator().manual_seed(1)
    net = nn.Sequential(nn.Linear(4, 3))
    x = torch.rand(80, 4, generator=g)
    y = torch.randint(0, 3, (80,), generator=g)
    s = Settings.for_profile("smoke")
    off = {p: None for p in ("attacks", "linear_reference", "lipschitz", "smoothing", "training", "corruptions",
                             "transfer")}  # fmt: skip
    import dataclasses

    from multilens.lenses.robustness.settings import CertificateSettings

    s = dataclasses.replace(s, certificate=CertificateSettings(critical_class=1), **off)
    r = measure(Subject(net, x, y, input_range=(0.0, 1.0)), s, seed=0)
    p = tmp_path / "c.json"
    p.write_text(json.dumps(r.outputs["robustness.certificate"]))
    assert CliRunner().invoke(app, ["certify", "verify", str(p)]).exit_code == 0
    assert r.metrics["robustness.fnr_upper"] == r.outputs["robustness.certificate"]["u"]
