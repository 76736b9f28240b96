"""Job files for the workers: which process groups to create and which tasks each group runs.

A job is plain JSON (a dict), the only thing the launcher (or torchrun) hands a worker besides
its environment. :func:`main_job` runs every measurement in ONE launch of max(workers)
processes: a task for m workers runs on the process group of ranks 0..m-1 while the other ranks
wait in a barrier (blocked in the kernel, they use no CPU), so the costly start of the
processes (importing torch) is paid once. :func:`fault_job` is a separate small launch per
injected fault, because a fault breaks its process group for good.
"""

from __future__ import annotations

from typing import Any

from multilens.lenses.distributed.config import DistributedConfig
from multilens.lenses.distributed.problems import make_least_squares_shards
from multilens.seeding import derive_seed


def resolve_backend(name: str) -> str:
    """ "auto" is NCCL when CUDA is available (one GPU per rank), else gloo."""
    if name != "auto":
        return name
    import torch

    return "nccl" if torch.cuda.is_available() else "gloo"


def problem_seeds(seed: int) -> dict[str, int]:
    """Seeds of the problems, shared by the parent (predictions) and the workers (training)."""
    return {
        k: derive_seed(seed, "distributed", k)
        for k in ("quadratic", "shards", "stale", "data", "init", "batches", "fault")
    }


def drift_eta(cfg: DistributedConfig, seed: int) -> float:
    """Local-GD step size: eta_l over the largest shard curvature at any heterogeneity level."""
    s = problem_seeds(seed)
    shards = make_least_squares_shards(cfg.dim, cfg.modes_workers, cfg.rows_per_worker, cfg.heterogeneity, s["shards"])
    return cfg.eta_l / shards.max_local_curvature


def _mlp_common(cfg: DistributedConfig, seed: int) -> dict[str, Any]:
    s = problem_seeds(seed)
    return {
        "widths": list(cfg.mlp_widths),
        "lr": cfg.lr,
        "data_seed": s["data"],
        "init_seed": s["init"],
        "batch_seed": s["batches"],
    }


def noise_variants(cfg: DistributedConfig, with_delays: bool) -> list[dict[str, Any]]:
    """The synchronous variant, plus (at modes_workers) constant and random delays up to tau_max."""
    out: list[dict[str, Any]] = [{"name": "sync", "delay": "none"}]
    if with_delays:
        for tau in cfg.stale_taus:
            if 0 < tau <= cfg.stale_tau_max:
                out.append({"name": f"const{tau}", "delay": "const", "tau": tau})
        if cfg.stale_tau_max > 0:
            out.append(
                {
                    "name": cfg.stale_dist,
                    "delay": cfg.stale_dist,
                    "tau_max": cfg.stale_tau_max,
                    "p": cfg.stale_geometric_p,
                }
            )
    return out


def modes_runs(cfg: DistributedConfig) -> list[dict[str, Any]]:
    """The training modes compared at modes_workers, all on non-IID shards at mlp_heterogeneity."""
    runs: list[dict[str, Any]] = [{"label": "sync", "mode": "sync"}]
    runs += [{"label": f"local K={k}", "mode": "local", "k": k} for k in cfg.mlp_local_steps if k > 1]
    if cfg.stale_tau_max > 0:
        runs.append(
            {
                "label": f"stale {cfg.stale_dist} tau<={cfg.stale_tau_max}",
                "mode": "stale",
                "tau_kind": cfg.stale_dist,
                "tau_max": cfg.stale_tau_max,
                "p": cfg.stale_geometric_p,
            }
        )
    runs += [
        {"label": f"{c} {cfg.compression_ratio:g}", "mode": c, "ratio": cfg.compression_ratio} for c in cfg.compression
    ]
    return runs


