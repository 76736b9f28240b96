"""Representation lens: covariance spectra, collapse, probes and SSL objectives (C.4, C.11, A.11, WE-8, B.13).

Subject: :class:`RepresentationSubject`, built from arrays (training and held-out representation
matrices with labels, optional domains, inputs, checkpoints) or from a user's model and the module
whose output is the representation (:meth:`RepresentationSubject.from_model`). The bundled
default subject is the penultimate layer of a digits MLP plus small SSL encoders on augmented
digits. See :mod:`multilens.lenses.representation.lens` for the parts and
:mod:`multilens.representation` for the array functions.
"""

from multilens.lenses.representation.config import (
    CollapseBoundSettings,
    DownstreamSettings,
    GroupsSettings,
    Settings,
    SpectrumSettings,
    SslSettings,
    TrajectorySettings,
)
from multilens.lenses.representation.lens import LENS, default_subject, measure
from multilens.lenses.representation.subjects import Checkpoint, RepresentationSubject, SslRun

__all__ = [
    "LENS",
    "Checkpoint",
    "CollapseBoundSettings",
    "DownstreamSettings",
    "GroupsSettings",
    "RepresentationSubject",
    "Settings",
    "SpectrumSettings",
    "SslRun",
    "SslSettings",
    "TrajectorySettings",
    "default_subject",
    "measure",
]
