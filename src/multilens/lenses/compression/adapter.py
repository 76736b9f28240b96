"""The compression lens on a user's :class:`multilens.Subject` (used by ``diagnose``).

The user's model (a deep copy in eval mode) is the one model compressed; its nn.Linear layers are
truncated or pruned, other layers are left alone and named. The retraining in ``pruning`` uses
the subject's ``loss_fn`` on its training data; held-out numbers use ``holdout`` (the training
data when no holdout is given, and the report's data says so).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from multilens.lenses.compression.ops import linear_layers
from multilens.lenses.contract import NotApplicable
from multilens.subject import Subject, tensors_of


def from_subject(subject: Subject, settings: Any) -> tuple[Any, Any]:
    from multilens.lenses.compression.lens import CompressionSubject

    model = subject.measurable_model().eval()
    if not linear_layers(model):
        raise NotApplicable("the model has no nn.Linear layer to compress")
    if subject.train is None:
        raise NotApplicable("retraining after compression needs `train=` data")
    train = tensors_of(subject.train)
    holdout = tensors_of(subject.holdout) if subject.holdout is not None else train
    info = {
        "name": subject.name,
        "model_class": type(subject.model).__name__,
        "holdout": "holdout" if subject.holdout is not None else "training data (no holdout given)",
    }
    off: dict[str, Any] = {"lora": None}  # the LoRA sweep needs a shifted task, which a Subject does not carry
    if train[1].is_floating_point():
        off["pruning"] = None  # retained accuracy needs class labels
    return CompressionSubject(((subject.name, model),), subject.loss_fn, train, holdout, info), dataclasses.replace(
        settings, **off
    )
