"""Constraints lens (see :mod:`multilens.lenses.constraints.lens`)."""

from multilens.lenses.constraints.core import (
    QP,
    InfeasibleConstraints,
    RateConstraint,
    TrainSettings,
    binned_ece,
    dp_gap_constraint,
    ece_constraint,
    fnr_constraint,
    param_budget_constraint,
    soft_binned_ece,
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
    "binned_ece",
    "default_subject",
    "dp_gap_constraint",
    "ece_constraint",
    "fnr_constraint",
    "measure",
    "param_budget_constraint",
    "soft_binned_ece",
    "solve_qp_exact",
    "train_constrained",
]
