"""Sweeps through the real executors: resume, failure isolation, and identical numbers on Ray."""

from __future__ import annotations

import pytest
import torch

from multilens.errors import ConfigError
from multilens.experiments.executors import LocalExecutor, RayExecutor, chunks, execute_task, make_executor
from multilens.experiments.store import Store
from multilens.experiments.sweep import run_sweep
from multilens.lenses.scaling.study import TASK, ScalingConfig, design


def tiny_configs(n: int = 3) -> list[dict]:
    cfg = ScalingConfig(budgets=(2e5, 4e5, 8e5), widths=(2, 4, 8), min_examples=64, max_examples=4096, n_test=256)
    return design(cfg)[:n]


def _metrics(store: Store) -> dict:
    return {
        (r.config_hash, r.seed): {k: v for k, v in r.metrics.items() if not k.endswith("wall_time_s")}
        for r in store.runs(status="done")
    }


def test_local_sweep_resumes_without_recomputing(tmp_path):
    cfgs = tiny_configs(3)
    ex = LocalExecutor(workers=2)
    try:
        with Store(tmp_path / "r.sqlite") as s:
            rep = run_sweep("t", TASK, cfgs[:2], [0, 1], s, ex)
            assert (rep.total, rep.executed, rep.failed) == (4, 4, 0)
            before = s.raw_rows()
            # Simulate a run killed mid-way: it stays `running` and must be redone, not duplicated.
            s.mark_running("deadbeef", 0, "t", {"x": 1})
            rep2 = run_sweep("t", TASK, cfgs, [0, 1], s, ex)
            assert (rep2.skipped_done, rep2.executed) == (4, 2)
            after = s.raw_rows()
            assert [r for r in after if (r[0], r[1]) in {(b[0], b[1]) for b in before}] == before
            assert len(after) == 7 and s.counts() == {"done": 6, "running": 1}
    finally:
        ex.close()


def test_failing_run_is_recorded_and_does_not_stop_the_sweep(tmp_path):
    good = tiny_configs(1)[0]
    bad = dict(good, D=0)  # TeacherStudentTask.sample rejects n=0
    ex = LocalExecutor(workers=1)
    try:
        with Store(tmp_path / "r.sqlite") as s:
            rep = run_sweep("t", TASK, [bad, good], [0], s, ex)
            assert rep.failed == 1
            failed = s.runs(status="failed")
            assert len(failed) == 1 and "`n` must be an int >= 1" in failed[0].error
            assert len(s.runs(status="done")) == 1
    finally:
        ex.close()


def test_in_process_and_pool_give_identical_numbers(tmp_path):
    cfg = tiny_configs(1)[0]
    direct = execute_task(TASK, dict(cfg, seed=3))["result"]["metrics"]
    ex = LocalExecutor(workers=1)
    try:
        ((_, out),) = list(ex.map_unordered(TASK, [dict(cfg, seed=3)]))
    finally:
        ex.close()
    strip = lambda m: {k: v for k, v in m.items() if not k.endswith("wall_time_s")}  # noqa: E731
    assert strip(out["result"]["metrics"]) == strip(direct)


@pytest.mark.ray
def test_ray_sweep_matches_local(tmp_path):
    pytest.importorskip("ray")
    cfgs = tiny_configs(2)
    local = LocalExecutor(workers=2)
    try:
        with Store(tmp_path / "local.sqlite") as s:
            run_sweep("t", TASK, cfgs, [0, 1], s, local)
            want = _metrics(s)
    finally:
        local.close()
    ray_ex = RayExecutor(workers=2)
    try:
        with Store(tmp_path / "ray.sqlite") as s:
            rep = run_sweep("t", TASK, cfgs, [0, 1], s, ray_ex)
            assert rep.failed == 0
            got = _metrics(s)
    finally:
        ray_ex.close()
    assert got == want and len(got) == 4


def threads_task(spec: dict) -> dict:
    """A task that reports the torch thread count it ran with."""
    return {"metrics": {"threads": torch.get_num_threads()}, "curves": {}}


