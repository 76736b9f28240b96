"""The protocol runner: typed hand-offs, gates that stop, failed phases, cached phase results."""

from __future__ import annotations

import _fake_lens as fake
import pytest

from multilens.errors import ConfigError
from multilens.lenses import registry
from multilens.lenses.registry import LensEntry
from multilens.protocol.config import run_config_from_dict
from multilens.protocol.gates import policy_from_dict
from multilens.protocol.runner import run_protocol

PRODUCER = LensEntry("producer", "producer", "_fake_lens", "fake producer", "p", "a float",
                     produces={"fake.value": float}, key_checks=("v positive",))  # fmt: skip
CONSUMER = LensEntry("consumer", "consumer", "_fake_consumer", "fake consumer", "c", "a float",
                     consumes={"fake.value": float})  # fmt: skip
BAD = LensEntry("badconsumer", "badconsumer", "_fake_consumer", "bad consumer", "b", "x", consumes={"fake.value": int})


@pytest.fixture
def fake_registry(monkeypatch):
    entries = (PRODUCER, CONSUMER, BAD)
    monkeypatch.setattr(registry, "LENSES", entries)
    import multilens.protocol.config as pc

    monkeypatch.setattr(pc, "LENSES", entries)
    fake.CALLS.clear()


def policy(op=">=", threshold=0.5, action="stop"):
    return policy_from_dict(
        {
            "gate": [
                {
                    "name": "value ok",
                    "kind": "threshold",
                    "inputs": {"value": "metric:fake.value"},
                    "op": op,
                    "threshold": threshold,
                    "action": action,
                    "phase": "producer",
                }
            ]
        }
    )


def test_runs_in_order_and_hands_off_artifacts(tmp_path, fake_registry):
    cfg = run_config_from_dict({"phases": ["producer", "consumer"], "producer": {"value": 2.0}})
    s = run_protocol(cfg, tmp_path, None, policy())
    assert [p["status"] for p in s["phases"]] == ["done", "done"]
    assert s["metrics"]["consumer.twice"] == 4.0 and s["status"] == "complete"
    assert s["gates"][0]["passed"] is True


def test_stop_gate_stops_the_protocol(tmp_path, fake_registry):
    cfg = run_config_from_dict({"phases": ["producer", "consumer"], "producer": {"value": 0.1}})
    s = run_protocol(cfg, tmp_path, None, policy())
    assert s["status"] == "stopped" and s["stopped_at"] == "producer"
    assert [p["status"] for p in s["phases"]] == ["done", "stopped"]
    assert fake.CALLS == ["producer"]


def test_warn_gate_does_not_stop(tmp_path, fake_registry):
    cfg = run_config_from_dict({"phases": ["producer", "consumer"], "producer": {"value": 0.1}})
    s = run_protocol(cfg, tmp_path, None, policy(action="warn"))
    assert s["status"] == "complete" and s["gates"][0]["passed"] is False


def test_failed_phase_is_recorded_and_dependants_skipped(tmp_path, fake_registry):
    cfg = run_config_from_dict({"phases": ["producer", "consumer"], "producer": {"fail": True}})
    s = run_protocol(cfg, tmp_path, None, policy(action="warn"))
    assert [p["status"] for p in s["phases"]] == ["failed", "skipped"]
    assert "fake lens failed on purpose" in s["phases"][0]["error"]
    assert s["status"] == "failed"
    assert s["gates"][0]["passed"] is None  # no evidence: not a pass


def test_declared_type_is_enforced(tmp_path, fake_registry):
    cfg = run_config_from_dict({"phases": ["producer"], "producer": {"wrong_type": True}})
    s = run_protocol(cfg, tmp_path, None, policy(action="warn"))
    assert s["phases"][0]["status"] == "failed" and "declared it produces" in s["phases"][0]["error"]


def test_typed_handoff_checked_before_running(tmp_path, fake_registry):
    with pytest.raises(ConfigError, match="consumes `fake.value` as int"):
        run_protocol(run_config_from_dict({"phases": ["producer", "badconsumer"]}), tmp_path, None, policy())
    with pytest.raises(ConfigError, match="no earlier phase produces"):
        run_protocol(run_config_from_dict({"phases": ["consumer", "producer"]}), tmp_path, None, policy())
    assert fake.CALLS == []


def test_phase_results_are_cached_across_reruns(tmp_path, fake_registry):
    cfg = run_config_from_dict({"phases": ["producer", "consumer"]})
    first = run_protocol(cfg, tmp_path, None, policy())
    second = run_protocol(cfg, tmp_path, None, policy())
    assert fake.CALLS == ["producer", "consumer"]
    assert [p["cached"] for p in second["phases"]] == [True, True]
    assert [p["cached_from"] for p in second["phases"]] == [None, None]
    assert first["metrics"] == second["metrics"]


def test_config_errors_name_the_key(fake_registry):
    with pytest.raises(ConfigError, match="unknown config key `producer.valu`"):
        run_config_from_dict({"phases": ["producer"], "producer": {"valu": 1}})
    with pytest.raises(ConfigError, match="unknown config key `phasess`"):
        run_config_from_dict({"phasess": ["producer"]})
    with pytest.raises(ConfigError, match="unknown lens `nope`"):
        run_config_from_dict({"phases": ["nope"]})
    with pytest.raises(ConfigError, match="not in `phases`"):
        run_config_from_dict({"phases": ["producer"], "consumer": {}})


