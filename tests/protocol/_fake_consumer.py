"""The consumer fake lens: doubles the producer's hand-off."""

from __future__ import annotations

from _fake_lens import CALLS, Settings  # noqa: F401 - Settings is part of the lens contract

from multilens.results import Check, Estimate, LensResult, Part


def default_subject(settings: Settings, *, seed: int, runtime=None) -> float:
    return runtime.inputs["fake.value"]


def measure(subject: float, settings: Settings, *, seed: int, runtime=None) -> LensResult:
    CALLS.append("consumer")
    chk = Check("twice finite", True, 2 * subject, None, None, "identity", kind="sanity")
    part = Part("main", estimates=(Estimate("twice", 2 * subject, stderr=0.0, n=1),), checks=(chk,),
                metrics={"consumer.twice": 2 * subject})  # fmt: skip
    return LensResult.from_parts("consumer", [part])
