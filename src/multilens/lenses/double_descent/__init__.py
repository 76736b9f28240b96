"""Double-descent lens: min-norm risk against exact theory, random features and MLP widths.

Subject: :class:`Subject` (``regression``: a :class:`GaussianDesign` or a user's
:class:`Regression` arrays; ``classification``: :class:`Classification` features and labels; ``family``: a
:class:`multilens.data.family.FamilySpec`).
See :mod:`multilens.lenses.double_descent.lens`.
"""

from multilens.lenses.double_descent.lens import (
    Classification,
    GaussianDesign,
    Regression,
    Subject,
    default_subject,
    measure,
)
from multilens.lenses.double_descent.settings import (
    FamilySettings,
    LinearSettings,
    MlpSettings,
    PeakVsBatchSettings,
    RandomFeaturesSettings,
    Settings,
)

__all__ = [
    "Classification",
    "FamilySettings",
    "GaussianDesign",
    "LinearSettings",
    "MlpSettings",
    "PeakVsBatchSettings",
    "RandomFeaturesSettings",
    "Regression",
    "Settings",
    "Subject",
    "default_subject",
    "measure",
]
