"""Recommendation stability: the protocol's decisions recomputed under perturbations (C.20).

Each decision the protocol hands on is recomputed under predeclared perturbations (another seed, a
data subsample, the budget moved by +-10%) and carries the fraction of perturbations under which
it still holds:

* allocation: N* recomputed from the scaling runs by the method that was handed on (Approach 3, or
  Approach 2 after the fit-quality fallback): another bootstrap seed, three 80% subsamples of the
  runs, each run seed left out, the target budget x1.1 and x0.9; it holds when the perturbed N*
  lies inside the original N* interval;
* learning rate: lambda_max of the main model recomputed with another Lanczos seed and on two
  random halves of the 2048 training examples the curvature phase used, and lambda_max of each
  perturbed model the allocation phase handed on (another run seed: a new training sample and
  initialisation; the budget x1.1 and x0.9 allocations); the cap 2/lambda_max holds when the
  perturbed lambda_max does not exceed the upper end of the interval the cap was computed from;
* release (with ``--stress``): the release phases (curvature, representation, calibration, robustness,
  compression, constraints) rerun under two other seeds on the same main model, and at the protocol's
  seed on each perturbed model; it holds when every release stop gate gives the same go/no-go;
* regularisation: whether the main model sits in the interpolation peak band (N*/D* within a factor
  2 of the double-descent threshold), re-read under the allocation's perturbations.

Perturbations that cannot run are counted as not held and named, never dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from multilens.protocol.decision import RELEASE_PHASES
from multilens.protocol.gates import evaluate_gate
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


def allocation_for(method: str, runs: Any, settings: Any, seed: int, target: float, ratio: float | None) -> dict:
    """The allocation the protocol handed on, recomputed from ``runs`` by the same method.

    ``approach3``: the L(N, D) fit's optimum; ``approach2``: the iso-FLOP minima's line (the fallback
    the protocol switches to when the L(N, D) fit fails its gate).
    """
    from multilens.lenses.scaling import allocation_from_runs
    from multilens.lenses.scaling.handoff import approach2_allocation, excluded_runs, fit_with_bootstrap

    if method != "approach2":
        return allocation_from_runs(runs, settings, seed=seed, target_budget=target, interpolation_ratio=ratio)
    fit_runs, _ = excluded_runs(runs, ratio, settings.peak_band)
    fit, boot, _ = fit_with_bootstrap(fit_runs, settings, seed)
    return approach2_allocation(fit, boot, fit_runs, settings, target)


def _why_outside(n: Any, ci: Any) -> str:
    if _inside(n, ci):
        return ""
    if n is None:
        return "no N*"
    if ci is None or None in ci[:2]:
        return "the original N* has no interval"
    return f"N* = {n:.4g} outside [{ci[0]:.4g}, {ci[1]:.4g}]"


def _inside(n: Any, ci: Any) -> bool:
    return n is not None and ci is not None and None not in ci[:2] and ci[0] <= n <= ci[1]


def allocation_stability(artifacts: Mapping[str, Any], cfg: Any, seed: int) -> dict[str, Any] | None:
    """N* of the handed-on allocation under perturbations: another bootstrap seed, three 80% subsamples
    of the runs, each run seed left out, and the budget x1.1 and x0.9; holds = inside the original interval."""
    rows, alloc = artifacts.get("scaling.runs"), artifacts.get("scaling.allocation")
    if not rows or not alloc or not alloc.get("ok", True) or "scaling" not in cfg.phases:
        return None
    import numpy as np

    from multilens.lenses.contract import part_seed
    from multilens.lenses.scaling import Runs

    runs, settings = Runs.from_rows(rows), cfg.lens_config("scaling")
    method, target = str(alloc.get("method", "approach3")), float(alloc["budget"])
    ratio = artifacts.get("double_descent.interpolation_ratio")
    base_seed = part_seed(cfg.seed, "scaling", "lnd_fit")
    ci = alloc.get("n_star_ci")
    items: list[dict[str, Any]] = []

    def attempt(name: str, sub: Any, s: int, c: float = target) -> None:
        try:
            a = allocation_for(method, sub, settings, s, c, ratio)
            ok = a.get("ok", True)
            n, d = (a.get("n_star"), a.get("d_star")) if ok else (None, None)
            items.append({"perturbation": name, "n_star": n, "d_star": d, "holds": _inside(n, ci),
                          "note": a.get("note", ""), "why": _why_outside(n, ci)})  # fmt: skip
        except Exception as e:  # counted as not held, with the reason
            items.append({"perturbation": name, "n_star": None, "holds": False, "note": f"{type(e).__name__}: {e}"})

    attempt("bootstrap seed", runs, derive_seed(seed, "bootstrap"))
    for k in range(3):
        rng = np.random.default_rng(derive_seed(seed, "subsample", k))
        keep = np.zeros(runs.n_runs, dtype=bool)
        keep[rng.choice(runs.n_runs, size=max(1, round(0.8 * runs.n_runs)), replace=False)] = True
        attempt(f"80% subsample {k + 1}", runs.subset(keep), base_seed)
    if runs.seed is not None and len(np.unique(runs.seed)) > 1:
        for s in np.unique(runs.seed):
            attempt(f"seed {int(s)} left out", runs.subset(runs.seed != s), base_seed)
    for key, name in (("plus10", "budget x1.1"), ("minus10", "budget x0.9")):
        n, d = (alloc.get(key) or {}).get("n_star"), (alloc.get(key) or {}).get("d_star")
        items.append({"perturbation": name, "n_star": n, "d_star": d, "holds": _inside(n, ci), "note": "same fit",
                      "why": _why_outside(n, ci)})  # fmt: skip
    out = _summary(items)
    out["method"] = method
    return out


def lr_stability(artifacts: Mapping[str, Any], metrics: Mapping[str, Any], seed: int) -> dict[str, Any] | None:
    """lambda_max under another Lanczos seed, on two random halves of the curvature phase's 2048 examples, and of
    each perturbed model the allocation phase handed on (on its own first 2048 training examples); it holds when
    the perturbed lambda_max does not exceed the upper end of the interval the cap 2/lambda_max came from."""
    path, hi = artifacts.get("allocation.model_path"), metrics.get("curvature.lambda_max_ci_high")
    if not path or hi is None:
        return None
    import torch

    from multilens.curvature import hessian_eigenvalues
    from multilens.lenses.allocation import main_subject

    subj = main_subject(path, n_train=2048)  # the examples the curvature phase's Hessian is of
    x, y = subj.train
    g = torch_generator(derive_seed(seed, "lr-halves"))
    perm = torch.randperm(len(x), generator=g)
    halves = (perm[: len(x) // 2], perm[len(x) // 2 :])
    runs = [("another Lanczos seed", subj.model, (x, y), derive_seed(seed, "lr-seed"))]
    runs += [(f"data half {i + 1}", subj.model, (x[h], y[h]), derive_seed(seed, "lr-half", i))
             for i, h in enumerate(halves)]  # fmt: skip
    items = []
    for label, folder in (artifacts.get("allocation.perturbed_models") or {}).items():
        try:
            other = main_subject(folder, n_train=2048)
            runs.append((f"main model replaced by {label}", other.model, other.train, seed))
        except Exception as e:  # counted as not held, with the reason
            items.append({"perturbation": f"main model replaced by {label}", "holds": False,
                          "error": f"{type(e).__name__}: {e}"})  # fmt: skip
    for name, model, data, s in runs:
        try:
            r = hessian_eigenvalues(model, subj.loss_fn, data, k=1, seed=s)
            lam = float(r.eigenvalues[0])
            items.append({"perturbation": name, "lambda_max": lam, "holds": lam <= hi, "converged": r.converged,
                          "why": "" if lam <= hi else f"lambda_max {lam:.4g} > {hi:.4g}"})  # fmt: skip
        except Exception as e:  # counted as not held, with the reason
            items.append({"perturbation": name, "holds": False, "error": f"{type(e).__name__}: {e}"})
    return _summary(items)


def in_peak_band(n: Any, d: Any, ratio: float, band: float = 2.0) -> bool | None:
    """Whether N/D lies within a factor ``band`` of the interpolation ratio (the regularisation decision)."""
    if not n or not d:
        return None
    return ratio / band <= n / d <= ratio * band


def regularisation_stability(alloc_stab: dict[str, Any] | None, artifacts: Mapping[str, Any]) -> dict | None:
    """The regularisation decision (is the main model in the interpolation peak band?) under the
    allocation's perturbations: it holds when the perturbed N*/D* falls on the same side of the band."""
    alloc, ratio = artifacts.get("scaling.allocation") or {}, artifacts.get("double_descent.interpolation_ratio")
    if not alloc_stab or ratio is None:
        return None
    base = in_peak_band(alloc.get("n_star"), alloc.get("d_star"), ratio)
    if base is None:
        return None
    items = []
    for it in alloc_stab["items"]:
        near = in_peak_band(it.get("n_star"), it.get("d_star"), ratio)
        holds = near is not None and near == base
        why = "" if holds else ("no N*/D*" if near is None else f"N*/D* moved {'into' if near else 'out of'} the band")
        items.append({"perturbation": it["perturbation"], "in_peak_band": near, "holds": holds, "why": why})
    return _summary(items)


