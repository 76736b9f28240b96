"""Part ``jump_bound``: the loss jump right after SVD truncation against a second-order bound from curvature.

Truncating every ``nn.Linear`` weight W_l of the main model to rank r_l moves the parameters by
delta (delta_l = W_l,r - W_l in the ORIGINAL parametrization; biases and other layers unchanged),
with ||delta||^2 = sum_l sum_{j > r_l} sigma_j(W_l)^2, the tail energy removed (Eckart-Young).
If the Hessian of the training loss stays below lambda_max along the segment theta -> theta + delta
(exact for a quadratic loss; at a (near-)minimum of a smooth loss when delta is small), Taylor's
theorem with the mean-value remainder gives

    L(theta + delta) - L(theta) <= g . delta + 1/2 lambda_max ||delta||^2,   g = grad L(theta).

The check ``loss_jump_quadratic_bound`` (kind bound, ``bound_ratio`` = bound / jump) compares the
measured jump of the mean training loss with that bound. ``lambda_max`` is ``curvature.lambda_max``
from ``runtime.inputs`` when an earlier protocol phase measured it on the same main model, else
the top Hessian eigenvalue of the same training loss by Lanczos (:func:`multilens.curvature.hessian_eigenvalues`).
Beside it: the second-order Taylor prediction g . delta + 1/2 delta^T H delta (an exact
Hessian-vector product), which the bound majorizes by replacing the Rayleigh quotient
delta^T H delta / ||delta||^2 with lambda_max. The jump's interval is over disjoint equal training
batches (their mean is the full jump).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from multilens import stats
from multilens.errors import ConfigError
from multilens.lenses.compression.ops import linear_layers
from multilens.results import Assumption, Estimate, Part, Table, check_bound, metric_with_interval
from multilens.validation import check_int, check_open_unit


@dataclass(frozen=True)
class JumpBoundSettings:
    """``keep_fraction``: the main model's layers are truncated to rank r_l = floor(f m n / (m + n)) (the
    pruning part's budget); the training loss is the mean over the first ``n_examples`` training rows (0: all),
    rounded down to whole batches of ``batch_size`` (the batches of the jump's interval); ``tol``: Lanczos
    tolerance when lambda_max is computed here."""

    keep_fraction: float = 0.25
    n_examples: int = 0
    batch_size: int = 128
    tol: float = 1e-4

    def __post_init__(self) -> None:
        check_open_unit("keep_fraction", self.keep_fraction)
        check_int("n_examples", self.n_examples, 0)
        check_int("batch_size", self.batch_size, 1)
        check_open_unit("tol", self.tol)


@dataclass(frozen=True)
class JumpBound:
    jump: float  # L(theta + delta) - L(theta), mean training loss
    batch_jumps: list[float]
    tail_energy: float  # ||delta||^2 = sum of the truncated squared singular values
    delta_norm_sq: float  # ||delta||^2 measured on the cast weights (equals tail_energy up to rounding)
    grad_term: float  # g . delta
    curvature_term: float  # delta^T H delta
    lambda_max: float
    lambda_source: str
    lambda_converged: bool | None
    lambda_n_iter: int | None

    @property
    def bound(self) -> float:
        return self.grad_term + 0.5 * self.lambda_max * self.tail_energy

    @property
    def taylor2(self) -> float:
        return self.grad_term + 0.5 * self.curvature_term


def _truncated_weights(model: nn.Module, ranks: dict[str, int]) -> tuple[dict[str, torch.Tensor], float]:
    """Rank-r_l truncations of every nn.Linear weight (in the layer's dtype) and the exact tail energy."""
    out, tail = {}, 0.0
    for name, lin in linear_layers(model):
        w = lin.weight.detach().to(torch.float64)
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
        r = min(int(ranks[name]), s.numel())
        out[name] = ((u[:, :r] * s[:r]) @ vh[:r]).to(lin.weight.dtype)
        tail += float((s[r:] ** 2).sum())
    return out, tail


def quadratic_jump_bound(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    data: tuple[torch.Tensor, torch.Tensor],
    ranks: dict[str, int],
    *,
    batch_size: int,
    lambda_max: float | None = None,
    seed: int = 0,
    tol: float = 1e-4,
) -> JumpBound:
    """The loss jump of the rank-``ranks`` SVD truncation of ``model`` on ``data`` (mean loss) and the terms of
    the bound g . delta + 1/2 lambda_max ||delta||^2 (the model is not modified). ``lambda_max`` None: computed
    on the same loss and data by Lanczos."""
    x, y = data
    n = (x.shape[0] // batch_size) * batch_size
    if n == 0:
        raise ConfigError(f"`batch_size` = {batch_size} exceeds the {x.shape[0]} rows of the training data.")
    x, y = x[:n], y[:n]
    m = copy.deepcopy(model).eval()
    new_w, tail = _truncated_weights(m, ranks)
    trunc = copy.deepcopy(m)
    layers_m, layers_t = dict(linear_layers(m)), dict(linear_layers(trunc))
    with torch.no_grad():
        for name, w in new_w.items():
            layers_t[name].weight.copy_(w)
    delta = {name: (new_w[name] - layers_m[name].weight.detach()) for name in new_w}
    with torch.no_grad():
        batch_jumps = [
            float(loss_fn(trunc(x[i : i + batch_size]), y[i : i + batch_size]))
            - float(loss_fn(m(x[i : i + batch_size]), y[i : i + batch_size]))
            for i in range(0, n, batch_size)
        ]
        jump = float(loss_fn(trunc(x), y)) - float(loss_fn(m(x), y))
    weights = [layers_m[name].weight for name in delta]
    dvec = [delta[name] for name in delta]
    loss = loss_fn(m(x), y)
    grads = torch.autograd.grad(loss, weights, create_graph=True)
    gdot = sum((g * d).sum() for g, d in zip(grads, dvec))
    hd = torch.autograd.grad(gdot, weights)  # H delta (the weight block of the Hessian times delta)
    grad_term = float(gdot.detach())
    curv = float(sum((h.double() * d.double()).sum() for h, d in zip(hd, dvec)))
    dnorm = float(sum((d.double() ** 2).sum() for d in dvec))
    if lambda_max is None:
        from multilens.curvature import hessian_eigenvalues

        eig = hessian_eigenvalues(m, loss_fn, (x, y), k=1, tol=tol, seed=seed)
        lam, src, conv, nit = float(eig.eigenvalues[0]), "Lanczos on this loss", bool(eig.converged), int(eig.n_iter)
    else:
        lam, src, conv, nit = float(lambda_max), "given (curvature.lambda_max)", None, None
    return JumpBound(jump, batch_jumps, tail, dnorm, grad_term, curv, lam, src, conv, nit)


def jump_bound_part(subject: Any, ps: JumpBoundSettings, *, seed: int, level: float, inputs: Any = None) -> Part:
    from multilens.lenses.compression.lens import _budget_ranks

    name, model = subject.models[0]
    x, y = subject.train
    if ps.n_examples:
        x, y = x[: ps.n_examples], y[: ps.n_examples]
    given = (inputs or {}).get("curvature.lambda_max")
    if given is not None and not (isinstance(given, (int, float)) and math.isfinite(given)):
        given = None
    ranks = _budget_ranks(model, ps.keep_fraction)
    batch = min(ps.batch_size, max(1, x.shape[0] // 2))  # at least two batches for the interval
    jb = quadratic_jump_bound(
        model, subject.loss_fn, (x, y), ranks, batch_size=batch, lambda_max=given, seed=seed, tol=ps.tol
    )
    ci = stats.mean_ci(jb.batch_jumps, level, unit="training batches")
    e_jump = ci.to_estimate(
        "loss_jump", note=f"mean training loss after - before rank truncation (full-data jump {jb.jump:.6g})"
    )
    n_rows = len(jb.batch_jumps) * batch
    det = stats.DETERMINISTIC
    ests = [
        e_jump,
        Estimate("tail_energy", jb.tail_energy, method="sum_l sum_{j>r_l} sigma_j^2", no_interval_reason=det),
        Estimate("grad_term", jb.grad_term, method="g . delta (autograd, full training loss)", no_interval_reason=det),
        Estimate(
            "lambda_max",
            jb.lambda_max,
            method=jb.lambda_source,
            converged=jb.lambda_converged,
            n_iter=jb.lambda_n_iter,
            no_interval_reason=det if given is None else "handed on by the curvature phase",
        ),
        Estimate("quadratic_bound", jb.bound, method="g . delta + 1/2 lambda_max ||delta||^2", no_interval_reason=det),
        Estimate(
            "taylor2_prediction",
            jb.taylor2,
            method="g . delta + 1/2 delta^T H delta (exact Hessian-vector product)",
            no_interval_reason=det,
        ),
        Estimate(
            "rayleigh_quotient",
            jb.curvature_term / jb.tail_energy if jb.tail_energy > 0 else math.nan,
            method="delta^T H delta / ||delta||^2 (<= lambda_max)",
            no_interval_reason=det,
        ),
    ]
    check = check_bound(
        "loss_jump_quadratic_bound",
        jb.jump,
        jb.bound,
        exact=jb.jump,
        what=f"{name}: loss jump of the rank truncation (f = {ps.keep_fraction:g}) on {n_rows} training rows vs "
        f"g.delta {jb.grad_term:.4g} + 1/2 lambda_max {jb.lambda_max:.4g} x tail energy {jb.tail_energy:.4g}",
    )
    table = Table(
        "jump_bound",
        f"{name}: loss jump right after SVD truncation vs the second-order curvature bound",
        ["quantity", "value"],
        [
            ["loss jump (training loss)", jb.jump],
            ["loss jump ci low", ci.low if ci.ok else None],
            ["loss jump ci high", ci.high if ci.ok else None],
            ["tail energy ||delta||^2", jb.tail_energy],
            ["||delta||^2 of the cast weights", jb.delta_norm_sq],
            ["g . delta", jb.grad_term],
            ["lambda_max", jb.lambda_max],
            ["lambda_max source", jb.lambda_source],
            ["bound g.delta + 1/2 lambda_max ||delta||^2", jb.bound],
            ["Taylor-2 g.delta + 1/2 delta^T H delta", jb.taylor2],
        ],
    )
    metrics = metric_with_interval("compression.loss_jump", e_jump) | {
        "compression.tail_energy": jb.tail_energy,
        "compression.grad_term": jb.grad_term,
        "compression.quadratic_bound": jb.bound,
        "compression.jump_lambda_max": jb.lambda_max,
    }
    assumption = Assumption(
        "the Hessian of the training loss stays below lambda_max along the segment from the trained to the "
        "truncated weights (second-order Taylor with the largest curvature)",
        "Taylor's theorem; issue 14 consistency 8",
        ("loss_jump_quadratic_bound",),
    )
    rank_note = ", ".join(f"{k or 'model'}: {v}" for k, v in ranks.items())
    return Part(
        "jump_bound",
        estimates=tuple(ests),
        checks=(check,),
        tables=(table,),
        metrics=metrics,
        assumptions=(assumption,),
        notes=(
            f"truncation ranks {rank_note}; {len(jb.batch_jumps)} batches of {batch}; lambda_max {jb.lambda_source}",
        ),
    )


__all__ = ["JumpBound", "JumpBoundSettings", "jump_bound_part", "quadratic_jump_bound"]