def main_job(cfg: DistributedConfig, seed: int) -> dict[str, Any]:
    """Every measurement of the lens, for one launch of max(workers) processes."""
    s = problem_seeds(seed)
    sizes = sorted(set(cfg.workers) | {cfg.modes_workers})
    mw = cfg.modes_workers
    mlp = _mlp_common(cfg, seed)
    tasks: list[dict[str, Any]] = []
    quad = {
        "dim": cfg.dim,
        "kappa": cfg.kappa,
        "init_dist": cfg.init_dist,
        "problem_seed": s["quadratic"],
        "eta": cfg.eta,
        "sigma2": cfg.sigma2,
        "replicas": cfg.replicas,
        "steps": cfg.quad_steps,
        "burn_in": cfg.burn_in,
    }
    for m in sizes:  # the noise floor at every m, and the delay variants at modes_workers
        tasks.append(
            {
                "name": f"noise_m{m}",
                "kind": "quad_noise",
                "ranks": list(range(m)),
                **quad,
                "variants": noise_variants(cfg, m == mw),
            }
        )
    for m in sorted(cfg.workers):
        ranks = list(range(m))
        if m > 1:
            tasks.append(
                {
                    "name": f"parity_m{m}",
                    "kind": "mlp_parity",
                    "ranks": ranks,
                    **mlp,
                    "steps": cfg.parity_steps,
                    "batch": cfg.parity_batch,
                    "dtype": "float64",
                }
            )
            tasks.append(
                {
                    "name": f"sweep_m{m}",
                    "kind": "comm_sweep",
                    "ranks": ranks,
                    "sizes_bytes": list(cfg.comm_sizes_bytes),
                    "reps": cfg.comm_reps,
                }
            )
        tasks.append(
            {
                "name": f"sync_m{m}",
                "kind": "mlp_train",
                "ranks": ranks,
                **mlp,
                "mode": "sync",
                "sampler": "global",
                "steps": cfg.train_steps,
                "batch": cfg.global_batch,
                "eval_every": cfg.eval_every,
            }
        )
    mranks = list(range(mw))
    for i, run in enumerate(modes_runs(cfg)):
        tasks.append(
            {
                "name": f"mode{i}",
                "kind": "mlp_train",
                "ranks": mranks,
                **mlp,
                **{k: v for k, v in run.items() if k != "label"},
                "label": run["label"],
                "sampler": "shard",
                "heterogeneity": cfg.mlp_heterogeneity,
                "steps": cfg.train_steps,
                "batch": cfg.global_batch,
                "eval_every": cfg.eval_every,
            }
        )
    if mw >= 2 and cfg.straggler_sleep_s > 0:
        tasks.append(
            {
                "name": "straggler",
                "kind": "mlp_train",
                "ranks": mranks,
                **mlp,
                "mode": "sync",
                "sampler": "global",
                "steps": cfg.straggler_steps,
                "batch": cfg.global_batch,
                "eval_every": 0,
                "straggler": {"rank": mw - 1, "sleep_s": cfg.straggler_sleep_s},
            }
        )
    tasks.append(
        {
            "name": "local_drift",
            "kind": "quad_local",
            "ranks": mranks,
            "dim": cfg.dim,
            "rows_per_worker": cfg.rows_per_worker,
            "levels": list(cfg.heterogeneity),
            "problem_seed": s["shards"],
            "eta": drift_eta(cfg, seed),
            "steps": cfg.drift_steps,
            "ks": list(cfg.local_steps),
        }
    )
    tasks.append(
        {
            "name": "staleness",
            "kind": "quad_stale",
            "ranks": mranks,
            "dim": cfg.dim,
            "kappas": list(cfg.stale_kappas),
            "taus": list(cfg.stale_taus),
            "eta": cfg.stale_eta_l / max(cfg.stale_kappas),
            "steps": cfg.stale_steps,
            "init_dist": cfg.init_dist,
            "problem_seed": s["stale"],
        }
    )
    return {
        "seed": seed,
        "backend": resolve_backend(cfg.backend),
        "timeout_s": cfg.collective_timeout_s,
        "threads": 1,
        "groups": [list(range(m)) for m in sizes],
        "tasks": tasks,
    }


def fault_job(cfg: DistributedConfig, seed: int, kind: str) -> dict[str, Any]:
    """Synchronous MLP training on fault_workers ranks; the last rank fails at fault_step."""
    m = cfg.fault_workers
    batch = m * max(1, cfg.global_batch // max(cfg.modes_workers, 1) // 4)
    task = {
        "name": f"fault_{kind}",
        "kind": "mlp_train",
        "ranks": list(range(m)),
        **_mlp_common(cfg, seed),
        "mode": "sync",
        "sampler": "global",
        "steps": cfg.fault_step + 10,
        "batch": batch,
        "eval_every": 0,
        "fault": {"kind": kind, "rank": m - 1, "step": cfg.fault_step},
    }
    return {
        "seed": seed,
        "backend": resolve_backend(cfg.backend),
        "timeout_s": cfg.collective_timeout_s,  # start-up (rendezvous) may be slow on a loaded machine
        "group_timeout_s": cfg.fault_timeout_s,  # the training group detects a hung peer this fast
        "threads": 1,
        "groups": [list(range(m))],
        "tasks": [task],
    }
