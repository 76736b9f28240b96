"""Recommendation stability: the protocol's decisions recomputed under perturbations (C.20).

Each decision the protocol hands on is recomputed under predeclared perturbations (another seed, a
data subsample, the budget moved by +-10%) and carries the fraction of perturbations under which
it still holds:

* allocation: N* recomputed from the scaling runs by :func:`multilens.lenses.scaling.perturbed_allocations`
  (another bootstrap seed, row subsamples, leave-one-seed-out, target budget x1.1 and x0.9); it
  holds when the perturbed N* lies inside the original N* interval;
* learning rate: lambda_max of the main model recomputed with another Lanczos seed and on two
  random halves of its training data; the cap 2/lambda_max holds when the perturbed lambda_max
  does not exceed the upper end of the interval the cap was computed from.

Perturbations that cannot run are counted as not held and named, never dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from multilens.seeding import derive_seed, torch_generator


def _summary(items: list[dict[str, Any]]) -> dict[str, Any]:
    held = sum(1 for i in items if i.get("holds") is True)
    return {
        "held": held,
        "total": len(items),
        "fraction": held / len(items) if items else None,
        "perturbations": [i["perturbation"] for i in items],
        "items": items,
    }


def allocation_stability(artifacts: Mapping[str, Any], cfg: Any, seed: int) -> dict[str, Any] | None:
    rows, alloc = artifacts.get("scaling.runs"), artifacts.get("scaling.allocation")
    if not rows or not alloc or "scaling" not in cfg.phases:
        return None
    from multilens.lenses.scaling import perturbed_allocations, runs_from_rows

    items = []
    for p in perturbed_allocations(runs_from_rows(rows), cfg.lens_config("scaling"), seed=seed):
        items.append({"perturbation": p["perturbation"], "n_star": p.get("n_star"), "holds": bool(p.get("inside"))})
    return _summary(items)


def lr_stability(artifacts: Mapping[str, Any], metrics: Mapping[str, Any], seed: int) -> dict[str, Any] | None:
    path, hi = artifacts.get("allocation.model_path"), metrics.get("curvature.lambda_max_ci_high")
    if not path or hi is None:
        return None
    import torch

    from multilens.curvature import hessian_eigenvalues
    from multilens.lenses.allocation import main_subject

    subj = main_subject(path)
    x, y = subj.data if isinstance(subj.data, tuple) else subj.tensors()[:2]
    g = torch_generator(derive_seed(seed, "lr-halves"))
    perm = torch.randperm(len(x), generator=g)
    halves = (perm[: len(x) // 2], perm[len(x) // 2 :])
    runs = [("another Lanczos seed", (x, y), derive_seed(seed, "lr-seed"))]
    runs += [(f"data half {i + 1}", (x[h], y[h]), derive_seed(seed, "lr-half", i)) for i, h in enumerate(halves)]
    items = []
    for name, data, s in runs:
        try:
            r = hessian_eigenvalues(subj.model, subj.loss_fn, data, k=1, seed=s)
            lam = float(r.eigenvalues[0])
            items.append({"perturbation": name, "lambda_max": lam, "holds": lam <= hi, "converged": r.converged})
        except Exception as e:  # counted as not held, with the reason
            items.append({"perturbation": name, "holds": False, "error": f"{type(e).__name__}: {e}"})
    return _summary(items)


def recommendation_stability(artifacts: Mapping[str, Any], metrics: Mapping[str, Any], cfg: Any) -> dict[str, Any]:
    """Stability of each decision that could be recomputed; a decision missing here was not."""
    out: dict[str, Any] = {}
    for name, fn in (
        ("allocation", lambda: allocation_stability(artifacts, cfg, derive_seed(cfg.seed, "perturb", "allocation"))),
        ("learning rate", lambda: lr_stability(artifacts, metrics, derive_seed(cfg.seed, "perturb", "lr"))),
    ):
        try:
            r = fn()
        except Exception as e:  # reported, not hidden
            r = {"held": 0, "total": 0, "fraction": None, "perturbations": [], "error": f"{type(e).__name__}: {e}"}
        if r is not None:
            out[name] = r
    return out
