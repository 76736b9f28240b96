"""The robustness lens's training population goes through runtime.executor with the numbers of an in-process run."""

from __future__ import annotations

import pytest
import torch

from multilens.experiments.executors import LocalExecutor
from multilens.lenses.contract import Runtime
from multilens.lenses.robustness import Settings
from multilens.lenses.robustness.lens import _build_default_subject, digits_box, train_classifier
from multilens.lenses.robustness.population import load_state, member_model, train_member, train_population
from multilens.seeding import derive_seed

TINY = Settings(n_train=120, n_holdout=30, widths=(8,), epochs=2, batch_size=32, at_steps=1, trades_beta=1.0,
                checkpoints=2)  # fmt: skip


def _states(sub) -> list[dict[str, torch.Tensor]]:
    models = [sub.model, sub.linear, sub.source, *(c.model for c in sub.checkpoints)]
    return [m.state_dict() for m in models]


def test_member_equals_direct_training_after_the_json_round_trip() -> None:
    fields = {"widths": [8], "epochs": 2, "n_train": 60, "batch_size": 32, "checkpoints": 2}
    res = train_member({"role": "mlp", "seed": 4, "fields": fields})
    got = load_state(member_model("mlp", fields, 4), res["state"])
    s = Settings(widths=(8,), epochs=2, n_train=60, batch_size=32, checkpoints=2)
    xtr, ytr, _, _ = digits_box(4, s.test_fraction)
    ref = member_model("mlp", fields, 4)
    seed = derive_seed(4, "robustness", "train_mlp")
    ckpts = train_classifier(ref, xtr[:60], ytr[:60], s, seed=seed, n_checkpoints=2)
    for k, v in ref.state_dict().items():
        assert v.dtype == torch.float32 and torch.equal(got.state_dict()[k], v), k
    assert [c["epoch"] for c in res["checkpoints"]] == [c.epoch for c in ckpts] == [1, 2]


def test_bad_role_is_an_error() -> None:
    with pytest.raises(ValueError, match="role"):
        train_member({"role": "bogus", "seed": 0, "fields": {}})


def test_population_through_local_executor_equals_in_process() -> None:
    direct = _build_default_subject(TINY, seed=3)
    ex = LocalExecutor(workers=2)
    try:
        pooled = _build_default_subject(TINY, seed=3, executor=Runtime(executor=ex).executor)
    finally:
        ex.close()
    a, b = _states(direct), _states(pooled)
    assert len(a) == len(b) == 3 + 3 * TINY.checkpoints  # standard, adversarial and TRADES checkpoints
    for sa, sb in zip(a, b):
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), k
    assert [(c.family, c.epoch) for c in direct.checkpoints] == [(c.family, c.epoch) for c in pooled.checkpoints]
    assert torch.equal(direct.x, pooled.x) and torch.equal(direct.y, pooled.y)


def test_failed_member_raises_with_its_role() -> None:
    class Failing:
        def map_unordered(self, task, specs):
            for i, _ in enumerate(specs):
                yield i, {"ok": False, "error": "boom"}

    with pytest.raises(RuntimeError, match="training linear failed: boom"):
        train_population([{"role": "linear", "seed": 0, "fields": {}}], Failing())
