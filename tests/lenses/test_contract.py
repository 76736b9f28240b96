"""The lens contract, checked for every lens in the registry.

For each lens: the result's schema (every check has a kind, every estimate an interval or a stated
reason, metrics finite and named ``<section>.*``, declared outputs produced, JSON without NaN),
seeded reproducibility, part independence (each part run alone gives bit-identical numbers to the
same part in the full run: parts draw from their own seeds), and bad settings giving one-line
errors that name the dotted key.
"""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from functools import lru_cache

import pytest
from typer.testing import CliRunner

from multilens.cli import app
from multilens.config import _part_type, from_dict
from multilens.errors import ConfigError
from multilens.lenses.contract import run_lens
from multilens.lenses.registry import LENSES
from multilens.results import CHECK_KINDS, LensResult

# Timings are measured, not computed: they differ between two runs of the same seed.
TIMING = re.compile(r"(wall_time|time_s|seconds|speedup|throughput|latency|efficiency|elapsed|_per_s\b|timing)")

IDS = [e.name for e in LENSES]


def part_fields(settings: typing.Any) -> list[str]:
    hints = typing.get_type_hints(type(settings))
    return [f.name for f in dataclasses.fields(settings) if _part_type(hints[f.name])[0] is not None]


@lru_cache(maxsize=None)
def smoke(name: str, seed: int = 0) -> LensResult:
    entry = next(e for e in LENSES if e.name == name)
    return run_lens(entry, entry.settings_for("smoke"), seed)


def _strip(obj: typing.Any) -> typing.Any:
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if not TIMING.search(str(k))}
    if isinstance(obj, list):
        return [_strip(v) for v in obj if not (isinstance(v, dict) and TIMING.search(str(v.get("name", ""))))]
    return obj


def deterministic_view(r: LensResult) -> dict[str, typing.Any]:
    d = r.to_dict()
    d.pop("provenance")
    d.pop("check_counts")  # derived from the checks, which are compared one by one (timing checks excluded)
    return _strip(d)


@pytest.mark.parametrize("name", IDS)
def test_result_schema(name: str) -> None:
    entry = next(e for e in LENSES if e.name == name)
    r = smoke(name)
    assert r.lens == entry.section or r.lens == entry.name
    assert r.parts, "a lens result is built from at least one part"
    assert r.checks, "a lens without checks measures nothing against anything"
    for c in r.checks:
        assert c.kind in CHECK_KINDS
        assert c.reason, f"check {c.name} has no reason"
    assert any(c.kind in ("agreement", "bound") for c in r.checks), "no evidence (agreement/bound) check"
    unexplained = [e.name for e in r.estimates if not e.explained]
    assert not unexplained, f"estimates with neither interval, stderr nor no_interval_reason: {unexplained}"
    for k, v in r.metrics.items():
        assert k.startswith(f"{entry.section}."), f"metric {k} is not named {entry.section}.*"
    for k in entry.produces:
        assert k in r.outputs, f"declared output {k} not produced"
    for a in r.assumptions:
        assert a.status in ("holds", "violated", "unchecked")
    for rec in r.recommendations:
        assert all(r.check(n).passed is True for n in rec.rests_on if "*" not in n)
    text = json.dumps(r.to_dict(), allow_nan=False)
    assert len(text) > 100
    prov = r.provenance
    assert prov["seed"] == 0 and prov["config_hash"] and prov["code"]["source_hash"]


@pytest.mark.parametrize("name", IDS)
def test_seeded_reproducibility(name: str) -> None:
    entry = next(e for e in LENSES if e.name == name)
    again = run_lens(entry, entry.settings_for("smoke"), 0)
    assert deterministic_view(again) == deterministic_view(smoke(name))


@pytest.mark.parametrize("name", IDS)
def test_parts_are_independent(name: str) -> None:
    """Each part alone gives the same estimates, checks and metrics as in the full run."""
    entry = next(e for e in LENSES if e.name == name)
    full = smoke(name)
    base = entry.settings_for("smoke")
    fields = part_fields(base)
    assert set(full.parts) <= set(fields), f"parts {full.parts} must be named after settings fields {fields}"
    full_est = {e.name: e.to_dict() for e in full.estimates}
    full_chk = {c.name: c.to_dict() for c in full.checks}
    for p in full.parts:
        alone = dataclasses.replace(base, **{f: None for f in fields if f != p})
        r = run_lens(entry, alone, 0)
        assert r.parts == (p,)
        for e in r.estimates:
            if not TIMING.search(e.name):
                assert e.to_dict() == full_est[e.name], f"part {p}: estimate {e.name} changed when other parts were off"
        for c in r.checks:
            if not TIMING.search(c.name):
                assert c.to_dict() == full_chk[c.name], f"part {p}: check {c.name} changed when other parts were off"
        for k, v in r.metrics.items():
            if not TIMING.search(k):
                assert v == full.metrics[k], f"part {p}: metric {k} changed"


@pytest.mark.parametrize("name", IDS)
def test_bad_settings_name_the_key(name: str) -> None:
    entry = next(e for e in LENSES if e.name == name)
    cls = entry.load("Settings")
    base = cls.for_profile("smoke")
    with pytest.raises(ConfigError, match=rf"`{entry.section}\.no_such_key`"):
        from_dict(cls, {"no_such_key": 1}, where=entry.section, base=base)
    for p in part_fields(base):
        with pytest.raises(ConfigError, match=rf"`{entry.section}\.{p}\.no_such_key`"):
            from_dict(cls, {p: {"no_such_key": 1}}, where=entry.section, base=base)
    with pytest.raises(ConfigError):
        cls.for_profile("enormous")


@pytest.mark.parametrize("name", IDS)
def test_cli_bad_setting_is_one_line_exit_2(name: str) -> None:
    res = CliRunner().invoke(app, ["lens", name, "--profile", "smoke", "--set", "no_such_key=1"])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "no_such_key" in lines[0] and "Traceback" not in res.output
