"""Distributed lens: real multi-process data-parallel SGD (torch.distributed) against its theorem.

Public entry points: :class:`DistributedConfig`, :func:`run_distributed`, :class:`DistributedPhase`.
Workers run ``python -m multilens.lenses.distributed.worker`` (also under torchrun).
"""

from multilens.lenses.distributed.config import DistributedConfig
from multilens.lenses.distributed.lens import analyze_outputs, run_distributed
from multilens.lenses.distributed.phase import DistributedPhase

__all__ = ["DistributedConfig", "DistributedPhase", "analyze_outputs", "run_distributed"]
