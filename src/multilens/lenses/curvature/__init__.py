"""The curvature lens: Hessian spectra, sharpness and loss-landscape slices that can be trusted.

The lens contract (see :mod:`multilens.lenses.contract`): :class:`Settings` (one nested settings
table per part), :func:`default_subject` (the bundled digits MLP) and :func:`measure`, which works
on any :class:`Subject` (a user's own torch model, mean loss and data: tensors or a DataLoader).

    >>> from multilens.lenses.curvature import Settings, Subject, measure
    >>> result = measure(Subject(model, torch.nn.functional.cross_entropy, loader), Settings.for_profile("quick"),
    ...                  seed=0)

The model-level functions (``hessian_eigenvalues``, ``hessian_trace`` ...) are in :mod:`multilens.curvature`.
"""

from multilens.lenses.curvature.lens import KAPPA_PROXY, LENS, Subject, default_subject, measure
from multilens.lenses.curvature.settings import (
    AlongTrainingSettings,
    DensitySettings,
    EigenvaluesSettings,
    InvarianceSettings,
    LandscapeSettings,
    MarginSettings,
    PerLayerSettings,
    PreconditioningSettings,
    Settings,
    SharpnessSettings,
    TraceSettings,
)

__all__ = [
    "KAPPA_PROXY",
    "LENS",
    "AlongTrainingSettings",
    "DensitySettings",
    "EigenvaluesSettings",
    "InvarianceSettings",
    "LandscapeSettings",
    "MarginSettings",
    "PerLayerSettings",
    "PreconditioningSettings",
    "Settings",
    "SharpnessSettings",
    "Subject",
    "TraceSettings",
    "default_subject",
    "measure",
]