def test_execute_task_in_process_leaves_the_callers_torch_threads_alone():
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        out = execute_task(f"{__name__}:threads_task", {"seed": 0})
        assert out["ok"] and out["result"]["metrics"]["threads"] == 1  # the workers' setting, for this call
        assert torch.get_num_threads() == 3  # restored
        failing = execute_task(TASK, {"seed": 0})  # a task that raises restores it too
        assert not failing["ok"] and torch.get_num_threads() == 3
        out = execute_task(f"{__name__}:threads_task", {"seed": 0}, threads=None)
        assert out["result"]["metrics"]["threads"] == 3 and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_chunks_are_strided_and_cover_every_run_once():
    assert chunks(0, 2) == []
    assert chunks(10, 2, 3) == [[0, 4, 8], [1, 5, 9], [2, 6], [3, 7]]
    for n, w, size in ((24, 2, None), (7, 4, None), (5, 1, 10), (24, 2, 1)):
        cs = chunks(n, w, size)
        assert sorted(i for c in cs for i in c) == list(range(n))
        assert max(len(c) for c in cs) - min(len(c) for c in cs) <= 1
    assert len(chunks(24, 2)) == 8  # about four chunks per worker
    with pytest.raises(ConfigError, match="chunk_size"):
        LocalExecutor(workers=1, chunk_size=0)
    with pytest.raises(ConfigError, match="token"):
        make_executor("local", 1, token="x")


def _makespan(cs: list[list[int]], costs: list[float], workers: int) -> float:
    """Wall time of list scheduling: each chunk, in submission order, goes to the first free worker."""
    free = [0.0] * workers
    for c in cs:
        k = free.index(min(free))
        free[k] += sum(costs[i] for i in c)
    return max(free)


def test_costs_start_the_longest_runs_first_in_guided_chunks():
    # Exact chunks: the 5 alone; then runs are batched while the chunk stays under remaining / (4 workers).
    # Total 16: target 4 takes the 8 alone; then 8 / 4 = 2 takes two 1s; then 6 / 4 = 1.5 takes one; ...
    assert chunks(9, 1, costs=[1] * 8 + [8]) == [[8], [0, 1], [2], [3], [4], [5], [6], [7]]
    assert chunks(9, 1, 1, costs=[1] * 8 + [8]) == [[8]] + [[i] for i in range(8)]  # chunk_size caps it
    for n, w in ((24, 2), (62, 2), (7, 4)):
        costs = [float((7 * i) % 11 + 1) for i in range(n)]
        cs = chunks(n, w, costs=costs)
        assert sorted(i for c in cs for i in c) == list(range(n))
        firsts = [costs[c[0]] for c in cs]
        assert firsts == sorted(firsts, reverse=True)  # longest first
    # One long run at the end of the sweep: in sweep order it starts late and sets the wall time; cost-aware
    # scheduling starts it first and reaches the lower bound max(total / workers, longest run) exactly.
    costs = [1.0] * 20 + [10.0]
    assert _makespan(chunks(21, 2), costs, 2) >= 19.0
    assert _makespan(chunks(21, 2, costs=costs), costs, 2) == 15.0
    with pytest.raises(ConfigError, match="costs"):
        chunks(3, 2, costs=[1.0])


def test_warm_pool_is_reused_across_sweeps_and_chunking_does_not_change_numbers(tmp_path):
    cfgs = tiny_configs(2)
    specs = [dict(c, seed=s) for c in cfgs for s in (0, 1)]
    strip = lambda m: {k: v for k, v in m.items() if not k.endswith("wall_time_s")}  # noqa: E731
    direct = [strip(execute_task(TASK, sp)["result"]["metrics"]) for sp in specs]
    for workers, size in ((2, 1), (1, None)):
        ex = LocalExecutor(workers=workers, chunk_size=size)
        try:
            pids = ex.warm(TASK)
            assert len(pids) == workers
            for costs in (None, [1.0, 5.0, 2.0, 9.0]):  # two sweeps through one executor; run-time estimates
                got = dict(ex.map_unordered(TASK, specs, costs))  # change the order, never the numbers
                assert sorted(got) == list(range(len(specs)))
                assert all(o["ok"] for o in got.values())
                assert {o["pid"] for o in got.values()} <= set(pids)
                assert [strip(got[i]["result"]["metrics"]) for i in range(len(specs))] == direct
        finally:
            ex.close()


def test_run_cost_orders_the_sweep_and_a_cost_aware_sweep_stores_the_same_numbers(tmp_path):
    from multilens.lenses.scaling.study import run_cost

    assert run_cost({"N": 0, "D": 100}) == 100.0 and run_cost({"N": 1e4, "D": 100}) == 200.0
    assert run_cost({"width": 3}) == 1.0  # no N, D: every run alike
    cfgs = tiny_configs(3)
    ex = LocalExecutor(workers=2)
    try:
        with Store(tmp_path / "a.sqlite") as a, Store(tmp_path / "b.sqlite") as b:
            run_sweep("t", TASK, cfgs, [0, 1], a, ex)
            run_sweep("t", TASK, cfgs, [0, 1], b, ex, cost=run_cost)
            assert _metrics(a) == _metrics(b) and len(_metrics(a)) == 6
    finally:
        ex.close()