def test_unstorable_output_fails_the_phase_instead_of_passing_silently(tmp_path, fake_registry, monkeypatch):
    from multilens.protocol.phase import LensPhase

    orig = LensPhase.run

    def run(self, ctx):
        out = orig(self, ctx)
        return (
            type(out)(out.result, {"fake.value": object()} | {}, out.metrics)
            if False
            else type(out)(out.result, {**out.artifacts, "extra": object()}, out.metrics)
        )

    monkeypatch.setattr(LensPhase, "run", run)
    s = run_protocol(run_config_from_dict({"phases": ["producer"]}), tmp_path, None, policy(action="warn"))
    assert s["phases"][0]["status"] == "failed" and "not JSON serializable" in s["phases"][0]["error"]


def test_non_json_handoff_type_is_rejected(tmp_path, fake_registry, monkeypatch):
    import dataclasses

    bad = dataclasses.replace(PRODUCER, produces={"fake.value": object})
    monkeypatch.setattr(registry, "LENSES", (bad, CONSUMER))
    with pytest.raises(ConfigError, match="hand-offs must be JSON types"):
        run_protocol(run_config_from_dict({"phases": ["producer"]}), tmp_path, None, policy())


def test_crashed_phase_fails_the_run_even_when_a_stop_gate_then_blocks(tmp_path, fake_registry):
    """Issue 8.1: a phase that raised makes the run `failed`, not `stopped`, whatever the gates do."""
    cfg = run_config_from_dict({"phases": ["producer", "consumer"], "producer": {"fail": True}})
    s = run_protocol(cfg, tmp_path, None, policy(action="stop"))
    assert s["status"] == "failed" and s["failed_phases"] == ["producer"]
    assert s["blocking_gates"] == ["value ok"]  # the stop gate saw no evidence and blocked too
    assert s["phases"][0]["missing_checks"] == ["v positive"]


def test_every_policy_gate_is_listed_when_the_protocol_stops(tmp_path, fake_registry):
    """Issue 8.8: gates of phases that did not run are listed as not evaluated, not dropped."""
    pol = policy_from_dict(
        {
            "gate": [
                {"name": "value ok", "kind": "threshold", "inputs": {"value": "metric:fake.value"}, "op": ">=",
                 "threshold": 0.5, "action": "stop", "phase": "producer"},
                {"name": "twice ok", "kind": "threshold", "inputs": {"value": "metric:consumer.twice"}, "op": ">=",
                 "threshold": 0.0, "action": "warn", "phase": "consumer"},
                {"name": "final", "kind": "threshold", "inputs": {"value": 1.0}, "op": ">=", "threshold": 0.0},
            ]
        }
    )  # fmt: skip
    cfg = run_config_from_dict({"phases": ["producer", "consumer"], "producer": {"value": 0.1}})
    s = run_protocol(cfg, tmp_path, None, pol)
    by = {g["name"]: g for g in s["gates"]}
    assert set(by) == {"value ok", "twice ok", "final"}
    assert by["value ok"]["passed"] is False
    assert by["twice ok"]["passed"] is None and "phase `consumer` stopped" in by["twice ok"]["reason"]
    assert by["final"]["passed"] is None and by["final"]["skipped"] is True
    assert s["status"] == "stopped" and s["blocking_gates"] == ["value ok"]


def test_gate_can_read_the_least_favourable_end_of_an_interval(tmp_path, fake_registry):
    """Issue 8.8: `use = "ci_low"` reads metric_ci_low; a metric without it leaves the gate not evaluated."""
    pol = policy_from_dict(
        {"gate": [{"name": "low end", "kind": "threshold", "inputs": {"value": "metric:fake.value"}, "op": ">=",
                   "threshold": 0.5, "action": "warn", "phase": "producer", "use": "ci_low"}]}
    )  # fmt: skip
    s = run_protocol(run_config_from_dict({"phases": ["producer"]}), tmp_path, None, pol)
    assert s["gates"][0]["passed"] is None and "fake.value_ci_low" in s["gates"][0]["reason"]
    from multilens.protocol.gates import evaluate_gate

    g = evaluate_gate(pol.gates[0], {"fake.value": 1.0, "fake.value_ci_low": 0.4})
    assert g.passed is False and g.value == 0.4


def test_stale_cache_is_recomputed_or_marked(tmp_path, fake_registry, monkeypatch):
    """Issue 8.9: a cached phase from other code is recomputed; with reuse_stale it is marked."""
    from multilens.experiments import store as store_mod

    cfg = run_config_from_dict({"phases": ["producer"]})
    run_protocol(cfg, tmp_path, None, policy())
    assert fake.CALLS == ["producer"]
    orig_init = store_mod.Store.__init__

    def other_code(self, path, *, reuse_stale=False, code=None):
        orig_init(self, path, reuse_stale=reuse_stale,
                  code={"source_hash": "0" * 16, "git_commit": "feedbeef", "version": "x"})  # fmt: skip

    monkeypatch.setattr(store_mod.Store, "__init__", other_code)
    reused = run_protocol(cfg, tmp_path, None, policy(), reuse_stale=True)
    assert fake.CALLS == ["producer"]  # reused, not recomputed
    assert reused["phases"][0]["cached"] is True and reused["phases"][0]["cached_from"]
    again = run_protocol(cfg, tmp_path, None, policy())
    assert fake.CALLS == ["producer", "producer"]  # stale: recomputed
    assert again["phases"][0]["cached"] is False and again["phases"][0]["cached_from"] is None
