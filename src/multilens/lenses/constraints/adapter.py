"""The constraints lens on a user's :class:`multilens.Subject` (used by ``diagnose``).

A rate constraint needs a group attribute: the setting ``group_column`` names the input column
holding it (0/1); without it the lens does not apply. Labels must be 0/1 and the model must return
one logit per row. The user's model (a deep copy) is the starting point: the ``held_out`` part
reports its own rates ("given"), then continues training it without and with the constraints
(DP gap <= ``dp_bound``, and FNR on group 1 <= ``fnr_bound``) under binary cross-entropy, and
measures the true rates on the training and held-out data. ``infeasibility`` runs on the same
task; the parts that study bundled problems (``duality``, ``rate``, ``pareto``) are switched off.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from multilens.lenses.contract import NotApplicable
from multilens.subject import Subject, tensors_of


def from_subject(subject: Subject, settings: Any) -> tuple[Any, Any]:
    from multilens.lenses.constraints.core import dp_gap_constraint, fnr_constraint, logits_of
    from multilens.lenses.constraints.lens import ConstrainedSubject, Task, bce

    col = settings.group_column
    if col is None:
        raise NotApplicable("no group attribute: set `constraints.group_column` to the input column holding it")
    if subject.train is None or subject.holdout is None:
        raise NotApplicable("held-out constraint violation needs both `train=` and `holdout=` data")
    model = subject.measurable_model().eval()
    out = []
    for data in (subject.train, subject.holdout):
        x, y = tensors_of(data)
        if x.ndim != 2 or not -x.shape[1] <= col < x.shape[1]:
            raise NotApplicable(f"`group_column` = {col} is not a column of the (n, d) inputs")
        g = x[:, col].round().long()
        y = y.reshape(-1).float()
        if not (set(torch.unique(g).tolist()) <= {0, 1} and set(torch.unique(y).tolist()) <= {0.0, 1.0}):
            raise NotApplicable("rate constraints need 0/1 labels and a 0/1 group column")
        out.append((x, y, g))
    with torch.no_grad():
        z = logits_of(model, out[0][0][:2])
    if z.ndim != 1:
        raise NotApplicable("rate constraints need a model with one logit per row (binary classification)")
    tau = settings.proxy_temperature
    cons = (dp_gap_constraint(settings.dp_bound, tau), fnr_constraint(settings.fnr_bound, group=1, temperature=tau))
    task = Task(subject.name, model, bce, out[0], out[1], cons)
    info = {"name": subject.name, "model_class": type(subject.model).__name__, "user_model": True, "group_column": col}
    off = {"duality": None, "rate": None, "pareto": None}
    return ConstrainedSubject((task,), None, None, info), dataclasses.replace(settings, **off)
