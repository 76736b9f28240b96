"""The calibration lens on a user's :class:`multilens.Subject` (used by ``diagnose`` and the Monitor).

The model (a deep copy, eval mode, no gradients) predicts logits on the held-out data; the
held-out rows are split by index parity into a validation half (where post-hoc calibrators are
fitted) and a test half (where everything is evaluated), so no fitted quantity is judged on the
rows it was fitted on. The C.15 trajectory part needs checkpoints of one training run and is
switched off (the Monitor gives the trajectory of a user's own training instead).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from multilens.lenses.contract import NotApplicable
from multilens.subject import Subject, tensors_of


def from_subject(subject: Subject, settings: Any) -> tuple[Any, Any]:
    from multilens.lenses.calibration import CalibrationSubject, Predictions

    if subject.holdout is None:
        raise NotApplicable("calibration is measured on held-out data: pass `holdout=`")
    x, y = tensors_of(subject.holdout)
    if y.is_floating_point() or y.ndim != 1:
        raise NotApplicable("calibration needs integer class labels; the held-out targets are not class labels")
    if int(y.shape[0]) < 20:
        raise NotApplicable(f"calibration needs at least 20 held-out examples; got {int(y.shape[0])}")
    model = subject.measurable_model().eval()
    with torch.no_grad():
        z = torch.cat([model(xb) for xb in torch.split(x, 512)]).double().cpu().numpy()
    labels = y.cpu().numpy()
    val = Predictions(labels[0::2], logits=z[0::2])
    test = Predictions(labels[1::2], logits=z[1::2])
    desc = {
        "name": subject.name,
        "model_class": type(subject.model).__name__,
        "mode": "eval (a deep copy)",
        "split": "held-out rows by index parity: even rows validation, odd rows test",
    }
    return CalibrationSubject(val=val, test=test, description=desc), dataclasses.replace(settings, trajectory=None)


def from_main_model(path: str) -> Any:
    """The calibration subject of the main model (``allocation.model_path``): its logits on the family's fixed
    validation split (where post-hoc calibrators are fitted) and test split (where everything is evaluated).
    No trajectory (one saved model): the trajectory part says so."""
    from multilens.data.family import FamilySpec
    from multilens.lenses.allocation import describe, load_main_model
    from multilens.lenses.calibration import CalibrationSubject, Predictions

    model, spec = load_main_model(path)
    family = FamilySpec.from_dict(dict(spec["family"]))
    preds = []
    for x, y in (family.val(), family.test()):
        with torch.no_grad():
            z = torch.cat([model(xb) for xb in torch.split(x, 2048)]).double().numpy()
        preds.append(Predictions(y.numpy(), logits=z))
    desc = describe(path) | {
        "name": f"main model (allocation: width {spec['width']} x depth {spec['recipe']['depth']}, D = {spec['d']})",
        "mode": "eval",
        "split": f"family val split ({family.n_val} rows) to fit, test split ({family.n_test} rows) to evaluate",
    }
    return CalibrationSubject(val=preds[0], test=preds[1], description=desc)
