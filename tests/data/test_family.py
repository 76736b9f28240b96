"""The shared data family: nested draws, fixed splits, and Bayes risks against the teacher's own loss."""

import math

import torch

from multilens.data import FamilySpec


def test_draws_nest_and_splits_are_fixed():
    f = FamilySpec(n_bayes=4096)
    x, y = f.train(5000, seed=3)
    x2, y2 = f.train(1200, seed=3)
    assert torch.equal(x[:1200], x2) and torch.equal(y[:1200], y2)
    assert not torch.equal(f.train(100, seed=4)[0], x[:100])
    assert torch.equal(f.test()[0], FamilySpec(n_bayes=8192).test()[0])  # the split does not depend on n_bayes
    assert x.min() >= -1 and x.max() <= 1 and set(y.unique().tolist()) <= {0, 1}


def test_bayes_risk_equals_the_teachers_own_loss_on_fresh_labels():
    # The teacher's CE on sampled labels is an unbiased estimate of E[H(p(x))]: it must fall within
    # 4 standard errors of the Monte Carlo Bayes risk (tolerance fixed in advance).
    f = FamilySpec()
    br = f.bayes_risk()
    x, y = f.train(20000, seed=11)
    nll = torch.nn.functional.cross_entropy(f.logits(x).double(), y, reduction="none").numpy()
    se = math.sqrt(nll.var(ddof=1) / len(nll) + ((br["ce"][2] - br["ce"][0]) / 1.96) ** 2)
    assert abs(nll.mean() - br["ce"][0]) <= 4 * se
    err = (f.logits(x).argmax(1) != y).double().numpy()
    se_e = math.sqrt(err.var(ddof=1) / len(err) + ((br["error"][2] - br["error"][0]) / 1.96) ** 2)
    assert abs(err.mean() - br["error"][0]) <= 4 * se_e
    assert 0.0 < br["error"][0] < 0.5
