"""Attacks against exact answers: the linear worst case (dual norm, separable box), brute force in 2-D."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from multilens.errors import ConfigError
from multilens.robustness import budget_violation, exact_linear_robust, fgsm, pgd, robust_accuracy, square_attack


def linear_problem(seed: int = 0, n: int = 200, d: int = 6, k: int = 4, scale: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(d, k)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(k, d, generator=g))
        lin.bias.copy_(torch.randn(k, generator=g) * 0.1)
    x = torch.rand(n, d, generator=g) * scale
    y = lin(x).argmax(1).detach()
    flip = torch.rand(n, generator=g) < 0.1  # a few clean errors
    y[flip] = (y[flip] + 1) % k
    return lin, x, y


@pytest.mark.parametrize(
    "norm,eps,box",
    [("linf", 0.05, None), ("linf", 0.05, (0.0, 1.0)), ("l2", 0.2, None), ("linf", 0.2, (-0.5, 1.5))],
)
def test_pgd_matches_exact_linear(norm: str, eps: float, box) -> None:
    lin, x, y = linear_problem()
    wm, rob = exact_linear_robust(lin.weight.data, lin.bias.data, x, y, eps=eps, norm=norm, input_range=box)
    r = pgd(lin, x, y, eps=eps, norm=norm, steps=30, restarts=1, targeted=3, input_range=box, seed=1)
    assert int(r.robust.sum()) == int(rob.sum())
    assert float((r.margin.double() - wm).abs().max()) < 1e-3
    assert budget_violation(x, r.x_adv, eps, norm, box) <= 1e-6


def test_exact_linear_matches_brute_force_in_2d() -> None:
    """The separable box formula against enumerating the vertices of the (ball & box) rectangle."""
    lin, x, y = linear_problem(seed=3, n=50, d=2, k=3)
    eps, box = 0.15, (0.0, 1.0)
    wm, _ = exact_linear_robust(lin.weight.data, lin.bias.data, x, y, eps=eps, norm="linf", input_range=box)
    W, b = lin.weight.data.double(), lin.bias.data.double()
    for i in range(x.shape[0]):
        xi = x[i].double()
        lo = torch.clamp(xi - eps, min=0.0)
        hi = torch.clamp(xi + eps, max=1.0)
        best = np.inf
        for corner in itertools.product(*[(float(lo[j]), float(hi[j])) for j in range(2)]):
            z = W @ torch.tensor(corner, dtype=torch.float64) + b
            zy = z[y[i]]
            best = min(best, float(min(zy - z[j] for j in range(3) if j != y[i])))
        assert abs(best - float(wm[i])) < 1e-9


def test_dual_norm_shift_binary() -> None:
    """Two classes: the worst-case margin is margin - eps ||w_1 - w_0||_q exactly (q = 1 for l-inf, 2 for l-2)."""
    lin, x, y = linear_problem(seed=5, n=30, d=5, k=2)
    w, b = lin.weight.data.double(), lin.bias.data.double()
    a = w[1] - w[0]
    m = x.double() @ a + b[1] - b[0]
    m = torch.where(y == 1, m, -m)
    for norm, q in (("linf", 1), ("l2", 2)):
        wm, _ = exact_linear_robust(lin.weight.data, lin.bias.data, x, y, eps=0.1, norm=norm)
        torch.testing.assert_close(wm, m - 0.1 * float(a.norm(p=q)), atol=1e-9, rtol=0)


def test_fgsm_is_exact_for_binary_linear_linf() -> None:
    lin, x, y = linear_problem(seed=2, n=300, d=8, k=2)
    _, rob = exact_linear_robust(lin.weight.data, lin.bias.data, x, y, eps=0.1, norm="linf")
    assert int(fgsm(lin, x, y, eps=0.1).robust.sum()) == int(rob.sum())


def test_eps_zero_reproduces_clean_and_box_outside_unit_interval() -> None:
    lin, x, y = linear_problem(scale=10.0)  # inputs in [0, 10]
    box = (torch.zeros(6), torch.full((6,), 10.0))
    r0 = pgd(lin, x, y, eps=0.0, steps=5, restarts=2, input_range=box, seed=0)
    clean = lin(x).argmax(1) == y
    assert torch.equal(r0.robust, clean)
    r = pgd(lin, x, y, eps=0.5, steps=10, restarts=2, input_range=box, seed=0)
    assert budget_violation(x, r.x_adv, 0.5, "linf", box) <= 1e-5
    assert r.robust_accuracy < r0.robust_accuracy


def test_square_attack_never_beats_the_exact_worst_case() -> None:
    lin, x, y = linear_problem(seed=4)
    _, rob = exact_linear_robust(lin.weight.data, lin.bias.data, x, y, eps=0.1, norm="linf", input_range=(0.0, 1.0))
    rs = square_attack(lin, x, y, eps=0.1, queries=200, input_range=(0.0, 1.0), seed=0)
    assert not bool((rs.fooled & rob).any())  # nothing fooled that is provably robust
    assert int(rs.robust.sum()) < int((lin(x).argmax(1) == y).sum())  # it does find adversarial examples


def test_more_steps_and_restarts_never_help_the_model() -> None:
    torch.manual_seed(0)  # tests may seed globally; the library never does
    net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 4))
    _, x, y = linear_problem()
    weak = pgd(net, x, y, eps=0.1, steps=3, restarts=1, seed=7)
    strong = pgd(net, x, y, eps=0.1, steps=12, restarts=3, seed=7)
    assert not bool((weak.fooled & ~strong.fooled).any())


def test_model_and_rng_untouched() -> None:
    lin, x, y = linear_problem()
    before = {k: v.clone() for k, v in lin.state_dict().items()}
    state = torch.get_rng_state()
    pgd(lin, x, y, eps=0.1, seed=0)
    square_attack(lin, x, y, eps=0.1, queries=5, seed=0)
    assert all(torch.equal(before[k], v) for k, v in lin.state_dict().items())
    assert torch.equal(state, torch.get_rng_state())
    assert lin.training  # the caller's training flag is kept


def test_robust_accuracy_estimate_has_interval() -> None:
    lin, x, y = linear_problem()
    e = robust_accuracy(lin, x, y, eps=0.05, norm="linf", seed=0, input_range=(0.0, 1.0))
    _, rob = exact_linear_robust(lin.weight.data, lin.bias.data, x, y, eps=0.05, norm="linf", input_range=(0.0, 1.0))
    assert e.value == pytest.approx(float(rob.double().mean()))
    assert e.ci_low < e.value < e.ci_high


def test_bad_arguments_are_one_line_errors() -> None:
    lin, x, y = linear_problem()
    with pytest.raises(ConfigError, match="`norm`"):
        pgd(lin, x, y, eps=0.1, norm="l1", seed=0)
    with pytest.raises(ConfigError, match="`eps`"):
        pgd(lin, x, y, eps=-1.0, seed=0)
    with pytest.raises(ConfigError, match="input_range"):
        pgd(lin, x, y, eps=0.1, input_range=(1.0, 0.0), seed=0)
