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
