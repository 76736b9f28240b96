"""The robustness lens on the implicit-bias lens's hand-off: attack a GD-trained linear classifier.

The input ``implicit_bias.linear_classifier`` (``runtime.inputs``; registry ``uses``) is a dict
``{w, b, x_test, y_test (+-1), norm: "linf", eps}``. The part builds the binary linear model in
torch (float64; logits (0, w.x + b), so the margin of class +1 is w.x + b), attacks it with the
lens's own PGD (and FGSM) at the l-inf radius eps without a box and without looking at the margins,
and reports the robust accuracy with its Clopper-Pearson interval as
``robustness.handoff_linear_robust_accuracy``. The protocol compares it with the implicit-bias
lens's fraction of normalised margins above eps (consistency 6: exact for a linear model).

A sanity check: the lens's exact linear reference (:func:`attacks.exact_linear_robust`, the dual
norm) on the same model agrees with the attack to ``max_count_diff`` examples. Without the input
the part is not evaluated and says so (a note, not a failure).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from multilens.lenses.robustness import attacks as A
from multilens.results import Assumption, Check, Estimate, Part, Table, check_bound, check_within
from multilens.results import metric_with_interval as mwi
from multilens.stats import clopper_pearson

INPUT = "implicit_bias.linear_classifier"
METRIC = "robustness.handoff_linear_robust_accuracy"


def linear_model(w: torch.Tensor, b: float) -> nn.Module:
    """Two-class logits (0, w.x + b) in float64: class 1 is the label +1."""
    lin = nn.Linear(w.numel(), 2, dtype=torch.float64)
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.zero_()
        lin.weight[1] = w.double()
        lin.bias[1] = float(b)
    return nn.Sequential(lin).eval()


def parse_handoff(h: Mapping[str, Any]) -> tuple[torch.Tensor, float, torch.Tensor, torch.Tensor, float]:
    """(w, b, x_test, labels in {0, 1}, eps) from the hand-off dict; ValueError naming the bad key."""
    for k in ("w", "b", "x_test", "y_test", "norm", "eps"):
        if k not in h:
            raise ValueError(f"`{INPUT}` lacks `{k}`")
    if h["norm"] != "linf":
        raise ValueError(f"`{INPUT}.norm` must be 'linf'; got {h['norm']!r}")
    w = torch.as_tensor(h["w"], dtype=torch.float64).reshape(-1)
    x = torch.as_tensor(h["x_test"], dtype=torch.float64)
    y = torch.as_tensor(h["y_test"], dtype=torch.float64).reshape(-1)
    if x.dim() != 2 or x.shape[1] != w.numel() or y.numel() != x.shape[0] or x.shape[0] < 1:
        raise ValueError(f"`{INPUT}`: x_test must be (n, {w.numel()}) with one y_test per row")
    if not bool(((y == 1) | (y == -1)).all()):
        raise ValueError(f"`{INPUT}.y_test` must be -1 or +1")
    eps = float(h["eps"])
    if not eps > 0:
        raise ValueError(f"`{INPUT}.eps` must be > 0; got {eps}")
    return w, float(h["b"]), x, (y > 0).long(), eps


def handoff_part(inputs: Mapping[str, Any] | None, ps: Any, *, seed: int) -> Part:
    h = (inputs or {}).get(INPUT)
    if h is None:
        return Part("handoff", notes=(f"not evaluated: no hand-off (`{INPUT}` is produced by the implicit-bias lens "
                                      "in the protocol)",))  # fmt: skip
    w, b, x, y, eps = parse_handoff(h)
    n = int(x.shape[0])
    model = linear_model(w, b)
    r = A.pgd(model, x, y, eps=eps, norm="linf", steps=ps.steps, restarts=ps.restarts, input_range=None, seed=seed)
    rf = A.fgsm(model, x, y, eps=eps, input_range=None)
    lin = model[0]
    _, exact = A.exact_linear_robust(lin.weight.detach(), lin.bias.detach(), x, y, eps=eps, norm="linf")
    k_pgd, k_fgsm, k_ex, k_clean = (
        int(r.robust.sum()),
        int(rf.robust.sum()),
        int(exact.sum()),
        int(r.clean_correct.sum()),
    )
    rob = clopper_pearson(k_pgd, n).to_estimate(
        METRIC,
        unit="fraction",
        note=f"PGD l-inf ({ps.steps} steps, {ps.restarts} restart(s)) at eps = {eps:.6g}, no box",
    )
    est = (
        rob,
        clopper_pearson(k_fgsm, n).to_estimate("handoff_fgsm_robust_accuracy", unit="fraction"),
        clopper_pearson(k_clean, n).to_estimate("handoff_clean_accuracy", unit="fraction"),
        Estimate("handoff_exact_robust_accuracy", k_ex / n, n=n, method="closed form (dual norm)",
                 no_interval_reason="exact closed form on these examples"),
    )  # fmt: skip
    tol = ps.max_count_diff / n
    checks: tuple[Check, ...] = (
        check_within("handoff_attack_matches_exact_reference", k_pgd / n, k_ex / n, tol, kind="sanity",
                     what=f"PGD robust accuracy on the handed-on linear model against the lens's exact linear "
                          "reference "
                          f"(tolerance {ps.max_count_diff} example(s))"),
        check_bound("handoff_attack_not_below_exact", k_pgd / n, k_ex / n, direction=">=",
                    what="an attack cannot find more adversarial examples than exist"),
    )  # fmt: skip
    table = Table(
        "handoff",
        "The implicit-bias lens's linear classifier under attack",
        ["n_test", "eps (l-inf)", "clean acc", "PGD robust acc", "FGSM robust acc", "exact robust acc"],
        [[n, eps, k_clean / n, k_pgd / n, k_fgsm / n, k_ex / n]],
        caption="the attack does not know the margins; the protocol compares PGD's number with the implicit-bias "
        "lens's fraction of normalised margins above eps (consistency 6)",
    )
    return Part(
        "handoff",
        est,
        checks,
        tables=(table,),
        assumptions=(
            Assumption(
                "PGD reaches the worst case of a linear model",
                "Hoelder: min over the l-inf ball is y f(x) - eps ||w||_1",
                ("handoff_attack_matches_exact_reference",),
            ),
        ),  # fmt: skip
        metrics=mwi(METRIC, rob),
    )
