"""Robustness attacks against torchattacks on the same models and examples; smoothing throughput.

Models: the robustness lens's default subject at the "quick" settings (digits scaled to [0, 1]; a
64-64-64-10 ReLU MLP and the same MLP after PGD-l-inf adversarial training at eps = 0.1), the same
held-out examples (450) for every attack.

1. Robust accuracy at matched settings: PGD-l-inf and PGD-l-2 with 20 steps, step 0.25 eps, one
   random start (multilens: ``restarts=1, targeted=0, random_start=True``; torchattacks ``PGD`` /
   ``PGDL2`` with ``random_start=True``), FGSM, and the square attack at 300 queries (p_init 0.1
   for both). multilens ascends the margin loss (and, in a second row, the cross-entropy, as
   torchattacks does); both keep the input box [0, 1]. Also reported: multilens at its lens
   settings (2 restarts + 3 targeted restarts, the strongest here). Per-example agreement: the
   fraction of examples on which both attacks reach the same verdict.
2. Speed: examples per second of each PGD run, timed over repetitions (batch-means interval),
   and the ratio multilens / torchattacks (> 1: multilens is faster). Note that multilens keeps
   the best iterate of every step (one extra forward per step), torchattacks returns the last.
3. Randomized smoothing certification throughput (examples/s and noisy forward passes/s) at
   n0 = 100, n = 1000.

torchattacks (PyPI ``torchattacks==3.5.1``, the "bench" extra; install with ``pip install
--no-deps torchattacks==3.5.1``: it imports without torchvision) is optional: without it its rows
are reported as not measured. torchattacks draws its random starts from torch's global RNG; each
of its runs is seeded inside ``torch.random.fork_rng`` so the global state is left as it was.
Its l-2 and square attacks need image-shaped inputs: they see x as (N, 1, 8, 8) and a model that
flattens first.

Usage: .venv/bin/python benchmarks/bench_robustness.py [--reps 3] [--out benchmarks/results/robustness.json]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from multilens.io import atomic_write_json
from multilens.lenses.robustness import Settings, default_subject
from multilens.robustness import fgsm, pgd, smoothing_certify, square_attack
from multilens.stats import batch_means_ci, clopper_pearson, json_safe

try:  # optional: the "bench" extra
    import torchattacks

    TA = torchattacks.__version__
except Exception as e:  # noqa: BLE001  (any import failure means "not available")
    torchattacks = None
    TA = f"not available: {type(e).__name__}: {e}"


def timed(fn: Callable[[], Any], reps: int) -> tuple[Any, list[float]]:
    out, times = None, []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, times


def robust_mask_ta(model: nn.Module, attack: Any, x: torch.Tensor, y: torch.Tensor, seed: int) -> torch.Tensor:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        xa = attack(x.reshape(-1, 1, 8, 8), y).reshape(x.shape)
    with torch.no_grad():
        return (model(x).argmax(1) == y) & (model(xa).argmax(1) == y)


def row(name: str, robust: torch.Tensor, times: list[float] | None, n: int) -> dict[str, Any]:
    ci = clopper_pearson(int(robust.sum()), n)
    d: dict[str, Any] = {"attack": name, "robust_accuracy": ci.estimate, "ci": [ci.low, ci.high]}
    if times:
        rate = batch_means_ci([n / t for t in times], n_batches=min(len(times), 3))
        d["examples_per_s"] = rate.estimate
        d["examples_per_s_ci"] = [rate.low, rate.high]
    return d


def bench_model(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, reps: int) -> dict[str, Any]:
    model = model.eval()
    img = nn.Sequential(nn.Flatten(), model).eval()
    n = int(x.shape[0])
    rows: list[dict[str, Any]] = []
    for norm, eps in (("linf", 0.05), ("linf", 0.1), ("l2", 0.5), ("l2", 1.0)):
        kw = dict(eps=eps, norm=norm, steps=20, step_size=0.25, input_range=(0.0, 1.0), seed=0)
        ml, t_ml = timed(
            lambda kw=kw: pgd(model, x, y, restarts=1, targeted=0, random_start=True, loss="margin", **kw), reps
        )
        strong = pgd(model, x, y, eps=eps, norm=norm, steps=20, restarts=2, targeted=3, step_size=0.25,
                     random_start=False, input_range=(0.0, 1.0), seed=0)  # fmt: skip
        ce, t_ce = timed(
            lambda kw=kw: pgd(model, x, y, restarts=1, targeted=0, random_start=True, loss="ce", **kw), reps
        )
        r_ml = row("multilens PGD, margin loss (1 start)", ml.robust, t_ml, n)
        r_ce = row("multilens PGD, CE loss (1 start)", ce.robust, t_ce, n)
        r_strong = row("multilens PGD (lens: 2 CE + 3 targeted)", strong.robust, None, n)
        out = {"norm": norm, "eps": eps, "rows": [r_ml, r_ce, r_strong]}
        if torchattacks is not None:
            if norm == "linf":
                atk = torchattacks.PGD(img, eps=eps, alpha=0.25 * eps, steps=20, random_start=True)
            else:
                atk = torchattacks.PGDL2(img, eps=eps, alpha=0.25 * eps, steps=20, random_start=True)
            rob_ta, t_ta = timed(lambda atk=atk: robust_mask_ta(model, atk, x, y, seed=0), reps)
            r_ta = row(f"torchattacks {type(atk).__name__}", rob_ta, t_ta, n)
            out["rows"].append(r_ta)
            ta = r_ta["robust_accuracy"]
            out["robust_accuracy_ratio_multilens_over_torchattacks"] = r_ml["robust_accuracy"] / ta if ta else None
            out["robust_accuracy_ratio_multilens_ce_over_torchattacks"] = r_ce["robust_accuracy"] / ta if ta else None
            out["speed_ratio_multilens_over_torchattacks"] = r_ml["examples_per_s"] / r_ta["examples_per_s"]
            out["speed_ratio_multilens_ce_over_torchattacks"] = r_ce["examples_per_s"] / r_ta["examples_per_s"]
            out["per_example_agreement"] = float((ml.robust == rob_ta).float().mean())
            out["per_example_agreement_ce"] = float((ce.robust == rob_ta).float().mean())
        if norm == "linf":
            f = fgsm(model, x, y, eps=eps, input_range=(0.0, 1.0))
            sq = square_attack(model, x, y, eps=eps, queries=300, p_init=0.1, image_shape=(8, 8),
                               input_range=(0.0, 1.0), seed=0)  # fmt: skip
            out["rows"] += [row("multilens FGSM", f.robust, None, n), row("multilens square (300 q)", sq.robust,
                                                                           None, n)]  # fmt: skip
            if torchattacks is not None:
                out["rows"].append(row("torchattacks FGSM", robust_mask_ta(model, torchattacks.FGSM(img, eps=eps),
                                                                           x, y, 0), None, n))  # fmt: skip
                sq_ta = torchattacks.Square(img, eps=eps, n_queries=300, p_init=0.1, n_restarts=1, seed=0)
                out["rows"].append(row("torchattacks Square (300 q)", robust_mask_ta(model, sq_ta, x, y, 0), None, n))
        rows.append(out)
        print(name, norm, eps, [(r["attack"], round(r["robust_accuracy"], 4)) for r in out["rows"]], flush=True)
    return {"model": name, "results": rows}


def bench_smoothing(model: nn.Module, x: torch.Tensor, y: torch.Tensor, reps: int) -> dict[str, Any]:
    n_ex = 50
    res, times = timed(lambda: smoothing_certify(model, x[:n_ex], y[:n_ex], sigma=0.25, n0=100, n=1000, seed=0),
                       reps)  # fmt: skip
    rate = batch_means_ci([n_ex / t for t in times], n_batches=min(len(times), 3))
    return {
        "sigma": 0.25, "n0": 100, "n": 1000, "examples": n_ex,
        "examples_per_s": rate.estimate, "examples_per_s_ci": [rate.low, rate.high],
        "noisy_forwards_per_s": rate.estimate * 1100,
        "certified_accuracy_r0": float(res.correct.mean()), "median_radius": float(np.median(res.radius[res.correct]))
        if res.correct.any() else 0.0,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/robustness.json"))
    a = ap.parse_args()
    s = Settings.for_profile("quick")
    sub = default_subject(s, seed=a.seed)
    adv = next(c.model for c in reversed(sub.checkpoints) if c.family == "adversarial")
    out = {
        "torchattacks": TA,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.platform(),
        "n_examples": int(sub.x.shape[0]),
        "models": [
            bench_model("mlp", sub.model, sub.x, sub.y, a.reps),
            bench_model("mlp_pgd_at", adv, sub.x, sub.y, a.reps),
        ],  # fmt: skip
        "smoothing": bench_smoothing(sub.model, sub.x, sub.y, a.reps),
    }
    atomic_write_json(a.out, json_safe(out))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
