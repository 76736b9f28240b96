"""The curvature lens: Hessian spectra, sharpness and loss-landscape slices that can be trusted.

Public functions live in :mod:`multilens.curvature`; the lens entry points are
:class:`~multilens.lenses.curvature.config.CurvatureConfig`,
:func:`~multilens.lenses.curvature.lens.run_curvature` and
:class:`~multilens.lenses.curvature.phase.CurvaturePhase`.
"""