def rerun_release_phases(
    phases: list[str], artifacts: Mapping[str, Any], cfg: Any, seed: int, executor: Any = None
) -> dict[str, Any]:
    """The release phases rerun in protocol order, each on the hand-offs of the reruns before it (a rerun
    curvature phase's lambda_max feeds the rerun compression phase); returns their metrics."""
    from multilens.lenses.contract import Runtime, run_lens
    from multilens.lenses.registry import get_lens

    inputs, m = dict(artifacts), {}
    for p in phases:
        settings = cfg.lens_config(p)
        if getattr(settings, "reference_trajectory", False):  # the lens's own reference subject, not the main
            settings = replace(settings, reference_trajectory=False)  # model: no release gate reads it
        res = run_lens(get_lens(p), settings, seed, Runtime(executor=executor, inputs=dict(inputs)))
        m.update(res.metrics)
        inputs.update(res.outputs)
    return m


def release_stability(
    policy: Any, artifacts: Mapping[str, Any], metrics: Mapping[str, Any], cfg: Any, n_seeds: int = 2,
    executor: Any = None,
) -> dict[str, Any] | None:  # fmt: skip
    """The release decision (every release stop gate passes) recomputed with the release phases rerun:

    * under ``n_seeds`` other measurement seeds on the same main model;
    * on each perturbed model the allocation phase handed on (``allocation.perturbed_models``: the model of
      another run seed, i.e. another training sample and initialisation; the allocations at the budget x1.1
      and x0.9), at the protocol's own seed, so only the model differs.

    It holds when the go/no-go verdict is the same as the protocol's.
    """
    phases = [p for p in cfg.phases if p in RELEASE_PHASES]
    rules = [g for g in policy.gates if g.phase in phases and g.action == "stop"]
    if not rules:
        return None
    base = all(evaluate_gate(g, metrics).passed is True for g in rules)
    runs = [(f"release phases rerun with seed {k + 1}", artifacts, derive_seed(cfg.seed, "perturb", "release", k))
            for k in range(n_seeds)]  # fmt: skip
    models = artifacts.get("allocation.perturbed_models") or {}
    if artifacts.get("allocation.model_path"):
        for label, path in models.items():
            runs.append(
                (f"main model replaced by {label}", dict(artifacts) | {"allocation.model_path": path}, cfg.seed)
            )
    items = []
    for name, inputs, seed in runs:
        m = dict(metrics)
        try:
            m.update(rerun_release_phases(phases, inputs, cfg, seed, executor))
            res = [evaluate_gate(g, m) for g in rules]
            failed = [r.name for r in res if r.passed is not True]
            values = {r.name: r.value for r in res}  # what each stop gate read on this rerun
            items.append({"perturbation": name, "go": not failed, "failed_gates": failed, "gate_values": values,
                          "holds": (not failed) == base})  # fmt: skip
        except Exception as e:  # counted as not held, with the reason
            items.append({"perturbation": name, "holds": False, "error": f"{type(e).__name__}: {e}"})
    return _summary(items)


def recommendation_stability(
    artifacts: Mapping[str, Any],
    metrics: Mapping[str, Any],
    cfg: Any,
    policy: Any = None,
    release: bool = False,
    executor: Any = None,
) -> dict[str, Any]:
    """Stability of each decision that could be recomputed; a decision missing here was not.

    ``release`` (the stress run) also reruns the release phases under other seeds (about a minute on quick).
    """
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
    reg = regularisation_stability(out.get("allocation"), artifacts)
    if reg is not None:
        out["regularisation"] = reg
    if release and policy is not None:
        try:
            rel = release_stability(policy, artifacts, metrics, cfg, executor=executor)
        except Exception as e:  # reported, not hidden
            rel = {"held": 0, "total": 0, "fraction": None, "perturbations": [], "error": f"{type(e).__name__}: {e}"}
        if rel is not None:
            out["release"] = rel
    return out
