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

M = "_fake_lens"


@pytest.fixture
def fake_registry(monkeypatch):
    entries = (
        LensEntry("producer", "producer", f"{M}:FakeConfig", f"{M}:run_fake", f"{M}:ProducerPhase", "p"),
        LensEntry("consumer", "consumer", f"{M}:FakeConfig", f"{M}:run_fake", f"{M}:ConsumerPhase", "c"),
        LensEntry("badconsumer", "badconsumer", f"{M}:FakeConfig", f"{M}:run_fake", f"{M}:BadConsumerPhase", "b"),
    )
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
    monkeypatch.setattr(fake.ProducerPhase, "produces", {"fake.value": float})
    orig = fake.ProducerPhase.run

    def run(self, ctx):
        out = orig(self, ctx)
        return type(out)(out.result, out.artifacts, {"fake.value": 1.0, "bad": object()}, out.recommendations)

    monkeypatch.setattr(fake.ProducerPhase, "run", run)
    s = run_protocol(run_config_from_dict({"phases": ["producer"]}), tmp_path, None, policy(action="warn"))
    assert s["phases"][0]["status"] == "failed" and "not JSON serializable" in s["phases"][0]["error"]


def test_non_json_handoff_type_is_rejected(tmp_path, fake_registry, monkeypatch):
    monkeypatch.setattr(fake.ProducerPhase, "produces", {"fake.value": object})
    with pytest.raises(ConfigError, match="hand-offs must be JSON types"):
        run_protocol(run_config_from_dict({"phases": ["producer"]}), tmp_path, None, policy())
