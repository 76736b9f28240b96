"""Cross-lens consistency checks: where two lenses (or two fits) measure the same thing.

Each check reads metrics produced by the phases and is evaluated only when both sides were
measured; otherwise it is reported as not evaluated with the reason. Intervals are compared by
overlap (two independent 95% intervals that do not overlap disagree at well beyond 5%).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from multilens.results import Check


@dataclass(frozen=True)
class CrossCheck:
    name: str
    needs: tuple[str, ...]
    evaluate: Callable[[Mapping[str, Any]], Check]
    description: str
    kind: str = "agreement"


def _overlap(name: str, a: str, b: str, what: str) -> Callable[[Mapping[str, Any]], Check]:
    def f(m: Mapping[str, Any]) -> Check:
        lo1, hi1, lo2, hi2 = m[f"{a}_ci_low"], m[f"{a}_ci_high"], m[f"{b}_ci_low"], m[f"{b}_ci_high"]
        ok = lo1 <= hi2 and lo2 <= hi1
        return Check(
            name,
            bool(ok),
            m[a],
            m[b],
            None,
            f"{what}: [{lo1:.4g}, {hi1:.4g}] and [{lo2:.4g}, {hi2:.4g}] {'overlap' if ok else 'do not overlap'}",
            kind="agreement",
            criterion="the two 95% intervals overlap",
        )

    return f


def _at_least(name: str, a: str, floor: str, what: str) -> Callable[[Mapping[str, Any]], Check]:
    def f(m: Mapping[str, Any]) -> Check:
        hi, bound = m[f"{a}_ci_high"], m[floor]
        ok = hi >= bound
        return Check(name, bool(ok), m[a], bound, None, f"{what}: upper CI {hi:.4g} {'>=' if ok else '<'} {bound:.4g}",
                     kind="bound", criterion="upper end of the interval >= the bound")  # fmt: skip

    return f


CROSS_CHECKS: tuple[CrossCheck, ...] = (
    CrossCheck(
        "scaling floors agree",
        (
            "scaling.L_inf",
            "scaling.L_inf_ci_low",
            "scaling.L_inf_ci_high",
            "scaling.E",
            "scaling.E_ci_low",
            "scaling.E_ci_high",
        ),
        _overlap(
            "scaling floors agree",
            "scaling.L_inf",
            "scaling.E",
            "irreducible loss from L(C) (frontier) vs E from L(N, D) (all runs)",
        ),
        "Two different fits of the same sweep estimate the same irreducible loss.",
    ),
    CrossCheck(
        "scaling floor respects the Bayes risk",
        ("scaling.E", "scaling.E_ci_high", "scaling.bayes_risk"),
        _at_least(
            "scaling floor respects the Bayes risk",
            "scaling.E",
            "scaling.bayes_risk",
            "the fitted floor E cannot be below the data's noise variance",
        ),
        "The data generator's known noise variance bounds any achievable loss from below.",
        "bound",
    ),
)


def evaluate_cross_checks(metrics: Mapping[str, Any]) -> list[Check]:
    out = []
    for cc in CROSS_CHECKS:
        missing = [k for k in cc.needs if metrics.get(k) is None]
        if missing:
            out.append(Check(cc.name, None, reason=f"not evaluated: {', '.join(missing)} not measured in this run",
                             kind=cc.kind))  # fmt: skip
        else:
            out.append(cc.evaluate(metrics))
    return out
