"""Building blocks of the distributed lens, in one process: modes, partitions, timing models, config."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from multilens.config import from_dict
from multilens.errors import ConfigError
from multilens.lenses.distributed import Settings
from multilens.lenses.distributed.faults import summarize_fault
from multilens.lenses.distributed.modes import (
    DelayBuffer,
    DelaySampler,
    ErrorFeedback,
    average_gradients,
    compressed_average,
    delayed_average,
    realized_histogram,
)
from multilens.lenses.distributed.problems import heterogeneous_partition
from multilens.lenses.distributed.timing import (
    LocalComm,
    fit_compute_model,
    fit_ring_model,
    ring_allreduce_bytes,
    split_idle,
    time_to_target,
)
from multilens.lenses.distributed.worker import json_safe
from multilens.stats import batch_means_ci

# ---------------------------------------------------------------------------------------------
# modes
# ---------------------------------------------------------------------------------------------


def test_delay_buffer_applies_every_gradient_once_tau_steps_late() -> None:
    buf = DelayBuffer()
    taus = [2, 0, 1, 0, 3, 0, 0, 0]
    applied = {}
    for t, tau in enumerate(taus):
        buf.push(t, torch.tensor([float(10**t)]), tau)
        applied[t] = float(buf.pop(t, torch.zeros(1)))
    # gradient pushed at t with delay tau arrives at t + tau (sums when several are due)
    want = {t: 0.0 for t in range(len(taus))}
    for t, tau in enumerate(taus):
        if t + tau < len(taus):
            want[t + tau] += 10.0**t
    assert applied == want
    assert sorted(buf.realized) == sorted(tau for t, tau in enumerate(taus) if t + tau < len(taus))
    assert buf.pending == sum(t + tau >= len(taus) for t, tau in enumerate(taus))


def test_delay_zero_is_synchronous_averaging() -> None:
    comm = LocalComm()
    g = torch.tensor([1.0, -2.0, 3.0])
    out = delayed_average(comm, DelayBuffer(), 0, g.clone(), 0)
    torch.testing.assert_close(out, average_gradients(LocalComm(), g.clone()))


def test_delay_sampler_follows_its_stated_pmf(seed: int) -> None:
    for kind in ("uniform", "geometric"):
        smp = DelaySampler(kind, 3, seed, p=0.4)
        draws = [smp.draw() for _ in range(4000)]
        counts = realized_histogram(draws, 3)
        assert stats.chisquare(counts, 4000 * smp.pmf).pvalue > 1e-4
    assert DelaySampler("uniform", 0, seed).draw() == 0


@pytest.mark.parametrize("kind", ["topk", "randk"])
def test_error_feedback_conserves_the_gradient_mass(kind: str, seed: int) -> None:
    """sum of what was sent + final memory == sum of all gradients (nothing is lost, only delayed)."""
    gen = torch.Generator().manual_seed(seed)
    ef = ErrorFeedback(kind, 0.25, seed)
    sent, total = torch.zeros(40, dtype=torch.float64), torch.zeros(40, dtype=torch.float64)
    for t in range(15):
        g = torch.randn(40, generator=gen, dtype=torch.float64)
        total += g
        out = compressed_average(LocalComm(), ef, t, g)
        assert int((out != 0).sum()) <= ef.k(40)
        sent += out
    assert ef.memory is not None
    torch.testing.assert_close(sent + ef.memory, total, rtol=0, atol=1e-12)


def test_topk_at_ratio_one_sends_the_gradient_exactly() -> None:
    g = torch.linspace(-1, 1, 11, dtype=torch.float64)
    out = compressed_average(LocalComm(), ErrorFeedback("topk", 1.0, 0), 0, g.clone())
    torch.testing.assert_close(out, g, rtol=0, atol=0)


def test_error_feedback_rejects_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="`ratio` must be in"):
        ErrorFeedback("topk", 0.0, 0)
    with pytest.raises(ConfigError, match="`kind` must be"):
        ErrorFeedback("signsgd", 0.5, 0)


# ---------------------------------------------------------------------------------------------
# partitions
# ---------------------------------------------------------------------------------------------


def test_partition_is_equal_disjoint_and_sorted_at_full_heterogeneity(rng: np.random.Generator) -> None:
    scores = rng.standard_normal(103)
    for h in (0.0, 0.5, 1.0):
        parts = heterogeneous_partition(scores, 4, h, 7)
        assert [p.size for p in parts] == [25] * 4
        allidx = np.concatenate(parts)
        assert np.unique(allidx).size == allidx.size
    parts = heterogeneous_partition(scores, 4, 1.0, 7)
    for a, b in zip(parts, parts[1:]):
        assert scores[a].max() <= scores[b].min()
    # h = 0 is an IID split: shard means agree within a few standard errors
    parts = heterogeneous_partition(scores, 4, 0.0, 7)
    means = np.array([scores[p].mean() for p in parts])
    assert np.all(np.abs(means - scores.mean()) < 4 * scores.std() / math.sqrt(25))
    with pytest.raises(ConfigError, match="`h` must be a number in"):
        heterogeneous_partition(scores, 4, 1.5, 7)


# ---------------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------------


def test_split_idle_separates_waiting_from_transfer() -> None:
    compute = np.array([[1.0, 2.0], [3.0, 2.0]])  # (ranks, calls)
    coll = np.array([[2.5, 0.5], [0.5, 0.5]])  # rank 0 waited 2 s for rank 1 in call 0
    idle, comm = split_idle(compute, coll)
    np.testing.assert_allclose(idle, [[2.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(comm, [[0.5, 0.5], [0.5, 0.5]])
    assert ring_allreduce_bytes(1000, 4) == 1500.0 and ring_allreduce_bytes(1000, 1) == 0.0


def test_ring_fit_recovers_latency_and_bandwidth(rng: np.random.Generator) -> None:
    a, bw = 2e-4, 1e9
    ms, ps, ts = [], [], []
    for m in (2, 4):
        for p in (1e3, 1e5, 1e6, 4e6):
            for _ in range(15):
                ms.append(m)
                ps.append(p)
                ts.append((a + 2 * (m - 1) / m * p / bw) * (1 + 0.05 * rng.standard_normal()))
    fit = fit_ring_model(np.array(ms), np.array(ps), np.array(ts), 1, n_boot=300)
    assert fit.latency_ci[0] <= a <= fit.latency_ci[1]
    assert fit.bandwidth_ci[0] is not None and fit.bandwidth_ci[0] <= bw <= (fit.bandwidth_ci[1] or math.inf)
    assert fit.r2 > 0.99
    assert fit.predict(1, 1e6) == 0.0
    with pytest.raises(ConfigError, match="at least 3 measurements"):
        fit_ring_model(np.array([2, 2]), np.array([1e3, 1e3]), np.array([1e-3, 1e-3]), 1)


def test_compute_fit_recovers_its_parameters(rng: np.random.Generator) -> None:
    c0, c1, cores = 1e-3, 8e-3, 2
    samples = {m: (c0 + c1 / m) * max(1, m / cores) * (1 + 0.02 * rng.standard_normal(200)) for m in (1, 2, 4)}
    fit = fit_compute_model(samples, cores, 3, n_boot=200)
    assert fit.c0_ci[0] <= c0 <= fit.c0_ci[1] and fit.c1_ci[0] <= c1 <= fit.c1_ci[1]
    assert fit.predict(4) == pytest.approx((fit.c0_s + fit.c1_s / 4) * 2)


def test_batch_means_interval_has_its_coverage_on_autocorrelated_data(rng: np.random.Generator) -> None:
    """AR(1) series (phi = 0.5): the batch-means 95% interval should cover the true mean ~95% of the time."""
    hits, trials = 0, 300
    for _ in range(trials):
        e = rng.standard_normal(1000)
        x = np.empty(1000)
        x[0] = e[0]
        for i in range(1, 1000):
            x[i] = 0.5 * x[i - 1] + e[i]
        ci = batch_means_ci(x + 3.0, n_batches=10)
        hits += ci.low <= 3.0 <= ci.high
    se = math.sqrt(0.95 * 0.05 / trials)
    assert abs(hits / trials - 0.95) < 4 * se


def test_time_to_target_is_bracketed_by_evaluations() -> None:
    assert time_to_target([0.0, 1.0, 2.0, 3.0], [5.0, 3.0, 1.0, 0.5], 2.0) == (2.0, 1.0, 2.0)
    assert time_to_target([0.0, 1.0], [5.0, 3.0], 1.0) == (None, None, None)


def test_local_comm_records_and_pauses() -> None:
    comm = LocalComm()
    comm.start()
    comm.allreduce_sum(torch.ones(10))
    with comm.paused():
        pass
    assert len(comm.log.step) == 1 and comm.log.moved_bytes == [0.0] and comm.log.payload_bytes == [40]


def test_json_safe_replaces_non_finite_values() -> None:
    assert json_safe({"a": [1.0, math.nan, math.inf], "b": (2, "x")}) == {"a": [1.0, None, None], "b": [2, "x"]}


def test_fault_summary_from_records() -> None:
    outs = ({"fault_event": {"detected": True, "step": 5, "latency_s": 0.05, "error": "RuntimeError: reset"}}, None)
    ev = summarize_fault("exit", 1, 5, 3.0, outs, (3, 17), (), (), 1.0, (11, 12))
    assert ev.detected and ev.detected_by == (0,) and ev.clean_exits and ev.detect_latency_s == 0.05
    ev = summarize_fault("hang", 1, 5, 3.0, ({}, None), (None, None), (0, 1), (), 9.0)
    assert not ev.detected and not ev.clean_exits


# ---------------------------------------------------------------------------------------------
# config
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"noise_floor": {"workers": [0]}}, "`noise_floor.workers[0]` must be an int >= 1; got 0."),
        ({"noise_floor": {"workers": []}}, "`noise_floor.workers` must be a non-empty list"),
        ({"local_sgd": {"local_steps": [0, 2]}}, "`local_sgd.local_steps[0]` must be an int >= 1; got 0."),
        ({"modes": {"local_steps": [1]}}, "`modes.local_steps[0]` must be an int >= 2; got 1."),
        ({"local_sgd": {"steps": 100}}, "`local_sgd.steps` must be a multiple of every K"),
        ({"timing": {"global_batch": 1022}}, "`timing.global_batch` must be a multiple of every worker count"),
        ({"noise_floor": {"eta_l": 2.5}}, "`noise_floor.eta_l` must be in (0, 2)"),
        ({"local_sgd": {"heterogeneity": [1.5]}}, "`local_sgd.heterogeneity[0]` must be a number in [0, 1]"),
        ({"modes": {"compression": ["zip"]}}, "`modes.compression[0]` must be one of 'topk', 'randk'"),
        ({"faults": {"kinds": ["segfault"]}}, "`faults.kinds[0]` must be one of 'exit', 'hang'"),
        ({"backend": "mpi"}, "`backend` must be one of 'auto', 'gloo', 'nccl'"),
        ({"noise_floor": {"replicas": 1}}, "`noise_floor.replicas` must be an int >= 2; got 1."),
        ({"parity": {"workers": [1]}}, "`parity.workers[0]` must be an int >= 2; got 1."),
        ({"workerz": [1]}, "unknown config key `workerz`"),
        ({"timing": {"workerz": [1]}}, "unknown config key `timing.workerz`"),
    ],
)
def test_bad_settings_raise_one_line_config_error(override: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_dict(Settings, override, base=Settings.for_profile("quick"))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_profiles_overrides_and_parts_switched_off() -> None:
    for profile in ("smoke", "quick", "full"):
        s = Settings.for_profile(profile)
        assert s.schema_version == 1 and all(
            getattr(s, p) is not None
            for p in ("parity", "noise_floor", "local_sgd", "staleness", "timing", "modes", "faults")
        )
    s = from_dict(Settings, {"timing": {"workers": [1, 2]}, "faults": False}, base=Settings.for_profile("quick"))
    assert s.timing is not None and s.timing.workers == (1, 2) and s.faults is None
    assert s.timing.steps == Settings.for_profile("quick").timing.steps  # the rest of the table is the profile's
    with pytest.raises(ConfigError, match="`profile` must be one of"):
        Settings.for_profile("huge")
