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

config = Settings  # the CLI of this branch loads `config`/`run`; `Settings`/`measure` are the contract


def run(settings: Settings, *, seed: int = 0):
    """``measure(default_subject(settings))`` with provenance (what ``multilens lens representation`` runs)."""
    from multilens.lenses.contract import run_lens
    from multilens.lenses.registry import get_lens

    return run_lens(get_lens("representation"), settings, seed)


def phase():
    """The generic capstone phase of this lens (for runners that load ``phase`` from the lens package)."""
    from multilens.lenses.registry import get_lens
    from multilens.protocol.phase import LensPhase

    return LensPhase(get_lens("representation"))


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
    "phase",
    "run",
]
