"""The run configuration of the capstone: profile, seed, phases, policy and one table per lens.

A run TOML file looks like::

    profile = "quick"
    seed = 0
    phases = ["scaling"]
    [scaling]
    seeds = 5

Top-level keys other than these and the lens tables are errors that name the key. Each lens
table is validated against that lens's config class (strictly) before anything runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from multilens.config import config_hash, from_dict
from multilens.errors import ConfigError
from multilens.lenses.registry import LENSES, by_section, get_lens

Profile = Literal["smoke", "quick", "full"]


# The protocol's order (C.18, C.20): double descent measures the shared family's interpolation
# threshold, which the scaling fit excludes; scaling recommends N*, D*; allocation trains that model,
# which curvature, representation, calibration, robustness and compression then measure; implicit
# bias hands its linear classifier to robustness; the rest follow. Lenses not listed run after these.
PROTOCOL_ORDER = (
    "double_descent", "scaling", "allocation", "curvature", "implicit_bias", "spectral_bias", "filters",
    "representation", "calibration", "robustness", "compression", "stability", "distributed", "shift", "constraints",
)  # fmt: skip


def default_phases() -> tuple[str, ...]:
    sections = [e.section for e in LENSES]
    return tuple([s for s in PROTOCOL_ORDER if s in sections] + [s for s in sections if s not in PROTOCOL_ORDER])


@dataclass(frozen=True)
class RunConfig:
    schema_version: int = 1
    profile: Profile = "quick"
    seed: int = 0
    phases: tuple[str, ...] = field(default_factory=default_phases)
    policy: str = ""  # path of a policy TOML; "" = the default policy
    title: str = "multilens capstone"
    sections: dict[str, Any] = field(default_factory=dict)  # raw lens tables, validated below

    def __post_init__(self) -> None:
        if self.profile not in ("smoke", "quick", "full"):
            raise ConfigError(f"`profile` must be smoke, quick or full; got {self.profile!r}.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"`seed` must be an int >= 0; got {self.seed!r}.")
        if not self.phases:
            raise ConfigError("`phases` is empty; list at least one phase.")
        # Accept CLI names ("double-descent") and table names ("double_descent"); keep table names.
        object.__setattr__(self, "phases", tuple(get_lens(p).section for p in self.phases))
        seen = set()
        for p in self.phases:
            if p in seen:
                raise ConfigError(f"`phases` lists `{p}` twice; list each phase once.")
            seen.add(p)

    def lens_config(self, section: str) -> Any:
        """The validated, frozen config of one lens: profile defaults + this run's table."""
        entry = get_lens(section)
        cls = entry.load("Settings")
        return from_dict(
            cls, self.sections.get(entry.section, {}), where=entry.section, base=cls.for_profile(self.profile)
        )

    def phase_hash(self, section: str) -> str:
        cfg = self.lens_config(section)
        return config_hash({"phase": section, "profile": self.profile, "config": dataclasses.asdict(cfg)})

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "profile": self.profile,
            "seed": self.seed,
            "phases": list(self.phases),
            "policy": self.policy,
            "title": self.title,
            "lenses": {p: dataclasses.asdict(self.lens_config(p)) for p in self.phases},
        }


def run_config_from_dict(data: dict[str, Any], **overrides: Any) -> RunConfig:
    """Split lens tables from top-level keys, validate everything, apply CLI overrides."""
    top, sections = {}, {}
    for k, v in data.items():
        if by_section(k) is not None:
            if not isinstance(v, dict):
                raise ConfigError(f"`{k}` must be a table ([{k}]); got {v!r}.")
            sections[k] = v
        else:
            top[k] = v
    top.update({k: v for k, v in overrides.items() if v is not None})
    if "sections" in top:
        raise ConfigError("unknown config key `sections`; put lens settings in their own tables.")
    try:
        cfg = from_dict(RunConfig, top)
    except ConfigError as e:
        msg = str(e)
        if msg.startswith("unknown config key"):
            valid = sorted({f.name for f in dataclasses.fields(RunConfig)} - {"sections"} | {e.section for e in LENSES})
            key = msg.split("`")[1]
            raise ConfigError(f"unknown config key `{key}`; valid keys are: {', '.join(valid)}.") from None
        raise
    cfg = dataclasses.replace(cfg, sections=sections)
    for p in cfg.phases:
        cfg.lens_config(p)  # validate now, before anything runs
    for s in sections:
        if s not in {get_lens(p).section for p in cfg.phases}:
            raise ConfigError(
                f"config table `[{s}]` is for a phase that is not in `phases`; add it or remove the table."
            )
    return cfg
