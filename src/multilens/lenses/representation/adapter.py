"""The representation lens on a user's :class:`multilens.Subject` (used by ``diagnose`` and the Monitor).

The representation is the output of the submodule named by ``subject.embed`` while a deep copy of
the model runs in eval mode on the training data and on the held-out data (the probes are fitted
on the first and scored on the second). The parts that train their own models (``trajectory``,
``ssl``, ``collapse_bound``) study bundled subjects and are switched off.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from multilens.lenses.contract import NotApplicable
from multilens.subject import Subject, tensors_of

OFF_FOR_USER_MODELS = ("trajectory", "ssl", "collapse_bound")


def from_subject(subject: Subject, settings: Any) -> tuple[Any, Any]:
    from multilens.lenses.representation import RepresentationSubject

    if subject.embed is None:
        raise NotApplicable("no `embed` module given: pass Subject(..., embed='<submodule name>')")
    if subject.train is None or subject.holdout is None:
        raise NotApplicable("the representation's probes need `train=` and `holdout=` data with labels")
    xtr, ytr = tensors_of(subject.train)
    xte, yte = tensors_of(subject.holdout)
    if ytr.is_floating_point() or ytr.ndim != 1:
        raise NotApplicable("the representation's probes need integer class labels")
    model = subject.copy_model().eval()
    embed = dict(model.named_modules())[subject.embed]
    lens_subject = RepresentationSubject.from_model(
        model, embed, xtr, ytr, xte, yte, name=f"{subject.name}: {subject.embed}"
    )
    off = {p: None for p in OFF_FOR_USER_MODELS if hasattr(settings, p)}
    return lens_subject, dataclasses.replace(settings, **off)
