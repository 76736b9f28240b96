"""Spectral-filters lens: early-stopped gradient descent vs ridge as filters on singular values.

Subject: :class:`InverseProblem` (a forward operator ``a``, observations ``y``, and the true signal
``x_true`` and noise std ``noise_sigma`` when known). See :mod:`multilens.lenses.filters.lens`.
"""

from multilens.lenses.filters.lens import InverseProblem, default_subject, measure
from multilens.lenses.filters.settings import MatchingSettings, ReconstructionSettings, Settings

__all__ = ["InverseProblem", "MatchingSettings", "ReconstructionSettings", "Settings", "default_subject", "measure"]
