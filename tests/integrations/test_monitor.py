"""The Monitor: time series with intervals and events, resumable, and training is bit-identical with it."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import multilens as ml
from convnet import ConvNet, digits_loaders


def _train(steps: int, monitor_out=None, settings=None, every: int = 4) -> tuple[dict, object]:
    torch.manual_seed(0)  # the user's own global seed: dropout and the shuffling loader draw from it
    train, holdout = digits_loaders(n_train=256, batch_size=32)
    train.generator = None  # shuffle from the global RNG, the case a measurement could disturb
    model = ConvNet(p_drop=0.3)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    mon = None
    if monitor_out is not None:
        mon = ml.Monitor(
            ml.Subject(model, F.cross_entropy, train=train, holdout=holdout),
            ("curvature",),
            every=every,
            out=monitor_out,
            profile="smoke",
            settings=settings,
        )
    step = 0
    while step < steps:
        for x, y in train:
            model.train()
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
            if mon is not None:
                if step == 5:
                    mon.event("lr_decay", step)
                mon.step(step)
            step += 1
            if step >= steps:
                break
    rep = mon.close() if mon is not None else None
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, rep


def test_training_is_bit_identical_with_and_without_the_monitor(tmp_path, fast_settings):
    plain, _ = _train(10)
    monitored, rep = _train(10, tmp_path / "m", fast_settings)
    assert plain.keys() == monitored.keys()
    for k in plain:
        assert torch.equal(plain[k], monitored[k]), k
    mon = rep.summary["monitor"]
    assert mon["measurements"] == 3  # steps 0, 4, 8
    assert mon["overhead_fraction"] is not None and mon["overhead_fraction"] > 0
    figs = rep.summary["phases"][0]["result"]["figures"]
    ts = [f for f in figs if f["key"].startswith("monitor.curvature.")]
    assert ts and ts[0]["layout"]["shapes"][0]["x0"] == 5  # the event is drawn
    assert rep.paths["report"].is_file()


def test_monitor_resumes_from_its_store(tmp_path, fast_settings):
    train, holdout = digits_loaders(n_train=128, batch_size=32)
    model = ConvNet()
    subject = ml.Subject(model, F.cross_entropy, train=train, holdout=holdout)
    m1 = ml.Monitor(subject, ("curvature",), every=1, out=tmp_path / "m", profile="smoke", settings=fast_settings)
    m1.step(0)
    m1.step(1)
    state = m1.state_dict()
    m1.store.close()  # the training was killed here
    m2 = ml.Monitor(
        subject, ("curvature",), every=1, out=tmp_path / "m", profile="smoke", settings=fast_settings, resume=True
    )
    assert [r["step"] for r in m2.records] == [0, 1] == [r["step"] for r in state["records"]]
    assert m2.step(1) is False  # already measured: not duplicated
    assert m2.step(2) is True
    rep = m2.close()
    assert rep.summary["monitor"]["measurements"] == 3


def _read_scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """Scalars of a TensorBoard event file, read with tensorboardX's own protobufs (no tensorboard needed)."""
    import struct

    from tensorboardX.proto.event_pb2 import Event

    out: dict[str, list[tuple[int, float]]] = {}
    for f in folder.glob("events.out.tfevents.*"):
        data = f.read_bytes()
        i = 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i : i + 8])
            ev = Event.FromString(data[i + 12 : i + 12 + n])
            i += 12 + n + 4
            for v in ev.summary.value:
                out.setdefault(v.tag, []).append((ev.step, v.simple_value))
    return out


def test_monitor_writes_tensorboard_scalars_with_interval_ends(tmp_path, fast_settings):
    import pytest

    pytest.importorskip("tensorboardX", reason="extra `tensorboard` not installed")
    train, holdout = digits_loaders(n_train=128, batch_size=32)
    subject = ml.Subject(ConvNet(), F.cross_entropy, train=train, holdout=holdout)
    mon = ml.Monitor(
        subject,
        ("curvature",),
        every=1,
        out=tmp_path / "m",
        profile="smoke",
        settings=fast_settings,
        tensorboard=tmp_path / "tb",
    )
    mon.step(0)
    mon.step(1)
    mon.close()
    scalars = _read_scalars(tmp_path / "tb")
    rec = {e["name"]: e for e in mon.records[-1]["estimates"] if e["value"] is not None}
    name = next(n for n, e in rec.items() if e["ci_low"] is not None)
    assert [s for s, _ in scalars[f"curvature/{name}"]] == [0, 1]
    assert scalars[f"curvature/{name}"][-1][1] == pytest.approx(rec[name]["value"], rel=1e-6)
    assert scalars[f"curvature/{name}.ci_low"][-1][1] == pytest.approx(rec[name]["ci_low"], rel=1e-6)


def test_the_plain_pytorch_example_runs(tmp_path, fast_settings):
    import monitor_plain_pytorch as ex

    orig = ex.ml.Monitor

    def monitor(*a, **kw):
        return orig(*a, **(kw | {"settings": fast_settings}))

    ex.ml.Monitor = monitor
    try:
        rep = ex.main(steps=6, every=3, out=str(tmp_path / "ex"))
    finally:
        ex.ml.Monitor = orig
    assert rep.summary["monitor"]["measurements"] == 2 and rep.paths["report"].is_file()
    assert rep.summary["monitor"]["events"] == [{"name": "lr_decay", "step": 3}]
