"""Worst-case sharpness in a parameter ball (SAM-style) and its adaptive, scale-invariant variant (ASAM).

* Sharpness (Keskar et al. 2017; Foret et al. 2021, SAM): ``S_rho = max_{||delta|| <= rho}
  L(theta + delta) - L(theta)``. SAM's own inner step is the first-order solution
  ``delta = rho * g / ||g||``; here that is only the start of a projected, normalized gradient
  ascent on the ball (several steps), so the reported value is a *lower bound* on the true
  maximum found by local search (the ascent's ``converged`` says whether it stopped improving).
* Adaptive sharpness (Kwon et al. 2021, ASAM): the ball is ``||T^{-1} delta|| <= rho`` with the
  element-wise operator ``T = diag(|theta|) + eta``. With ``eta = 0`` it is invariant under any
  rescaling that multiplies each weight by a positive factor and leaves the function unchanged
  (ASAM, Theorem 2): the ascent in ``u = T^{-1} delta`` coordinates is literally the same
  function of ``u`` in both parameterizations.
* Second-order model: for small rho, ``S_rho`` is close to ``max_{||d||<=rho} g.d + d.H d/2``,
  which lies between ``max(rho||g|| + rho^2 ghat.H ghat/2, rho|g.v1| + rho^2 lambda_1/2)`` and
  ``rho||g|| + rho^2 max(lambda_1, 0)/2``; :func:`quadratic_bounds` returns that interval.

The caller's model is never modified: the loss is evaluated through
:class:`~multilens.lenses.curvature.functional.FlatModel` at ``theta + delta``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from multilens.errors import ConfigError, ConvergenceWarning
from multilens.lenses.curvature.functional import FlatModel, LossFn, Mode, ParamSpec
from multilens.seeding import SeedLike, as_generator
from multilens.validation import check_int, check_positive


@dataclass(frozen=True)
class SharpnessResult:
    """The best loss increase found in the (adaptive) ball of radius ``rho``, and how it was found."""

    rho: float
    adaptive: bool
    eta: float
    value: float  # max found L(theta + delta) - L(theta): a lower bound on the true maximum
    first_step_value: float  # SAM's (ASAM's) first-order step alone
    loss0: float
    delta_norm: float  # ||delta|| in parameter space
    n_iter: int
    n_grad: int
    converged: bool
    start: str  # which starting direction the ascent began from
    history: tuple[float, ...] = ()
    schema_version: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "rho": self.rho,
            "adaptive": self.adaptive,
            "eta": self.eta,
            "value": _f(self.value),
            "first_step_value": _f(self.first_step_value),
            "loss0": _f(self.loss0),
            "delta_norm": _f(self.delta_norm),
            "n_iter": self.n_iter,
            "n_grad": self.n_grad,
            "converged": self.converged,
            "start": self.start,
            "bound": "lower bound on the true maximum (local ascent)",
        }


def _f(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _project(u: np.ndarray, rho: float) -> np.ndarray:
    n = float(np.linalg.norm(u))
    return u if n <= rho else u * (rho / n)


def ascent_sharpness(
    flat: FlatModel,
    rho: float,
    *,
    adaptive: bool = False,
    eta: float = 0.0,
    n_steps: int = 10,
    rtol: float = 1e-4,
    seed: SeedLike = 0,
    starts: Sequence[tuple[str, np.ndarray]] = (),
) -> SharpnessResult:
    """Projected normalized gradient ascent of ``L(theta + T u)`` over ``||u|| <= rho``.

    ``T = I`` (SAM) or ``diag(|theta|) + eta`` (ASAM). The ascent starts from the best of the
    first-order step ``rho * T g / ||T g||`` and any extra ``starts`` (parameter-space
    directions, rescaled to the ball), takes normalized steps of length ``rho / 2``, halved each
    time a step fails to increase the loss, and stops (converged) when an accepted step improves
    the value by less than ``rtol`` (relative) or the step falls below ``rho / 1000``.
    """
    rho = check_positive("rho", rho)
    n_steps = check_int("n_steps", n_steps, 1)
    if eta < 0 or not math.isfinite(eta):
        raise ConfigError(f"`eta` must be a finite number >= 0; got {eta}.")
    rng = as_generator(seed)
    theta = flat.theta0_numpy()
    scale = np.abs(theta) + eta if adaptive else np.ones_like(theta)
    loss0, g = flat.loss_and_grad(theta)
    n_grad = 1
    tg = scale * g  # gradient of u -> L(theta + T u) at u = 0
    if float(np.linalg.norm(tg)) == 0.0:  # exactly critical: any direction is first-order optimal
        tg = scale * rng.standard_normal(theta.shape)
    u_first = rho * tg / np.linalg.norm(tg)
    candidates = [("first-order step", u_first)]
    for name, d in starts:
        u = np.asarray(d, dtype=np.float64) / scale if adaptive else np.asarray(d, dtype=np.float64)
        nrm = float(np.linalg.norm(u))
        if nrm > 0:
            candidates.append((name, rho * u / nrm))
    evals = [(flat.loss(theta + scale * u) - loss0, name, u) for name, u in candidates]
    first_value = evals[0][0]
    val, start, u = max(evals, key=lambda e: e[0])
    history = [val]
    converged = False
    alpha = 0.5 * rho
    d: np.ndarray | None = None  # ascent direction at the current u (recomputed only after a move)
    it = 0
    for it in range(1, n_steps + 1):
        if d is None:
            _, g = flat.loss_and_grad(theta + scale * u)
            n_grad += 1
            d = scale * g
        dn = float(np.linalg.norm(d))
        if dn == 0.0:  # a stationary point of the ascent
            converged = True
            break
        u_new = _project(u + alpha * d / dn, rho)
        new_val = flat.loss(theta + scale * u_new) - loss0
        if new_val > val:
            gain = new_val - val
            u, val, d = u_new, new_val, None
            history.append(val)
            if gain <= rtol * abs(val):
                converged = True
                break
        else:
            # Backtracking: the step overshot (or the projection undid it); halve it.
            alpha *= 0.5
            if alpha < 1e-3 * rho:
                converged = True
                break
    best_val, best_u = val, u
    if not converged:
        warnings.warn(
            f"sharpness ascent (rho={rho:g}, adaptive={adaptive}) still improving after {n_steps} steps; "
            "the value is a looser lower bound; raise `n_steps`.",
            ConvergenceWarning,
            stacklevel=2,
        )
    return SharpnessResult(
        rho=rho,
        adaptive=adaptive,
        eta=eta,
        value=float(best_val),
        first_step_value=float(first_value),
        loss0=float(loss0),
        delta_norm=float(np.linalg.norm(scale * best_u)),
        n_iter=it,
        n_grad=n_grad,
        converged=converged,
        start=start,
        history=tuple(float(h) for h in history),
    )


def worst_case_sharpness(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    rho: float,
    *,
    adaptive: bool = False,
    eta: float = 0.0,
    n_steps: int = 10,
    rtol: float = 1e-4,
    seed: SeedLike = 0,
    params: ParamSpec = None,
    dtype: torch.dtype = torch.float64,
    mode: Mode = "eval",
) -> SharpnessResult:
    """SAM-style (or, with ``adaptive``, ASAM-style) worst-case loss increase in a ball of radius ``rho``."""
    flat = FlatModel(model, loss_fn, data, params=params, dtype=dtype, mode=mode)
    return ascent_sharpness(flat, rho, adaptive=adaptive, eta=eta, n_steps=n_steps, rtol=rtol, seed=seed)


@dataclass(frozen=True)
class QuadraticBounds:
    """Interval for the second-order model's maximum over the ball (see module docstring)."""

    rho: float
    lower: float
    upper: float


def quadratic_bounds(
    rho: float, grad_norm: float, ghat_h_ghat: float, g_dot_v1: float, lambda1: float
) -> QuadraticBounds:
    """Bounds on ``max_{||d|| <= rho} g.d + d.H d / 2`` from ||g||, ghat.H ghat, g.v1 and lambda_1."""
    lo = max(rho * grad_norm + 0.5 * rho**2 * ghat_h_ghat, rho * abs(g_dot_v1) + 0.5 * rho**2 * lambda1, 0.0)
    hi = rho * grad_norm + 0.5 * rho**2 * max(lambda1, 0.0)
    return QuadraticBounds(rho=rho, lower=lo, upper=hi)


@dataclass(frozen=True)
class Proxies:
    """Curvature-based sharpness proxies at one point."""

    top_eigenvalue: float
    trace: float
    trace_stderr: float
    param_norm: float

    @property
    def trace_over_param_norm(self) -> float:
        """tr(H) / ||theta||_2 (the issue's "trace over parameter norm")."""
        return self.trace / self.param_norm if self.param_norm > 0 else math.nan
