"""Stability lens: replace-one retraining against the uniform-stability bound and the gap theorem.

Subject: :class:`StabilitySubject`, a tuple of :class:`Task` (a data pool, lambda, n and a
trainer; the first task is the main subject). The default subject is L2-regularised logistic
regression solved by Newton's method to ``||grad|| <= tol`` on digits (even vs odd) and on a
synthetic logistic task; an MLP trained by SGD is the non-convex, information-only variant. The
``family`` part runs logistic ERM on the protocol's shared data family (``StabilitySubject.family``).
See :mod:`multilens.lenses.stability.lens` for the parts.
"""

from multilens.lenses.stability.config import (
    FamilySettings,
    GapSettings,
    IntegritySettings,
    ReplaceOneSettings,
    ScalingSettings,
    Settings,
    SgdSettings,
)
from multilens.lenses.stability.lens import LENS, default_subject, measure
from multilens.lenses.stability.logistic import FitResult, LogisticRidge
from multilens.lenses.stability.tasks import StabilitySubject, Task, digits_task, synthetic_task

__all__ = [
    "LENS", "FamilySettings", "FitResult",
    "GapSettings", "IntegritySettings", "LogisticRidge", "ReplaceOneSettings", "ScalingSettings",
    "Settings", "SgdSettings", "StabilitySubject", "Task", "default_subject", "digits_task", "measure", "phase", "run",
    "synthetic_task",
]  # fmt: skip
