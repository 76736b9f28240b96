"""The curvature lens on a user's :class:`multilens.Subject` (used by ``diagnose`` and the Monitor).

The Hessian is that of the mean loss over the subject's training data (the first
``hessian_examples`` rows when that setting is > 0), of a deep copy of the model in eval mode
(BatchNorm uses its running statistics, dropout is off; the report says so). The parts that study
bundled synthetic problems rather than the given model (``along_training``, ``preconditioning``)
are switched off; ``margin`` needs class labels and is switched off for regression targets. The
dense-Hessian reference (a self-test of the implementation, one HVP per parameter) is not built
for a user's model: the Lanczos results carry their own residuals.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from multilens.lenses.contract import NotApplicable
from multilens.lenses.curvature.functional import iter_batches
from multilens.subject import Subject, tensors_of

OFF_FOR_USER_MODELS = ("along_training", "preconditioning")


def from_subject(subject: Subject, settings: Any) -> tuple[Any, Any]:
    """(curvature Subject, settings with the bundled-problem parts off) for a user's model."""
    from multilens.lenses.curvature import Subject as CurvatureSubject

    if subject.train is None:
        raise NotApplicable("the curvature of the training loss needs `train=` data")
    x, y = tensors_of(subject.train, limit=settings.hessian_examples or None)
    off = {p: None for p in OFF_FOR_USER_MODELS}
    if y.is_floating_point() or y.ndim != 1:
        off["margin"] = None  # the normalized margin needs integer class labels
    eval_data = tensors_of(subject.holdout) if subject.holdout is not None else (x, y)
    info = {"name": subject.name, "model_class": type(subject.model).__name__, "mode": "eval (a deep copy)",
            "n_examples": int(x.shape[0])}  # fmt: skip
    lens_subject = CurvatureSubject(
        subject.measurable_model().eval(),
        subject.loss_fn,
        iter_batches(x, y, settings.hessian_batch_size),
        eval_data,
        info,
    )
    return lens_subject, dataclasses.replace(settings, dense_check_max_dim=0, **off)
