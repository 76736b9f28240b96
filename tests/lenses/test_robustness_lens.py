"""The robustness lens on hand-built subjects (a user's model, a box outside [0, 1]), the adapter and diagnose."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

import multilens as ml
from multilens.lenses.contract import NotApplicable
from multilens.lenses.robustness import Settings, Subject, from_subject, measure
from multilens.lenses.robustness.adapter import fit_linear
from multilens.protocol.gates import evaluate_policy, load_policy


def blobs(seed: int, n: int = 240, d: int = 10, k: int = 3, scale: float = 4.0):
    """Three Gaussian classes on inputs in [-scale, scale] (a box that is not [0, 1])."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, d, generator=g) * 1.2
    y = torch.randint(0, k, (n,), generator=g)
    x = (centers[y] + 0.6 * torch.randn(n, d, generator=g)).clamp(-scale, scale)
    return x, y


def trained_tanh_mlp(x, y, seed: int = 0) -> nn.Sequential:
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Linear(x.shape[1], 24), nn.Tanh(), nn.Linear(24, 24), nn.Tanh(), nn.Linear(24, 3))
    for p in net.parameters():
        with torch.no_grad():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return net


SMOKE = dataclasses.replace(Settings.for_profile("smoke"), training=None, transfer=None)


@pytest.fixture(scope="module")
def user_result():
    xtr, ytr = blobs(0)
    xte, yte = blobs(1, n=120)
    net = trained_tanh_mlp(xtr, ytr)
    sub = Subject(net, xte, yte, input_range=(-4.0, 4.0), linear=fit_linear(xtr, ytr, 3))
    s = dataclasses.replace(SMOKE, policy_eps=0.2, attacks=dataclasses.replace(SMOKE.attacks, eps_linf=(0.0, 0.1, 0.2)),
                            certificate=dataclasses.replace(SMOKE.certificate, critical_class=2))  # fmt: skip
    before = {k: v.clone() for k, v in net.state_dict().items()}
    r = measure(sub, s, seed=0)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    return r


def test_measure_on_a_user_model_with_a_box_outside_unit_interval(user_result) -> None:
    r = user_result
    failed = [c.name for c in r.checks if c.passed is not True and c.severity == "error"]
    assert not failed, failed
    names = {c.name for c in r.checks}
    for must in ("eps0_reproduces_clean_linf", "budget_and_box_respected", "linear_linf_box_pgd_matches_exact",
                 "lipschitz_lower_le_upper_end_to_end", "certificate_verifies"):  # fmt: skip
        assert must in names
    m = r.metrics
    assert m["robustness.w"] == pytest.approx(m["robustness.clean_accuracy"] - m["robustness.robust_accuracy"])
    assert 0 <= m["robustness.lipschitz_lower"] <= m["robustness.lipschitz_upper"]
    assert m["robustness.lipschitz_upper"] == pytest.approx(
        m["robustness.lipschitz_stage_0"] * m["robustness.lipschitz_stage_1"] * m["robustness.lipschitz_stage_2"]
    )
    json.dumps(r.to_dict(), allow_nan=False)


def test_gates_read_the_measured_inputs(user_result) -> None:
    gates = {g.name: g for g in evaluate_policy(load_policy(None), user_result.metrics, "robustness")}
    comp = gates["composition Lipschitz bound"]
    assert comp.value == pytest.approx(user_result.metrics["robustness.lipschitz_upper"])
    cert = gates["failure-rate certificate"]
    u_max = next(g for g in load_policy(None).gates if g.name == "failure-rate certificate").inputs["u_max"]
    assert cert.value == pytest.approx(u_max - user_result.metrics["robustness.fnr_upper"])
    obj = gates["robust objective"]
    m = user_result.metrics
    assert obj.value == pytest.approx(m["robustness.r_emp_ci_high"] + 0.3 * m["robustness.omega"]
                                      + 0.4 * m["robustness.w_ci_high"])  # fmt: skip


def test_linear_main_model_reaches_its_exact_robust_accuracy() -> None:
    """With the linear model as the subject's model, the gate's robust accuracy is the exact one."""
    xtr, ytr = blobs(2)
    xte, yte = blobs(3, n=100)
    lin = fit_linear(xtr, ytr, 3)
    s = dataclasses.replace(SMOKE, policy_eps=0.3, attacks=dataclasses.replace(SMOKE.attacks, eps_linf=(0.0, 0.3),
                            steps=20, targeted=2), lipschitz=None, smoothing=None, corruptions=None,
                            certificate=None, linear_reference=None)  # fmt: skip
    r = measure(Subject(lin, xte, yte, input_range=(-4.0, 4.0)), s, seed=0)
    from multilens.robustness import exact_linear_robust

    w, b = lin[1].weight.detach(), lin[1].bias.detach()
    _, rob = exact_linear_robust(w, b, xte, yte, eps=0.3, norm="linf", input_range=(-4.0, 4.0))
    assert r.metrics["robustness.robust_accuracy"] == pytest.approx(float(rob.double().mean()))


