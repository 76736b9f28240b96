"""The robustness lens on a user's :class:`multilens.Subject` (used by ``diagnose`` and the Monitor).

Needs held-out data with integer class labels (``holdout=``) and the valid input box
(``input_range=``): robust accuracy is measured on held-out examples, and an attack that leaves
the box measures inputs the model never sees. The model is a deep copy in eval mode (its
``forward_fn`` applied when given). The exact linear reference runs on a softmax-regression
classifier fitted (deterministically) to the subject's ``train`` data when given, and is switched
off otherwise; ``training`` (A.8 needs checkpoints) and ``transfer`` (a second model) are off.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from multilens.errors import ConfigError
from multilens.lenses.contract import NotApplicable
from multilens.subject import Subject, tensors_of

OFF_FOR_USER_MODELS = ("training", "transfer")
LINEAR_EPOCHS = 200


def fit_linear(x: torch.Tensor, y: torch.Tensor, n_classes: int, *, epochs: int = LINEAR_EPOCHS) -> nn.Module:
    """A softmax-regression classifier on (x, y): full-batch Adam from zero weights (deterministic)."""
    d = int(x[0].numel())
    lin = nn.Linear(d, n_classes)
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.zero_()
    model = nn.Sequential(nn.Flatten(), lin)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    xf, yl = x.detach().float(), y.long()
    for _ in range(epochs):
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(xf), yl).backward()
        opt.step()
    return model.eval()


def from_subject(subject: Subject, settings: Any) -> tuple[Any, Any]:
    """(robustness Subject, settings with the bundled-demonstration parts off) for a user's model."""
    from multilens.lenses.robustness.lens import Subject as RobustSubject

    if subject.holdout is None:
        raise NotApplicable("robust accuracy is measured on held-out data: pass `holdout=`")
    if subject.input_range is None:
        raise NotApplicable("the attacks need the valid input box: pass `input_range=(low, high)`")
    x, y = tensors_of(subject.holdout, limit=settings.n_holdout or None)
    if y.is_floating_point() or y.ndim != 1:
        raise NotApplicable("robustness needs integer class labels in the held-out data")
    model = subject.measurable_model().eval()
    off = {p: None for p in OFF_FOR_USER_MODELS}
    linear = None
    if subject.train is not None and settings.linear_reference is not None:
        xt, yt = tensors_of(subject.train)
        if not yt.is_floating_point() and yt.ndim == 1:
            with torch.no_grad():
                k = int(model(x[:1].to(subject.dtype)).shape[1])
            linear = fit_linear(xt, yt, max(k, int(yt.max()) + 1))
    if linear is None:
        off["linear_reference"] = None
    image_shape = tuple(int(s) for s in x.shape[1:]) if x.dim() >= 3 else None
    info = {"name": subject.name, "model_class": type(subject.model).__name__, "mode": "eval (a deep copy)",
            "main": subject.name, "n_holdout": int(x.shape[0])}  # fmt: skip
    try:
        lens_subject = RobustSubject(model, x.to(subject.dtype), y.long(), tuple(map(float, subject.input_range)),
                                     image_shape, linear, None, (), info)  # fmt: skip
    except ConfigError as e:
        raise NotApplicable(str(e)) from None
    return lens_subject, dataclasses.replace(settings, **off)
