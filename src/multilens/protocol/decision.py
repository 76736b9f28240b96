"""The decision record (C.20's final analysis): each decision with all the evidence that bears on it.

For each decision the protocol makes (the compute allocation, the learning rate, the release, the
regularisation) the record lists the evidence from every lens that bears on it (checks, gates and
their fallbacks, predeclared cross-lens checks, stress tests), the decision with its uncertainty,
and how stable it is under perturbations where that was recomputed. Disagreements between lenses
(failed cross-lens checks) are resolved, not listed: each side's assumptions are read from its
lens result; when one side's assumptions are violated (a named check failed) the other side is
trusted, when both hold the disagreement is reported as unresolved and the decisions it bears on
are marked contested.

Everything here is read from the run summary: nothing is measured, nothing is asserted.
"""

from __future__ import annotations

import math
from typing import Any

# Which decision each predeclared cross-lens check bears on (by its number in the policy).
BEARS_ON = {
    1: "allocation", 2: "allocation", 4: "allocation", 10: "allocation", 11: "allocation", 12: "allocation",
    9: "learning rate", 8: "learning rate",
    6: "release",
    3: "regularisation", 5: "regularisation",
    # C.15: whether training on past interpolation drifts calibration with curvature is a question of when to stop
    # (early stopping is the regularisation choice); in the protocol it is measured on the calibration lens's digits
    # reference trajectory, since the main model (one pass over fresh data) never interpolates.
    7: "regularisation",
}  # fmt: skip
RELEASE_PHASES = ("curvature", "calibration", "representation", "robustness", "constraints", "compression")


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.4g}" if math.isfinite(x) else "n/a"
    return str(x)


