"""The robustness lens: attacks that are checked, measured Lipschitz bounds, certified radii, release-gate inputs.

The lens contract (see :mod:`multilens.lenses.contract`): :class:`Settings` (one nested settings
table per part), :func:`default_subject` (digits in [0, 1]: a linear classifier, an MLP and the
same MLP after PGD adversarial training) and :func:`measure`, which works on any :class:`Subject`
(a user's classifier, held-out data and its input box). ``from_subject`` (in :mod:`.adapter`)
turns a :class:`multilens.Subject` into this lens's subject for ``multilens.diagnose``.

    >>> from multilens.lenses.robustness import Settings, Subject, measure
    >>> result = measure(Subject(model, x_test, y_test, input_range=(0.0, 1.0)), Settings.for_profile("quick"), seed=0)

User-level functions (``pgd``, ``robust_accuracy``, ``lipschitz_bounds``, ``smoothing_certify``)
are in :mod:`multilens.robustness`.
"""

from multilens.lenses.robustness.adapter import from_subject
from multilens.lenses.robustness.lens import LENS, Checkpoint, Subject, default_subject, measure
from multilens.lenses.robustness.settings import (
    AttacksSettings,
    CertificateSettings,
    CorruptionsSettings,
    HandoffSettings,
    LinearReferenceSettings,
    LipschitzSettings,
    Settings,
    SmoothingSettings,
    TrainingSettings,
    TransferSettings,
)

__all__ = [
    "LENS",
    "AttacksSettings",
    "CertificateSettings",
    "Checkpoint",
    "CorruptionsSettings",
    "HandoffSettings",
    "LinearReferenceSettings",
    "LipschitzSettings",
    "Settings",
    "SmoothingSettings",
    "Subject",
    "TrainingSettings",
    "TransferSettings",
    "default_subject",
    "from_subject",
    "measure",
]
