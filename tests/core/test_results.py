"""The result types enforce the contract at construction (issue 8, items 2, 4, 5, 7)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from multilens.results import (
    Assumption,
    Check,
    Estimate,
    LensResult,
    Part,
    Recommendation,
    check_bound,
    check_difference_within,
    check_in_interval,
    check_within,
)
from multilens.stats import batch_means_ci, bootstrap_ci, clopper_pearson, mean_ci


def _c(name: str, passed: bool | None, kind: str = "agreement") -> Check:
    return Check(name, passed, reason="r", kind=kind)


def test_every_check_needs_a_kind():
    with pytest.raises(TypeError):
        Check("x", True, reason="no kind")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="kind"):
        Check("x", True, kind="vibes")  # type: ignore[arg-type]


def test_assumption_status_is_derived_from_the_named_checks_never_given():
    with pytest.raises(TypeError):
        Assumption("t", "s", ("a",), "holds")  # type: ignore[call-arg]
    parts = [
        Part(
            "p",
            checks=(_c("a", True), _c("b", False), _c("c", None)),
            assumptions=(
                Assumption("A", "s", "a"),
                Assumption("B", "s", ("a", "b")),
                Assumption("C", "s", "c"),
                Assumption("D", "s"),
                Assumption("E", "s", "[ab]"),
            ),
        )
    ]
    r = LensResult.from_parts("x", parts)
    assert [a.status for a in r.assumptions] == ["holds", "violated", "unchecked", "unchecked", "violated"]
    assert "check `b` (fail)" in r.assumptions[1].how


def test_an_assumption_naming_no_existing_check_is_an_error():
    with pytest.raises(ValueError, match="`missing`, which does not exist"):
        LensResult.from_parts("x", [Part("p", checks=(_c("a", True),), assumptions=(Assumption("A", "s", "missing"),))])


def test_recommendations_are_dropped_unless_every_check_they_rest_on_passed():
    recs = (Recommendation("keep", ("a",)), Recommendation("drop", ("a", "b")), Recommendation("ne", ("c",)))
    r = LensResult.from_parts(
        "x", [Part("p", checks=(_c("a", True), _c("b", False), _c("c", None)), recommendations=recs)]
    )
    assert [x.text for x in r.recommendations] == ["keep"]
    assert [d["text"] for d in r.dropped_recommendations] == ["drop", "ne"]
    assert "check `b` fail" in r.dropped_recommendations[0]["reason"]
    with pytest.raises(ValueError, match="names no check"):
        Recommendation("x", ())
    with pytest.raises(ValueError, match="does not exist"):
        LensResult.from_parts("x", [Part("p", checks=(_c("a", True),), recommendations=(Recommendation("x", "z"),))])


def test_duplicate_names_and_non_finite_metrics_are_errors():
    with pytest.raises(ValueError, match="two checks"):
        LensResult.from_parts("x", [Part("p", checks=(_c("a", True),)), Part("q", checks=(_c("a", True),))])
    with pytest.raises(ValueError, match="finite"):
        LensResult("x", metrics={"x.m": float("nan")})
    with pytest.raises(ValueError, match="set by two parts"):
        LensResult.from_parts("x", [Part("p", metrics={"x.m": 1.0}), Part("q", metrics={"x.m": 2.0})])


def test_one_criterion_per_check_and_its_verdict():
    assert check_within("w", 1.05, 1.0, 0.1, kind="agreement").passed is True
    assert check_within("w", 1.2, 1.0, 0.1, kind="agreement").passed is False
    assert check_within("w", float("nan"), 1.0, 0.1, kind="agreement").passed is None
    assert check_in_interval("i", 1.0, 0.9, 1.1, kind="agreement").passed is True
    # The whole interval of the difference must lie within +-tol: covering 0 is not enough.
    assert check_difference_within("d", -0.05, 0.05, 0.1).passed is True
    assert check_difference_within("d", -0.05, 0.15, 0.1).passed is False
    b = check_bound("b", 0.5, 2.1, exact=0.5)
    assert b.passed is True and b.kind == "bound" and b.bound_ratio == pytest.approx(4.2)
    assert check_bound("b", 3.0, 2.0).passed is False


def test_mean_ci_counts_what_it_drops_and_says_why_it_has_no_interval():
    ci = mean_ci([1.0, 2.0, 3.0, float("inf"), float("nan")])
    assert ci.n == 3 and ci.n_dropped == 2 and "2 non-finite dropped" in ci.method
    assert ci.estimate == 2.0 and ci.low < 2.0 < ci.high
    e = ci.to_estimate("m")
    assert e.n_dropped == 2 and "dropped" in e.note
    one = mean_ci([4.0]).to_estimate("one")
    assert one.ci_low is None and one.no_interval_reason.startswith("single seed") and one.explained
    assert not Estimate("bare", 1.0).explained


def test_intervals_cover_at_their_nominal_rate():
    """t-intervals over 20 replicates cover the true mean in ~95% of 400 repetitions (binomial tolerance)."""
    rng = np.random.default_rng(0)
    hits = sum(mean_ci(rng.normal(3.0, 2.0, 20)).covers(3.0) for _ in range(400))
    assert abs(hits / 400 - 0.95) <= 3 * math.sqrt(0.95 * 0.05 / 400)
    bm = batch_means_ci(rng.normal(1.0, 0.1, 50), n_batches=5)
    assert bm.ok and bm.low < 1.0 < bm.high and "batch means" in bm.method
    cp = clopper_pearson(0, 46, level=0.90)
    assert cp.high == pytest.approx(1 - 0.05 ** (1 / 46), rel=1e-9)  # the k = 0 closed form at 1 - delta = 0.95
    bs = bootstrap_ci(np.mean, rng.normal(0, 1, 200), n_boot=300, seed=1)
    assert bs.ok and bs.low < bs.estimate < bs.high


def test_check_sign_needs_the_whole_interval_on_one_side():
    from multilens.stats import Interval, check_sign

    above = Interval(0.3, 0.1, 0.5, 0.1, 10, 0.95, "t")
    straddles = Interval(0.3, -0.1, 0.7, 0.2, 10, 0.95, "t")
    assert check_sign("a", above, positive=True, what="x").passed is True
    assert check_sign("a", above, positive=False, what="x").passed is False
    assert check_sign("a", straddles, positive=True, what="x").passed is False
    none = Interval(0.3, float("nan"), float("nan"), float("nan"), 1, 0.95, "t", reason="single seed")
    c = check_sign("a", none, positive=True, what="x", severity="info")
    assert c.passed is None and "single seed" in c.reason and c.severity == "info"
