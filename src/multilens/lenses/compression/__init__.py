"""Spectral-compression lens (see :mod:`multilens.lenses.compression.lens`)."""

from multilens.lenses.compression.lens import (
    CompressionSubject,
    CurvatureSettings,
    JumpBoundSettings,
    LoraSettings,
    PruningSettings,
    ScalingShiftSettings,
    Settings,
    SpectraSettings,
    TailEnergySettings,
    default_subject,
    measure,
)

__all__ = [
    "CompressionSubject",
    "CurvatureSettings",
    "LoraSettings",
    "PruningSettings",
    "Settings",
    "SpectraSettings",
    "TailEnergySettings",
    "ScalingShiftSettings",
    "JumpBoundSettings",
    "default_subject",
    "measure",
]
