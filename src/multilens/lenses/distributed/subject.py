"""The subject of the distributed lens: a training problem the worker processes can build.

Data-parallel workers are separate processes, so a model object cannot be handed to them. The
subject is therefore an importable *builder*::

    DistributedProblem(build="mypackage.problems:my_problem", args={"width": 32})

``my_problem(args: dict, *, seed: int) -> TrainingProblem`` must return a fresh torch model, the
training inputs ``x`` and targets ``y`` (tensors with one row per example) and a loss
``loss(model(x_batch), y_batch)`` that is a MEAN over the batch (so that the mean of equal
shards' gradients is the global batch's gradient). It is called in the parent (for the
single-process reference of the parity part) and in every worker, with the same ``seed`` for the
same run; it must depend on nothing else (no global RNG, no state), and ``args`` must be JSON-able
because it travels to the workers inside the job file. The workers import the module the same
way the parent does (the parent's ``sys.path`` is passed on to them).

The parts that train the subject are ``parity``, ``timing``, ``modes`` and ``faults``; the parts
``noise_floor``, ``local_sgd`` and ``staleness`` measure the theorem on exactly solvable
quadratics described by their own settings. :func:`digits_mlp` is the default subject (an MLP
on the scikit-learn digits).
"""

from __future__ import annotations

import functools
import importlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import nn

from multilens.errors import ConfigError
from multilens.seeding import derive_seed


@dataclass(frozen=True)
class DistributedProblem:
    """An importable ``"module:function"`` builder of a :class:`TrainingProblem` and its JSON-able args."""

    build: str
    args: Mapping[str, Any] = field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.build, str) or self.build.count(":") != 1 or not all(self.build.split(":")):
            raise ConfigError(f"`build` must be an importable 'module:function' string; got {self.build!r}.")
        try:
            json.dumps(dict(self.args), allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"`args` must be JSON-able (it is sent to the worker processes); {e}.") from None

    def to_job(self) -> dict[str, Any]:
        return {"build": self.build, "args": dict(self.args), "name": self.name or self.build}


@dataclass
class TrainingProblem:
    """A fresh model, the training set and a mean-over-the-batch loss."""

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = nn.functional.cross_entropy


def load_builder(spec: str) -> Callable[..., TrainingProblem]:
    module, _, fn = spec.partition(":")
    try:
        obj = getattr(importlib.import_module(module), fn)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"subject builder `{spec}` cannot be imported: {type(e).__name__}: {e}.") from None
    if not callable(obj):
        raise ConfigError(f"subject builder `{spec}` is not callable.")
    return obj


def build_problem(job: Mapping[str, Any], seed: int, dtype: torch.dtype, device: torch.device) -> TrainingProblem:
    """Call the builder of a job's ``problem`` entry and move model and data to ``dtype``/``device``."""
    prob = load_builder(str(job["build"]))(dict(job.get("args", {})), seed=int(seed))
    if not isinstance(prob, TrainingProblem):
        raise ConfigError(f"subject builder `{job['build']}` must return a TrainingProblem; got {type(prob).__name__}.")
    if prob.x.shape[0] != prob.y.shape[0] or prob.x.shape[0] < 1:
        raise ConfigError(f"subject `{job['build']}`: x and y must have the same number (>= 1) of rows.")
    x = prob.x.to(device=device, dtype=dtype) if prob.x.is_floating_point() else prob.x.to(device)
    y = prob.y.to(device=device, dtype=dtype) if prob.y.is_floating_point() else prob.y.to(device)
    return TrainingProblem(prob.model.to(dtype=dtype, device=device), x, y, prob.loss)


def problem_rows(problem: DistributedProblem) -> int:
    """Number of training rows of the subject (built once in the parent)."""
    prob = build_problem(problem.to_job(), 0, torch.float32, torch.device("cpu"))
    return int(prob.x.shape[0])


@functools.lru_cache(maxsize=4)
def _digits_train(data_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    from multilens.data.digits import load_digits_split

    split = load_digits_split(data_seed)
    return split.x_train, split.y_train


def digits_mlp(args: dict[str, Any], *, seed: int) -> TrainingProblem:
    """The default subject: an MLP (hidden ``widths``) on the 75% training split of the digits."""
    from multilens.models.mlp import MLPSpec, build_mlp

    x, y = _digits_train(derive_seed(seed, "data"))  # cached per process: every task rebuilds the problem
    widths = tuple(int(w) for w in args.get("widths", (128, 128)))
    model = build_mlp(MLPSpec(64, widths, 10), derive_seed(seed, "init"))
    return TrainingProblem(model, x.clone(), y.clone())
