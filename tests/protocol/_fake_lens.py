"""Tiny fake lenses on the lens contract for the runner's tests: a producer and a consumer."""

from __future__ import annotations

from dataclasses import dataclass

from multilens.results import Check, Estimate, LensResult, Part, Recommendation

CALLS: list[str] = []


@dataclass(frozen=True)
class Settings:
    schema_version: int = 1
    value: float = 1.0
    fail: bool = False
    wrong_type: bool = False

    @classmethod
    def for_profile(cls, profile: str) -> Settings:
        return cls()


def default_subject(settings: Settings, *, seed: int, runtime=None) -> float:
    return settings.value


def measure(subject: float, settings: Settings, *, seed: int, runtime=None) -> LensResult:
    CALLS.append("producer")
    if settings.fail:
        raise RuntimeError("fake lens failed on purpose")
    chk = Check("v positive", subject > 0, subject, 0.0, None, "v > 0", kind="agreement")
    part = Part(
        "main",
        estimates=(Estimate("v", subject, subject - 1, subject + 1, n=3),),
        checks=(chk,),
        recommendations=(Recommendation(f"value measured {subject}", ("v positive",)),),
        metrics={"fake.value": subject},
        outputs={"fake.value": "oops" if settings.wrong_type else subject, "fake.alt": 10.0 * subject},
    )
    return LensResult.from_parts("producer", [part])
