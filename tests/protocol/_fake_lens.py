"""Two tiny fake lenses for the runner's tests: a producer and a consumer of a typed artifact."""

from __future__ import annotations

from dataclasses import dataclass

from multilens.protocol.phase import PhaseContext, PhaseOutput
from multilens.results import Check, Estimate, LensResult


@dataclass(frozen=True)
class FakeConfig:
    schema_version: int = 1
    value: float = 1.0
    fail: bool = False
    wrong_type: bool = False

    @classmethod
    def for_profile(cls, profile: str) -> FakeConfig:
        return cls()


CALLS: list[str] = []


def run_fake(cfg: FakeConfig, seed: int) -> LensResult:
    if cfg.fail:
        raise RuntimeError("fake lens failed on purpose")
    return LensResult(
        "fake",
        estimates=(Estimate("v", cfg.value, cfg.value - 1, cfg.value + 1, n=3),),
        checks=(Check("v positive", cfg.value > 0, cfg.value, 0.0, None, "v > 0"),),
    )


class ProducerPhase:
    name, title = "producer", "fake producer"
    consumes: dict = {}
    produces = {"fake.value": float}

    def run(self, ctx: PhaseContext) -> PhaseOutput:
        from multilens.config import from_dict

        cfg = from_dict(FakeConfig, dict(ctx.config), base=FakeConfig.for_profile(ctx.profile))
        CALLS.append("producer")
        res = run_fake(cfg, ctx.seed)
        art = {"fake.value": "oops" if cfg.wrong_type else cfg.value}
        return PhaseOutput(res, art, {"fake.value": cfg.value}, (f"value measured {cfg.value}",))


class ConsumerPhase:
    name, title = "consumer", "fake consumer"
    consumes = {"fake.value": float}
    produces: dict = {}

    def run(self, ctx: PhaseContext) -> PhaseOutput:
        CALLS.append("consumer")
        v = ctx.artifacts["fake.value"]
        return PhaseOutput(
            LensResult("consumer", estimates=(Estimate("twice", 2 * v, stderr=0.0, n=1),)),
            {},
            {"consumer.twice": 2 * v},
        )


class BadConsumerPhase(ConsumerPhase):
    name = "badconsumer"
    consumes = {"fake.value": int}
