"""Allocation lens (see :mod:`multilens.lenses.allocation.lens`) and the main model it saves.

:func:`load_main_model` and :func:`main_subject` read the folder the lens writes
(``allocation.model_path``): the model-facing lenses measure that model through them.
"""

from multilens.lenses.allocation.lens import (
    INPUT,
    LENS,
    OUTPUT,
    Allocation,
    BudgetResponseSettings,
    GeneralizationSettings,
    Point,
    RealisedSettings,
    Settings,
    default_subject,
    measure,
    settings_allocation,
)
from multilens.lenses.allocation.model_io import describe, load_main_model, main_subject, read_spec, save_main_model

__all__ = [
    "INPUT",
    "LENS",
    "OUTPUT",
    "Allocation",
    "BudgetResponseSettings",
    "GeneralizationSettings",
    "Point",
    "RealisedSettings",
    "Settings",
    "default_subject",
    "describe",
    "load_main_model",
    "main_subject",
    "measure",
    "read_spec",
    "save_main_model",
    "settings_allocation",
]