def test_adapter_needs_holdout_and_box() -> None:
    x, y = blobs(0, n=60)
    net = trained_tanh_mlp(x, y)
    s = Settings.for_profile("smoke")
    with pytest.raises(NotApplicable, match="holdout"):
        from_subject(ml.Subject(net, nn.functional.cross_entropy, train=(x, y), input_range=(-4.0, 4.0)), s)
    with pytest.raises(NotApplicable, match="input_range"):
        from_subject(ml.Subject(net, nn.functional.cross_entropy, holdout=(x, y)), s)
    sub, s2 = from_subject(ml.Subject(net, nn.functional.cross_entropy, train=(x, y), holdout=(x, y),
                                      input_range=(-4.0, 4.0)), s)  # fmt: skip
    assert s2.training is None and s2.transfer is None and s2.linear_reference is not None
    assert sub.linear is not None and sub.input_range == (-4.0, 4.0)


def test_diagnose_runs_the_robustness_lens_on_a_user_classifier(tmp_path) -> None:
    xtr, ytr = blobs(4)
    xte, yte = blobs(5, n=80)
    net = trained_tanh_mlp(xtr, ytr)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    subject = ml.Subject(net, nn.functional.cross_entropy, train=(xtr, ytr), holdout=(xte, yte),
                         input_range=(-4.0, 4.0), name="blobs-mlp")  # fmt: skip
    rep = ml.diagnose(subject, lenses=("robustness",), profile="smoke", out=tmp_path / "d", seed=0)
    ph = rep.summary["phases"][0]
    assert ph["status"] == "done", ph.get("error")
    assert "robustness.w" in rep.summary["metrics"]
    assert {g["name"] for g in rep.summary["gates"]} >= {"robust objective", "failure-rate certificate"}
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_default_subject_smoke_passes_its_error_checks() -> None:
    """The bundled subject at the smoke profile: every error-severity check passes (A.8/C.8 are info)."""
    from multilens.lenses.robustness import default_subject

    s = Settings.for_profile("smoke")
    r = measure(default_subject(s, seed=0), s, seed=0)
    bad = [(c.name, c.reason) for c in r.checks if c.severity == "error" and c.passed is not True]
    assert not bad, bad
    assert {"linear_linf_box_pgd_matches_exact", "linear_l2_nobox_pgd_matches_exact"} <= {c.name for c in r.checks}
    assert r.outputs["robustness.lipschitz_stages"] == [r.metrics[f"robustness.lipschitz_stage_{i}"] for i in range(3)]


def test_trades_point_and_blur_exact_properties() -> None:
    """TRADES' inner maximiser stays in the eps-ball and the box; blurring keeps a constant image constant."""
    from multilens.lenses.robustness.lens import _blur, _trades_point

    x, y = blobs(6, n=40)
    net = trained_tanh_mlp(x, y)
    g = torch.Generator().manual_seed(0)
    xa = _trades_point(net, x, 0.3, 5, (-4.0, 4.0), g)
    assert float((xa - x).abs().max()) <= 0.3 + 1e-6
    assert float(xa.min()) >= -4.0 and float(xa.max()) <= 4.0
    assert float((xa - x).abs().max()) > 0.2  # it moved (sign steps of 2.5 eps / steps)
    const = torch.full((3, 64), 0.37)
    torch.testing.assert_close(_blur(const, (8, 8), 1.2), const, atol=1e-6, rtol=0)
    img = torch.zeros(1, 64)
    img[0, 27] = 1.0  # an interior point: the (normalised, replicate-padded) kernel keeps its mass
    assert float(_blur(img, (8, 8), 0.8).sum()) == pytest.approx(1.0, abs=1e-5)


def test_mcnemar_one_sided_exact() -> None:
    from scipy import stats

    from multilens.lenses.robustness.lens import mcnemar_one_sided

    assert mcnemar_one_sided(0, 0) == 1.0
    assert mcnemar_one_sided(5, 0) == pytest.approx(0.5**5)  # five discordant pairs, all one way
    assert mcnemar_one_sided(7, 3) == pytest.approx(sum(stats.binom.pmf(k, 10, 0.5) for k in range(7, 11)))
