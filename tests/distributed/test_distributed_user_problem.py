"""``measure`` on a user's own distributed problem: a small regression net defined in this test module.

The gloo workers are separate processes: they import this module by name (the launcher passes
the parent's import path on) and call :func:`tiny_regression` to build the model, data and loss.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from torch import nn

from multilens.errors import ConfigError
from multilens.lenses.contract import part_seed
from multilens.lenses.distributed import DistributedProblem, Settings, TrainingProblem, measure
from multilens.lenses.distributed.analysis import reference_sgd
from multilens.lenses.distributed.jobs import parity_tasks
from multilens.lenses.distributed.lens import PARTS

SEED = 3


def tiny_regression(args: dict[str, Any], *, seed: int) -> TrainingProblem:
    """y = x w + noise; a tanh net of one hidden layer; mean squared error (float targets, not labels)."""
    g = torch.Generator().manual_seed(seed)  # a local generator: the global RNG is never touched
    n, d, width = int(args["n"]), int(args["d"]), int(args["width"])
    x = torch.randn(n, d, generator=g)
    y = x @ torch.randn(d, 1, generator=g) + 0.1 * torch.randn(n, 1, generator=g)
    model = nn.Sequential(nn.Linear(d, width, device="meta"), nn.Tanh(), nn.Linear(width, 1, device="meta"))
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g))
    return TrainingProblem(model, x, y, nn.functional.mse_loss)


PROBLEM = DistributedProblem(f"{__name__}:tiny_regression", {"n": 96, "d": 5, "width": 8}, name="tiny regression")


def user_settings() -> Settings:
    s = Settings.for_profile("smoke")
    off = {p: None for p in PARTS if p not in ("parity", "modes")}
    return dataclasses.replace(
        s,
        **off,
        parity=dataclasses.replace(s.parity, batch=32, lr=0.05),
        modes=dataclasses.replace(s.modes, global_batch=32, lr=0.05, steps=12, eval_every=4),
    )


def test_measure_runs_on_a_user_defined_problem() -> None:
    s = user_settings()
    r = measure(PROBLEM, s, seed=SEED)
    assert r.parts == ("parity", "modes")
    # the workers trained the user's net: the single-process reference of THIS problem agrees to rounding
    ref = reference_sgd(parity_tasks(s.parity, part_seed(SEED, "distributed", "parity"), PROBLEM.to_job())[0])
    assert ref.size == 5 * 8 + 8 + 8 + 1  # the user's parameter count, not the digits MLP's
    rows = r.data["parity"]["rows"]
    assert {row["variant"] for row in rows} == {"sync", "ddp", "local_k1", "stale_tau0", "topk_ratio1"}
    for row in rows:
        assert row["max_abs_diff"] <= row["tolerance"] < 1e-10
    assert r.check("parity_sync").passed is True and r.check("parity_ddp").passed is True
    assert r.metrics["distributed.parity_max_abs_diff"] < 1e-12
    # modes partitioned the rows by the float target (no class labels), and every mode ran its schedule
    runs = r.data["modes"]["runs"]
    assert all(run["label_counts"] is None for run in runs)
    assert r.check("modes_collectives_match_schedule").passed is True
    finals = [r.estimate(f"modes_final_loss_mode{i}").value for i in range(len(runs))]
    assert finals[0] == runs[0]["final_loss"] and all(0.0 < v < 1e3 for v in finals)
    assert finals[1] != finals[0]  # local SGD (K=4) is a different algorithm from synchronous SGD
    assert r.data["subject"]["name"] == "tiny regression"


def test_bad_subjects_are_one_line_config_errors() -> None:
    with pytest.raises(ConfigError, match="'module:function'"):
        DistributedProblem("no_colon_here")
    with pytest.raises(ConfigError, match="JSON-able"):
        DistributedProblem(f"{__name__}:tiny_regression", {"x": object()})
    with pytest.raises(ConfigError, match="cannot be imported"):
        measure(DistributedProblem("no_such_module_xyz:f"), user_settings(), seed=0)
    s = user_settings()
    big = dataclasses.replace(s, parity=dataclasses.replace(s.parity, batch=128))
    with pytest.raises(ConfigError, match=r"`parity.batch` must be an int <= 96"):
        measure(PROBLEM, big, seed=0)
