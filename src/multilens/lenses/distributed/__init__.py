"""Distributed lens: real multi-process data-parallel SGD (torch.distributed) against its theorem.

The lens contract (:mod:`multilens.lenses.contract`): :class:`Settings` (one nested table per part:
``parity``, ``noise_floor``, ``local_sgd``, ``staleness``, ``timing``, ``modes``, ``faults``),
:func:`default_subject` (an MLP on the digits) and :func:`measure`.

The subject is a :class:`DistributedProblem`: workers are separate processes, so a model is
described by an importable ``"module:function"`` builder that every worker (and the parent) calls
with JSON-able ``args`` and a seed; it returns a :class:`TrainingProblem` (model, x, y, mean loss)::

    from multilens.lenses.distributed import DistributedProblem, Settings, measure
    problem = DistributedProblem("mypackage.problems:tiny_regression", {"width": 8})
    result = measure(problem, Settings.for_profile("quick"), seed=0)

Workers run ``python -m multilens.lenses.distributed.worker`` (also under torchrun).
"""

from typing import TYPE_CHECKING, Any

from multilens.lenses.distributed.settings import (
    BatchFloorSettings,
    FaultSettings,
    LocalSgdSettings,
    ModesSettings,
    NoiseFloorSettings,
    ParitySettings,
    Settings,
    StalenessSettings,
    TimingSettings,
)
from multilens.lenses.distributed.subject import DistributedProblem, TrainingProblem

if TYPE_CHECKING:  # imported on first use: the worker processes import this package and need none of it
    from multilens.lenses.distributed.lens import analyze_outputs, default_subject, measure, run

_LAZY = ("analyze_outputs", "default_subject", "measure", "run")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from multilens.lenses.distributed import lens

        return getattr(lens, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BatchFloorSettings",
    "DistributedProblem",
    "FaultSettings",
    "LocalSgdSettings",
    "ModesSettings",
    "NoiseFloorSettings",
    "ParitySettings",
    "Settings",
    "StalenessSettings",
    "TimingSettings",
    "TrainingProblem",
    "analyze_outputs",
    "default_subject",
    "measure",
    "run",
]