def _phase(summary: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((p for p in summary.get("phases", []) if p["name"] == name), None)


def _checks(summary: dict[str, Any], phase: str, names: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    ph = _phase(summary, phase)
    if ph is None:
        return []
    cs = [c for c in (ph.get("result") or {}).get("checks", []) if c.get("kind") in ("agreement", "bound")]
    if names is not None:
        cs = [c for c in cs if c["name"] in names]
    return [{"source": f"{phase} check", "item": c["name"], "passed": c["passed"], "detail": c.get("reason", "")}
            for c in cs]  # fmt: skip


def _gates(summary: dict[str, Any], phases: tuple[str, ...] | None = None, action: str | None = None) -> list[dict]:
    out = []
    for g in summary.get("gates", []):
        if g.get("skipped") or (phases is not None and g["phase"] not in phases):
            continue
        if action is not None and g["action"] != action:
            continue
        fb = g.get("fallback") or {}
        detail = g["reason"] + (f"; fallback `{fb.get('name')}`: {fb.get('status')} ({fb.get('reason')})" if fb else "")
        out.append({"source": f"gate ({g['action']})", "item": g["name"], "passed": g["passed"], "detail": detail,
                    "effective_action": g.get("effective_action", g["action"])})  # fmt: skip
    return out


def _cross(summary: dict[str, Any], decision: str) -> list[dict[str, Any]]:
    return [{"source": f"cross-lens #{c.get('number')}", "item": c["name"], "passed": c["passed"],
             "detail": c.get("reason", "")}
            for c in summary.get("consistency", []) if BEARS_ON.get(c.get("number")) == decision]  # fmt: skip


def _stress(summary: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [{"source": "stress test", "item": t["name"], "passed": t.get("passed"), "detail": t.get("verdict", "")}
            for t in summary.get("stress", []) if t.get("kind") == kind]  # fmt: skip


def _status(evidence: list[dict[str, Any]], made: bool) -> str:
    if not made:
        return "not made"
    if any(e["passed"] is False and e.get("effective_action") != "resolved" for e in evidence):
        return "contested"
    if any(e["passed"] is None for e in evidence):
        return "partly supported"
    return "supported"


def allocation_decision(summary: dict[str, Any]) -> dict[str, Any]:
    a = (summary.get("artifacts_final") or {}).get("scaling.allocation")
    ev = _checks(summary, "scaling") + _gates(summary, ("scaling",)) + _checks(summary, "allocation")
    ev += _cross(summary, "allocation") + _stress(summary, "budget")
    m = summary.get("metrics", {})
    if not a:
        text, unc = "no allocation: the scaling phase did not hand one on", "n/a"
    else:
        n, d, c, how = _fmt(a.get("n_star")), _fmt(a.get("d_star")), _fmt(a.get("budget")), a.get("method", "approach3")
        text = f"train N* = {n} parameters (width {a.get('width')}) on D* = {d} examples for C = {c} FLOPs ({how})"
        lo, hi = (a.get("n_star_ci") or [None, None])[:2]
        dlo, dhi = (a.get("d_star_ci") or [None, None])[:2]
        unc = f"N* in [{_fmt(lo)}, {_fmt(hi)}], D* in [{_fmt(dlo)}, {_fmt(dhi)}] (95%)"
        if m.get("allocation.realised_loss") is not None:
            lo, hi = _fmt(m.get("allocation.realised_loss_ci_low")), _fmt(m.get("allocation.realised_loss_ci_high"))
            unc += f"; realised test loss {_fmt(m['allocation.realised_loss'])} [{lo}, {hi}]"
    stab = summary.get("recommendation_stability", {}).get("allocation")
    return {"name": "allocation", "decision": text, "uncertainty": unc, "evidence": ev, "stability": stab,
            "status": _status(ev, bool(a))}  # fmt: skip


def lr_decision(summary: dict[str, Any]) -> dict[str, Any]:
    a = (summary.get("artifacts_final") or {}).get("scaling.allocation") or {}
    m = summary.get("metrics", {})
    ev = _checks(summary, "curvature", ("lanczos_eigenvalue_1_vs_dense",)) + _gates(summary, ("curvature",))
    ev += [e for e in _gates(summary, ("compression",)) if "learning rate" in e["item"]]
    ev += _cross(summary, "learning rate")
    lam = m.get("curvature.lambda_max")
    parts = []
    if a.get("lr") is not None:
        parts.append(f"train the main model at lr = {_fmt(a['lr'])} ({a.get('recipe', {}).get('optimizer', 'adam')}, "
                     "tuned per width on validation loss at the smallest budget)")  # fmt: skip
    if lam is not None:
        parts.append(f"fine-tune it with plain SGD at lr <= 2/lambda_max = {_fmt(2.0 / lam)} "
                     f"(lambda_max = {_fmt(lam)} [{_fmt(m.get('curvature.lambda_max_ci_low'))}, "
                     f"{_fmt(m.get('curvature.lambda_max_ci_high'))}])")  # fmt: skip
    made = bool(parts)
    unc = "the 2/lambda_max cap uses the upper end of lambda_max's interval" if lam is not None else "no curvature"
    stab = summary.get("recommendation_stability", {}).get("learning rate")
    return {"name": "learning rate", "decision": "; ".join(parts) or "no learning-rate decision: no hand-offs",
            "uncertainty": unc, "evidence": ev, "stability": stab, "status": _status(ev, made)}  # fmt: skip


def release_decision(summary: dict[str, Any]) -> dict[str, Any]:
    ev = _gates(summary, RELEASE_PHASES) + _cross(summary, "release") + _stress(summary, "shift")
    ev += _stress(summary, "contention")
    stops = [e for e in ev if e["source"] == "gate (stop)"]
    blocked = [e["item"] for e in stops if e["passed"] is not True]
    shift = [e for e in ev if e["source"] == "stress test" and e["passed"] is False]
    if not stops:
        text = "no release decision: no release gate was evaluated"
    elif blocked:
        text = f"NO-GO: release gate(s) {', '.join(blocked)} failed or could not be evaluated"
    elif shift:
        text = "GO on in-distribution evidence only: every release gate passes, but the decision does not survive "
        text += "the predeclared stress test(s) " + ", ".join(e["item"] for e in shift)
    else:
        text = f"GO: all {len(stops)} release stop gates pass"
    warns = [e["item"] for e in ev if e["source"] == "gate (warn)" and e["passed"] is not True]
    unc = "gates read the least favourable ends of their inputs' intervals" + (
        f"; warnings: {', '.join(warns)}" if warns else ""
    )
    stab = summary.get("recommendation_stability", {}).get("release")
    return {"name": "release", "decision": text, "uncertainty": unc, "evidence": ev,
            "stability": stab, "status": _status(ev, bool(stops))}  # fmt: skip


def regularisation_decision(summary: dict[str, Any]) -> dict[str, Any]:
    m = summary.get("metrics", {})
    a = (summary.get("artifacts_final") or {}).get("scaling.allocation") or {}
    ratio = m.get("double_descent.interpolation_ratio")
    ev = _checks(summary, "double_descent") + _checks(summary, "stability") + _checks(summary, "filters")
    ev += _cross(summary, "regularisation")
    if ratio is None or not a.get("n_star") or not a.get("d_star"):
        text = "no regularisation decision: the interpolation threshold or the allocation is missing"
        made = False
    else:
        nd = a["n_star"] / a["d_star"]
        near = ratio / 2.0 <= nd <= ratio * 2.0
        made = True
        if near:
            rr = _fmt(m.get("double_descent.ridge_max_risk"))
            text = (f"the main model sits in the interpolation peak band (N*/D* = {_fmt(nd)} within a factor 2 of the "
                    f"measured threshold {_fmt(ratio)}): add ridge (or stop early), which the double-descent phase "
                    f"measured to suppress the peak (ridge max risk {rr})")  # fmt: skip
        else:
            text = (
                f"no extra regularisation for the peak (N*/D* = {_fmt(nd)} is outside a factor 2 of the "
                f"measured interpolation threshold {_fmt(ratio)}; one pass over fresh data does not interpolate)"
            )
    unc = (f"threshold interval [{_fmt(m.get('double_descent.interpolation_ratio_ci_low'))}, "
           f"{_fmt(m.get('double_descent.interpolation_ratio_ci_high'))}]") if ratio is not None else "n/a"  # fmt: skip
    stab = summary.get("recommendation_stability", {}).get("regularisation")
    return {"name": "regularisation", "decision": text, "uncertainty": unc, "evidence": ev, "stability": stab,
            "status": _status(ev, made)}  # fmt: skip


def _assumptions(summary: dict[str, Any], lens: str) -> list[dict[str, Any]]:
    ph = _phase(summary, lens)
    return list((ph.get("result") or {}).get("assumptions", [])) if ph else []


def resolve(check: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """How a failed cross-lens check is resolved, from the two sides' assumption statuses."""
    lenses = sorted({k.split(".")[0] for k in check.get("metrics", [])})
    relevant = set(check.get("assumptions") or [])  # the rule's own list of the checks that bear on it, if any

    def bears(a: dict[str, Any]) -> bool:
        return not relevant or bool(relevant & set(a.get("checked_by") or []))

    violated = {ln: [a for a in _assumptions(summary, ln) if a["status"] == "violated" and bears(a)] for ln in lenses}
    bad = [ln for ln in lenses if violated[ln]]
    good = [ln for ln in lenses if not violated[ln]]
    if len(lenses) >= 2 and bad and good:
        why = "; ".join(f'{ln}: "{a["text"]}" ({a.get("how")})' for ln in bad for a in violated[ln][:2])
        res = f"resolved: trust {', '.join(good)}; {', '.join(bad)} violate(s) an assumption: {why}"
        status = "resolved"
    elif bad and len(lenses) == 1:
        why = "; ".join(f'"{a["text"]}" ({a.get("how")})' for a in violated[lenses[0]][:2])
        res = (
            f"resolved against the prediction: both sides come from {lenses[0]}, whose assumption {why} is "
            "violated; the measured side stands and the prediction is not used for the decision"
        )
        status = "resolved"
    elif bad:
        why = "; ".join(f'{ln}: "{a["text"]}"' for ln in bad for a in violated[ln][:2])
        res = f"unresolved: every side violates an assumption ({why}); neither number is used for the decision"
        status = "unresolved"
    else:
        res = ("unresolved: every side's checked assumptions hold, so the disagreement is itself a finding; the "
               f"decision it bears on ({BEARS_ON.get(check.get('number'), 'none')}) is marked contested")  # fmt: skip
        status = "unresolved"
    return {"check": check["name"], "number": check.get("number"), "lenses": lenses, "reason": check.get("reason"),
            "decision": BEARS_ON.get(check.get("number")), "resolution": res, "status": status}  # fmt: skip


def decision_record(summary: dict[str, Any]) -> dict[str, Any]:
    decisions = [allocation_decision(summary), lr_decision(summary), release_decision(summary),
                 regularisation_decision(summary)]  # fmt: skip
    disagreements = [resolve(c, summary) for c in summary.get("consistency", []) if c.get("passed") is False]
    return {"decisions": decisions, "disagreements": disagreements}


def _mark(p: Any) -> str:
    return {True: "pass", False: "FAIL", None: "not evaluated"}.get(p, str(p))


def stability_text(st: dict[str, Any]) -> str:
    """'holds under k of n perturbations (names); not under: names (reasons)' of a recommendation-stability record."""
    names = ", ".join(map(str, st.get("perturbations") or []))
    text = f"holds under {st.get('held')} of {st.get('total')} perturbations ({names})"
    off = []
    for i in st.get("items") or []:
        if i.get("holds") is not True:
            why = i.get("error") or i.get("why") or ", ".join(i.get("failed_gates") or [])
            off.append(f"{i.get('perturbation')}" + (f" ({why})" if why else ""))
    if st.get("error"):
        off.append(f"not recomputed: {st['error']}")
    return text + (f"; not under: {'; '.join(off)}" if off else "")


def decision_md(record: dict[str, Any], headline: str = "") -> str:
    lines = ["# Decision record", ""]
    if headline:
        lines += [headline, ""]
    for d in record["decisions"]:
        lines += [f"## {d['name'].capitalize()}: {d['status']}", "", f"**Decision.** {d['decision']}", "",
                  f"**Uncertainty.** {d['uncertainty']}", ""]  # fmt: skip
        st = d.get("stability")
        if st:
            lines += [f"**Stability.** {stability_text(st)}", ""]
        else:
            lines += ["**Stability.** not recomputed under perturbations in this run", ""]
        if d["evidence"]:
            lines += ["| source | item | verdict | detail |", "|---|---|---|---|"]
            for e in d["evidence"]:
                detail = str(e.get("detail", "")).replace("|", "\\|").replace("\n", " ")
                lines.append(f"| {e['source']} | {e['item']} | {_mark(e['passed'])} | {detail} |")
            lines.append("")
    lines += ["## Disagreements between lenses", ""]
    if not record["disagreements"]:
        lines += ["No evaluated cross-lens check failed.", ""]
    for g in record["disagreements"]:
        lines += [f"- **#{g['number']} {g['check']}** ({', '.join(g['lenses'])}; bears on {g['decision']}): "
                  f"{g['reason']}. *{g['resolution']}*"]  # fmt: skip
    return "\n".join(lines) + "\n"
