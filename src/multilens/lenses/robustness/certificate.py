"""A failure-rate certificate: a Clopper-Pearson upper bound on a class's false-negative rate.

For the critical class c, every held-out example of class c is an independent Bernoulli trial
(a false negative when the model predicts another class). With k false negatives among n, the
one-sided Clopper-Pearson bound u satisfies P(FNR <= u) >= 1 - delta (Clopper & Pearson 1934),
under the assumption that the held-out examples are an i.i.d. sample of the deployment slice.

The certificate is a JSON document holding what it covers (the sha256 of the model's state dict
and of the slice's inputs and labels), the per-example outcomes, k, n, delta, u, and a digest of
its own content. :func:`verify_certificate` recomputes k from the outcomes, u from (k, n, delta)
and the digest; it does not need the model (the hashes pin which model and data were audited;
``verify_certificate(..., model=..., x=..., y=...)`` re-runs the model when they are given).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from multilens.config import canonical_json
from multilens.stats import clopper_pearson

KIND = "multilens.fnr_certificate"
SCHEMA = 1
REL_TOL = 1e-9


def tensor_hash(*ts: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in ts:
        a = np.ascontiguousarray(t.detach().cpu().numpy())
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def model_hash(model: nn.Module) -> str:
    """sha256 over the state dict's names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        a = np.ascontiguousarray(v.detach().cpu().numpy())
        h.update(k.encode() + str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def fnr_upper(k: int, n: int, delta: float) -> float:
    """One-sided (1 - delta) Clopper-Pearson upper bound on a proportion (1.0 when n = 0)."""
    if n == 0:
        return 1.0
    return float(clopper_pearson(int(k), int(n), level=1 - 2 * delta).high) if k < n else 1.0


def _digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json({k: v for k, v in body.items() if k != "digest"}).encode()).hexdigest()


def make_certificate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, cls: int, delta: float) -> dict[str, Any]:
    """The certificate of ``model`` on the examples of class ``cls`` in (x, y)."""
    sel = y == cls
    xs, ys = x[sel], y[sel]
    from multilens.lenses.robustness.attacks import frozen_eval

    m = frozen_eval(model)
    with torch.no_grad():
        pred = m(xs).argmax(1) if xs.shape[0] else torch.zeros(0, dtype=torch.long)
    miss = (pred != ys).numpy().astype(int).tolist()
    k, n = int(sum(miss)), len(miss)
    body: dict[str, Any] = {
        "kind": KIND,
        "schema_version": SCHEMA,
        "property": f"false-negative rate of class {cls}",
        "class": int(cls),
        "delta": float(delta),
        "n": n,
        "k": k,
        "u": fnr_upper(k, n, delta),
        "method": "one-sided Clopper-Pearson upper bound at level 1 - delta over i.i.d. held-out examples of the class",
        "model_sha256": model_hash(model),
        "data_sha256": tensor_hash(xs, ys),
        "outcomes": miss,
    }
    body["digest"] = _digest(body)
    return body


def write_certificate(cert: dict[str, Any], path: str | Path) -> Path:
    from multilens.io import atomic_write_json

    return atomic_write_json(path, cert)


def verify_certificate(
    cert: Any, *, model: nn.Module | None = None, x: torch.Tensor | None = None, y: torch.Tensor | None = None
) -> tuple[bool, list[str]]:
    """(verified, problems). Raises ValueError when ``cert`` is not a certificate (a bad file)."""
    if not isinstance(cert, dict) or cert.get("kind") != KIND:
        raise ValueError(f"not a multilens FNR certificate (`kind` must be {KIND!r})")
    need = ("class", "delta", "n", "k", "u", "outcomes", "model_sha256", "data_sha256", "digest")
    missing = [k for k in need if k not in cert]
    if missing:
        raise ValueError(f"certificate lacks field(s) {', '.join(missing)}")
    out = cert["outcomes"]
    if not isinstance(out, list) or any(v not in (0, 1) for v in out):
        raise ValueError("`outcomes` must be a list of 0/1 per example")
    delta = cert["delta"]
    if not isinstance(delta, (int, float)) or not 0 < float(delta) < 0.5:
        raise ValueError(f"`delta` must be in (0, 0.5); got {delta!r}")
    problems: list[str] = []
    k, n = int(sum(out)), len(out)
    if (k, n) != (cert["k"], cert["n"]):
        problems.append(f"k/n recomputed from the outcomes are {k}/{n}; the certificate says {cert['k']}/{cert['n']}")
    u = fnr_upper(k, n, float(delta))
    if not isinstance(cert["u"], (int, float)) or abs(u - float(cert["u"])) > REL_TOL * max(u, 1e-12):
        problems.append(f"u recomputed = {u:.10g}; the certificate says {cert['u']!r}")
    if _digest(cert) != cert["digest"]:
        problems.append("the content digest does not match: the certificate was edited after it was written")
    if model is not None and model_hash(model) != cert["model_sha256"]:
        problems.append("the given model's hash differs from the certified model's")
    if x is not None and y is not None:
        again = make_certificate(model, x, y, cls=int(cert["class"]), delta=float(delta)) if model is not None else None
        sel = y == int(cert["class"])
        if tensor_hash(x[sel], y[sel]) != cert["data_sha256"]:
            problems.append("the given data's hash differs from the certified data's")
        elif again is not None and again["outcomes"] != out:
            problems.append("re-running the model on the data gives different outcomes")
    return not problems, problems


def load_certificate(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())
