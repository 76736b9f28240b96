"""Job files for the workers: which process groups to create and which tasks each group runs.

A job is plain JSON (a dict), the only thing the launcher (or torchrun) hands a worker besides
its environment. Every part contributes its tasks (each carrying the part's own ``seed``, so a
part's numbers do not depend on which other parts run); :func:`main_job` puts the tasks of every
part that is switched on into ONE launch of max(group size) processes. A task for m workers runs
on the process group of ranks 0..m-1 while the other ranks wait in a barrier, so the costly
start of the processes (importing torch) is paid once. :func:`fault_job` is a separate small
launch per injected fault, because a fault breaks its process group for good.
"""

from __future__ import annotations

from typing import Any

from multilens.lenses.distributed.problems import make_least_squares_shards
from multilens.lenses.distributed.settings import (
    FaultSettings,
    LocalSgdSettings,
    ModesSettings,
    NoiseFloorSettings,
    ParitySettings,
    Settings,
    StalenessSettings,
    TimingSettings,
)
from multilens.seeding import derive_seed


def resolve_backend(name: str) -> str:
    """ "auto" is NCCL when CUDA is available (one GPU per rank), else gloo."""
    if name != "auto":
        return name
    import torch

    return "nccl" if torch.cuda.is_available() else "gloo"


def _model_task(problem: dict[str, Any], seed: int, lr: float, batch_key: str) -> dict[str, Any]:
    """What every task training the subject carries: the builder, its seed, and a batch seed."""
    return {
        "seed": seed,
        "problem": problem,
        "problem_seed": derive_seed(seed, "problem"),
        "batch_seed": derive_seed(seed, batch_key),
        "lr": lr,
    }


# ---------------------------------------------------------------------------------------------
# Per-part tasks
# ---------------------------------------------------------------------------------------------


def parity_tasks(ps: ParitySettings, seed: int, problem: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "name": f"parity_m{m}",
            "kind": "mlp_parity",
            "ranks": list(range(m)),
            **_model_task(problem, seed, ps.lr, "batches"),
            "steps": ps.steps,
            "batch": ps.batch,
            "dtype": "float64",
        }
        for m in sorted(ps.workers)
    ]


def quadratic_seed(seed: int) -> int:
    return derive_seed(seed, "quadratic")


def noise_variants(ps: NoiseFloorSettings, with_delays: bool) -> list[dict[str, Any]]:
    """The synchronous variant, plus (at delay_workers) constant and random delays."""
    out: list[dict[str, Any]] = [{"name": "sync", "delay": "none"}]
    if with_delays:
        for tau in ps.delay_taus:
            out.append({"name": f"const{tau}", "delay": "const", "tau": tau})
        if ps.delay_tau_max > 0:
            out.append(
                {"name": ps.delay_dist, "delay": ps.delay_dist, "tau_max": ps.delay_tau_max, "p": ps.delay_geometric_p}
            )
    return out


def noise_sizes(ps: NoiseFloorSettings) -> list[int]:
    return sorted(set(ps.workers) | ({ps.delay_workers} if ps.with_delays else set()))


def noise_tasks(ps: NoiseFloorSettings, seed: int) -> list[dict[str, Any]]:
    quad = {
        "seed": seed,
        "dim": ps.dim,
        "kappa": ps.kappa,
        "init_dist": ps.init_dist,
        "problem_seed": quadratic_seed(seed),
        "eta": ps.eta_l,
        "sigma2": ps.sigma2,
        "replicas": ps.replicas,
        "steps": ps.steps,
        "burn_in": ps.burn_in,
    }
    return [
        {
            "name": f"noise_m{m}",
            "kind": "quad_noise",
            "ranks": list(range(m)),
            **quad,
            "variants": noise_variants(ps, ps.with_delays and m == ps.delay_workers),
        }
        for m in noise_sizes(ps)
    ]


def shards_seed(seed: int) -> int:
    return derive_seed(seed, "shards")


def drift_eta(ps: LocalSgdSettings, seed: int) -> float:
    """Local-GD step size: eta_l over the largest shard curvature at any heterogeneity level."""
    shards = make_least_squares_shards(ps.dim, ps.workers, ps.rows_per_worker, ps.heterogeneity, shards_seed(seed))
    return ps.eta_l / shards.max_local_curvature


def local_sgd_tasks(ps: LocalSgdSettings, seed: int) -> list[dict[str, Any]]:
    return [
        {
            "name": "local_drift",
            "kind": "quad_local",
            "seed": seed,
            "ranks": list(range(ps.workers)),
            "dim": ps.dim,
            "rows_per_worker": ps.rows_per_worker,
            "levels": list(ps.heterogeneity),
            "problem_seed": shards_seed(seed),
            "eta": drift_eta(ps, seed),
            "steps": ps.steps,
            "ks": list(ps.local_steps),
        }
    ]


def stale_eta(ps: StalenessSettings) -> float:
    return ps.eta_l / max(ps.kappas)


def staleness_tasks(ps: StalenessSettings, seed: int) -> list[dict[str, Any]]:
    return [
        {
            "name": "staleness",
            "kind": "quad_stale",
            "seed": seed,
            "ranks": list(range(ps.workers)),
            "dim": ps.dim,
            "kappas": list(ps.kappas),
            "taus": list(ps.taus),
            "eta": stale_eta(ps),
            "steps": ps.steps,
            "init_dist": ps.init_dist,
            "problem_seed": derive_seed(seed, "stale"),
        }
    ]


