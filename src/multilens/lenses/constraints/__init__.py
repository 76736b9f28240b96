"""Constraints lens (see :mod:`multilens.lenses.constraints.lens`)."""

from multilens.lenses.constraints.core import (
    QP,
    InfeasibleConstraints,
    RateConstraint,
    TrainSettings,
    dp_gap_constraint,
    fnr_constraint,
    param_budget_constraint,
    solve_qp_exact,
    train_constrained,
)
from multilens.lenses.constraints.lens import ConstrainedSubject, Task, default_subject, measure
from multilens.lenses.constraints.settings import (
    DualitySettings,
    HeldOutSettings,
    InfeasibilitySettings,
    ParetoSettings,
    RateSettings,
    Settings,
)

__all__ = [
    "QP",
    "ConstrainedSubject",
    "DualitySettings",
    "HeldOutSettings",
    "InfeasibilitySettings",
    "InfeasibleConstraints",
    "ParetoSettings",
    "RateConstraint",
    "RateSettings",
    "Settings",
    "Task",
    "TrainSettings",
    "default_subject",
    "dp_gap_constraint",
    "fnr_constraint",
    "measure",
    "param_budget_constraint",
    "solve_qp_exact",
    "train_constrained",
]