def timing_tasks(ps: TimingSettings, seed: int, problem: dict[str, Any]) -> list[dict[str, Any]]:
    """Per m: the all-reduce size sweep, a fit run and a held-out run (another batch seed); a straggler."""
    tasks: list[dict[str, Any]] = []
    for m in sorted(ps.workers):
        ranks = list(range(m))
        if m > 1:
            tasks.append(
                {
                    "name": f"sweep_m{m}",
                    "kind": "comm_sweep",
                    "seed": seed,
                    "ranks": ranks,
                    "sizes_bytes": list(ps.comm_sizes_bytes),
                    "reps": ps.comm_reps,
                }
            )
        for run, steps in (("fit", ps.fit_steps), ("heldout", ps.steps)):
            tasks.append(
                {
                    "name": f"sync_{run}_m{m}",
                    "kind": "mlp_train",
                    "ranks": ranks,
                    **_model_task(problem, seed, ps.lr, f"batches-{run}"),
                    "mode": "sync",
                    "sampler": "global",
                    "steps": steps,
                    "batch": ps.global_batch,
                    "eval_every": 0,
                }
            )
    sw = ps.straggler_workers
    if sw >= 2:
        tasks.append(
            {
                "name": f"straggler_baseline_m{sw}",
                "kind": "mlp_train",
                "ranks": list(range(sw)),
                **_model_task(problem, seed, ps.lr, "batches-straggler"),
                "mode": "sync",
                "sampler": "global",
                "steps": ps.straggler_steps,
                "batch": ps.global_batch,
                "eval_every": 0,
            }
        )
        tasks.append(
            tasks[-1] | {"name": f"straggler_m{sw}", "straggler": {"rank": sw - 1, "sleep_s": ps.straggler_sleep_s}}
        )
    return tasks


def modes_runs(ps: ModesSettings) -> list[dict[str, Any]]:
    """The training modes compared at ``ps.workers``, all on non-IID shards at ``ps.heterogeneity``."""
    runs: list[dict[str, Any]] = [{"label": "sync", "mode": "sync"}]
    runs += [{"label": f"local K={k}", "mode": "local", "k": k} for k in ps.local_steps]
    if ps.stale_tau_max > 0:
        runs.append(
            {
                "label": f"stale {ps.stale_dist} tau<={ps.stale_tau_max}",
                "mode": "stale",
                "tau_kind": ps.stale_dist,
                "tau_max": ps.stale_tau_max,
                "p": ps.stale_geometric_p,
            }
        )
    runs += [
        {"label": f"{c} {ps.compression_ratio:g}", "mode": c, "ratio": ps.compression_ratio} for c in ps.compression
    ]
    return runs


def modes_tasks(ps: ModesSettings, seed: int, problem: dict[str, Any]) -> list[dict[str, Any]]:
    common = _model_task(problem, seed, ps.lr, "batches")
    return [
        {
            "name": f"mode{i}",
            "kind": "mlp_train",
            "ranks": list(range(ps.workers)),
            **common,
            **{k: v for k, v in run.items() if k != "label"},
            "label": run["label"],
            "sampler": "shard",
            "heterogeneity": ps.heterogeneity,
            "steps": ps.steps,
            "batch": ps.global_batch,
            "eval_every": ps.eval_every,
        }
        for i, run in enumerate(modes_runs(ps))
    ]


# ---------------------------------------------------------------------------------------------
# Jobs
# ---------------------------------------------------------------------------------------------


def main_job(settings: Settings, seed: int, tasks: list[dict[str, Any]]) -> dict[str, Any]:
    """One launch running ``tasks`` (of every part switched on) on groups of ranks 0..m-1."""
    sizes = sorted({len(t["ranks"]) for t in tasks})
    return {
        "seed": seed,
        "backend": resolve_backend(settings.backend),
        "timeout_s": settings.collective_timeout_s,
        "threads": 1,
        "groups": [list(range(m)) for m in sizes],
        "tasks": tasks,
    }


def fault_job(ps: FaultSettings, settings: Settings, seed: int, kind: str, problem: dict[str, Any]) -> dict[str, Any]:
    """Synchronous training of the subject on ``ps.workers`` ranks; the last rank fails at ``ps.step``."""
    m = ps.workers
    task = {
        "name": f"fault_{kind}",
        "kind": "mlp_train",
        "ranks": list(range(m)),
        **_model_task(problem, seed, ps.lr, "batches"),
        "mode": "sync",
        "sampler": "global",
        "steps": ps.step + 10,
        "batch": ps.batch,
        "eval_every": 0,
        "fault": {"kind": kind, "rank": m - 1, "step": ps.step},
    }
    return {
        "seed": seed,
        "backend": resolve_backend(settings.backend),
        "timeout_s": settings.collective_timeout_s,  # start-up (rendezvous) may be slow on a loaded machine
        "group_timeout_s": ps.timeout_s,  # the training group detects a hung peer this fast
        "threads": 1,
        "groups": [list(range(m))],
        "tasks": [task],
    }
