"""Constrained training: rate constraints with differentiable proxies, primal-dual and augmented-Lagrangian trainers.

A :class:`RateConstraint` is ``c(model, x, y, g) <= bound`` given twice: ``proxy`` (differentiable,
on probabilities, used for training) and ``true`` (the hard-prediction rate that matters). The
trainers measure both, on the training and the held-out data, at every evaluation.

* :func:`train_constrained` with ``method="gda"``: Lagrangian gradient descent-ascent (Arrow-Hurwicz;
  Cotter et al. 2019 for rate constraints with proxies): Adam on L(theta, lambda) = loss +
  sum_k lambda_k (proxy_k - b_k), projected dual ascent lambda <- [lambda + dual_lr (proxy - b)]_+.
* ``method="alm"``: augmented Lagrangian (Hestenes-Powell-Rockafellar): the primal minimizes
  loss + sum_k psi(c_k, lambda_k, rho) with psi = lambda c + rho c^2 / 2 when lambda + rho c >= 0,
  else -lambda^2 / (2 rho); every ``alm_inner`` steps lambda <- [lambda + rho c]_+.

WE-11: when the constraint set is infeasible the duals grow without bound. The trainers watch
for it in the second half of the run: a dual whose average growth per step since half the elapsed
steps is >= (dual step) x ``alarm_violation`` (its average violation stayed above that level)
while the full-data proxy is still violated by more than ``alarm_violation`` raises
:class:`InfeasibleConstraints` instead of returning a model.

Convex QP (min 1/2 x^T Q x + c^T x, A x <= b): :func:`solve_qp_exact` by active-set enumeration
(the reference), :func:`qp_primal_dual` the same GDA with (optionally noisy) gradients and
averaged iterates, :func:`qp_dual_value` the dual function.
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from multilens.errors import ConfigError, MultilensError
from multilens.seeding import as_generator, torch_generator

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # x, y in {0,1} (float), g in {0,1} (int)


class InfeasibleConstraints(MultilensError):
    """The duals grew without bound while the constraints stayed violated (WE-11): no model is returned."""

    def __init__(self, message: str, history: list[dict]) -> None:
        super().__init__(message)
        self.history = history


@dataclass(frozen=True)
class RateConstraint:
    name: str
    proxy: Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    true: Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], float]
    bound: float
    # the true value from hard predictions pred (0/1 numpy) with y, g: for bootstrap intervals
    true_from_predictions: Callable[[np.ndarray, np.ndarray, np.ndarray], float] | None = None


def logits_of(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    return out.reshape(out.shape[0]) if out.ndim == 2 and out.shape[1] == 1 else out


def _dp_pred(pred: np.ndarray, y: np.ndarray, g: np.ndarray) -> float:
    a, b = pred[g == 1], pred[g == 0]
    return float(abs(a.mean() - b.mean())) if a.size and b.size else math.nan


def dp_gap_constraint(bound: float, temperature: float = 1.0) -> RateConstraint:
    """|P(yhat=1 | g=1) - P(yhat=1 | g=0)| <= bound; proxy on sigmoid(logit / temperature) (sharper as T -> 0)."""

    def proxy(model, x, y, g):
        p = torch.sigmoid(logits_of(model, x) / temperature)
        m1, m0 = g == 1, g == 0
        if not (bool(m1.any()) and bool(m0.any())):
            return p.sum() * 0.0
        return (p[m1].mean() - p[m0].mean()).abs()

    def true(model, x, y, g):
        with torch.no_grad():
            pred = (logits_of(model, x) > 0).numpy().astype(float)
        return _dp_pred(pred, y.numpy(), g.numpy())

    return RateConstraint("dp_gap", proxy, true, float(bound), _dp_pred)


def fnr_constraint(bound: float, group: int = 1, temperature: float = 1.0) -> RateConstraint:
    """P(yhat=0 | y=1, g=group) <= bound: the false-negative rate on a slice; proxy 1 - sigmoid(logit / T)."""

    def sel(y, g):
        return (y > 0.5) & (g == group)

    def proxy(model, x, y, g):
        p = torch.sigmoid(logits_of(model, x) / temperature)
        m = sel(y, g)
        return (1.0 - p[m]).mean() if bool(m.any()) else p.sum() * 0.0

    def from_pred(pred, y, g):
        m = (y > 0.5) & (g == group)
        return float(1.0 - pred[m].mean()) if m.any() else math.nan

    def true(model, x, y, g):
        with torch.no_grad():
            pred = (logits_of(model, x) > 0).numpy().astype(float)
        return from_pred(pred, y.numpy(), g.numpy())

    return RateConstraint(f"fnr_g{group}", proxy, true, float(bound), from_pred)


def param_budget_constraint(budget: float, tau: float = 1e-2) -> RateConstraint:
    """#{|w| > tau} <= budget over weight matrices; proxy sum tanh(|w| / tau) (a smooth count)."""

    def weights(model):
        return [p for n, p in model.named_parameters() if p.ndim >= 2]

    def proxy(model, x, y, g):
        return sum(torch.tanh(w.abs() / tau).sum() for w in weights(model))

    def true(model, x, y, g):
        return float(sum(int((w.detach().abs() > tau).sum()) for w in weights(model)))

    return RateConstraint("param_budget", proxy, true, float(budget))


@dataclass(frozen=True)
class TrainSettings:
    method: str = "gda"  # "gda" | "alm" | "unconstrained"
    steps: int = 600
    lr: float = 0.02
    dual_lr: float = 0.5
    rho: float = 2.0
    alm_inner: int = 20
    batch_size: int = 256
    eval_every: int = 50
    alarm_violation: float = 0.02
    alarm: bool = True

    def __post_init__(self) -> None:
        if self.method not in ("gda", "alm", "unconstrained"):
            raise ConfigError(f"`method` must be one of 'gda', 'alm', 'unconstrained'; got {self.method!r}.")


@dataclass(frozen=True)
class ConstrainedFit:
    model: nn.Module
    lambdas: np.ndarray
    history: list[dict] = field(default_factory=list)
    n_steps: int = 0


def _evaluate(model, loss_fn, constraints, data: Batch, tag: str) -> dict:
    x, y, g = data
    with torch.no_grad():
        z = logits_of(model, x)
        out = {f"{tag}.loss": float(loss_fn(z, y)), f"{tag}.accuracy": float(((z > 0).float() == y).float().mean())}
        for c in constraints:
            out[f"{tag}.proxy.{c.name}"] = float(c.proxy(model, x, y, g))
            out[f"{tag}.true.{c.name}"] = float(c.true(model, x, y, g))
    return out


def _alarm(history: list[dict], constraints, threshold: float, dual_rate: float, step: int, steps: int) -> str | None:
    """WE-11 on the second half of the run: a dual that grew at >= dual_rate x threshold per step since step/2
    (its average violation stayed above ``threshold``) while the full-data proxy is still violated by > threshold."""
    if step < steps // 2 or len(history) < 4:
        return None
    half = step // 2
    past = min(history, key=lambda h: abs(h["step"] - half))
    span = step - past["step"]
    if span <= 0:
        return None
    now = history[-1]
    for k, c in enumerate(constraints):
        growth = (now["lambdas"][k] - past["lambdas"][k]) / span
        viol = now[f"train.proxy.{c.name}"] - c.bound
        if growth >= dual_rate * threshold and viol > threshold:
            return (
                f"constraint `{c.name}` <= {c.bound:g} looks infeasible: its dual grew from {past['lambdas'][k]:.3g} "
                f"(step {past['step']}) to {now['lambdas'][k]:.3g} (step {step}), {growth:.3g} per step >= "
                f"{dual_rate * threshold:.3g}, and the proxy is still violated by {viol:.3g}"
            )
    return None


def train_constrained(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    train: Batch,
    constraints: tuple[RateConstraint, ...] | list[RateConstraint],
    ts: TrainSettings,
    *,
    seed: int,
    holdout: Batch | None = None,
) -> ConstrainedFit:
    """Train a deep copy of ``model`` under ``constraints`` (the input is not modified).

    Raises :class:`InfeasibleConstraints` when the alarm fires (``ts.alarm``)."""
    m = copy.deepcopy(model).train()
    cons = list(constraints) if ts.method != "unconstrained" else []
    gen = torch_generator(seed)
    opt = torch.optim.Adam(m.parameters(), lr=ts.lr)
    lam = np.zeros(len(cons))
    x, y, g = train
    n = x.shape[0]
    history: list[dict] = []
    for step in range(1, ts.steps + 1):
        idx = torch.randint(0, n, (min(ts.batch_size, n),), generator=gen)
        xb, yb, gb = x[idx], y[idx], g[idx]
        opt.zero_grad()
        obj = loss_fn(logits_of(m, xb), yb)
        cvals = [c.proxy(m, xb, yb, gb) - c.bound for c in cons]
        for k, cv in enumerate(cvals):
            if ts.method == "gda":
                obj = obj + float(lam[k]) * cv
            else:
                if lam[k] + ts.rho * float(cv.detach()) >= 0:
                    obj = obj + float(lam[k]) * cv + 0.5 * ts.rho * cv**2
        obj.backward()
        opt.step()
        if ts.method == "gda":
            lam = np.maximum(0.0, lam + ts.dual_lr * np.array([float(cv.detach()) for cv in cvals]))
        elif ts.method == "alm" and step % ts.alm_inner == 0:
            with torch.no_grad():
                full = np.array([float(c.proxy(m, x, y, g)) - c.bound for c in cons])
            lam = np.maximum(0.0, lam + ts.rho * full)
        if step % ts.eval_every == 0 or step == ts.steps:
            m.eval()
            h = {"step": step, "lambdas": lam.tolist()} | _evaluate(m, loss_fn, cons, train, "train")
            if holdout is not None:
                h |= _evaluate(m, loss_fn, cons, holdout, "holdout")
            history.append(h)
            m.train()
            if ts.alarm and cons:
                rate = ts.dual_lr if ts.method == "gda" else ts.rho / ts.alm_inner
                msg = _alarm(history, cons, ts.alarm_violation, rate, step, ts.steps)
                if msg is not None:
                    raise InfeasibleConstraints(msg, history)
    return ConstrainedFit(m.eval(), lam, history, ts.steps)


# ------------------------------------------------------------------------------------------------ convex QP
@dataclass(frozen=True)
class QP:
    """min 1/2 x^T Q x + c^T x  s.t.  A x <= b (Q symmetric positive definite)."""

    q: np.ndarray
    c: np.ndarray
    a: np.ndarray
    b: np.ndarray

    def objective(self, x: np.ndarray) -> float:
        return float(0.5 * x @ self.q @ x + self.c @ x)

    def violation(self, x: np.ndarray) -> float:
        """||[A x - b]_+||_2."""
        return float(np.linalg.norm(np.maximum(0.0, self.a @ x - self.b)))

    def with_bound(self, k: int, delta: float) -> QP:
        b = self.b.copy()
        b[k] += delta
        return QP(self.q, self.c, self.a, b)


@dataclass(frozen=True)
class QPSolution:
    x: np.ndarray
    lambdas: np.ndarray
    value: float
    feasible: bool


def solve_qp_exact(qp: QP, tol: float = 1e-10) -> QPSolution:
    """Exact KKT solution by enumerating active sets (m <= 12 constraints)."""
    m, d = qp.a.shape
    if m > 12:
        raise ConfigError(f"`solve_qp_exact` enumerates 2^m active sets; m must be <= 12; got {m}.")
    best = None
    for size in range(m + 1):
        for act in itertools.combinations(range(m), size):
            act = list(act)
            aa = qp.a[act]
            kkt = np.block([[qp.q, aa.T], [aa, np.zeros((size, size))]])
            rhs = np.concatenate([-qp.c, qp.b[act]])
            try:
                sol = np.linalg.solve(kkt, rhs)
            except np.linalg.LinAlgError:
                continue
            x, lam_a = sol[:d], sol[d:]
            if np.all(lam_a >= -tol) and np.all(qp.a @ x <= qp.b + 1e-9 * (1 + np.abs(qp.b))):
                lam = np.zeros(m)
                lam[act] = np.maximum(lam_a, 0.0)
                cand = QPSolution(x, lam, qp.objective(x), True)
                if best is None or cand.value < best.value - 1e-12:
                    best = cand
        if best is not None:
            return best
    return QPSolution(np.full(d, np.nan), np.full(m, np.nan), math.nan, False)


def qp_dual_value(qp: QP, lam: np.ndarray) -> float:
    """q(lambda) = min_x L(x, lambda) = -1/2 (c + A^T l)^T Q^-1 (c + A^T l) - l^T b."""
    v = qp.c + qp.a.T @ lam
    return float(-0.5 * v @ np.linalg.solve(qp.q, v) - lam @ qp.b)


@dataclass(frozen=True)
class QPRun:
    x_last: np.ndarray
    lam_last: np.ndarray
    x_avg: np.ndarray
    lam_avg: np.ndarray
    n_iter: int
    alarm: str | None


def qp_primal_dual(
    qp: QP,
    steps: int,
    eta: float,
    gamma: float,
    *,
    noise: float = 0.0,
    seed: int = 0,
    alarm_violation: float | None = None,
) -> QPRun:
    """Projected GDA x <- x - eta (Q x + c + A^T l + noise), l <- [l + gamma (A x - b)]_+, with averaged iterates.

    With ``alarm_violation``: the infeasibility alarm (violation of the averaged iterate over the last quarter
    > alarm_violation while some dual keeps growing) is returned in ``alarm``."""
    rng = as_generator(seed)
    m, d = qp.a.shape
    x, lam = np.zeros(d), np.zeros(m)
    sx, sl = np.zeros(d), np.zeros(m)
    checkpoints = []
    every = max(1, steps // 40)
    for t in range(1, steps + 1):
        grad = qp.q @ x + qp.c + qp.a.T @ lam
        if noise:
            grad = grad + noise * rng.standard_normal(d)
        x_new = x - eta * grad
        lam = np.maximum(0.0, lam + gamma * (qp.a @ x - qp.b))
        x = x_new
        sx += x
        sl += lam
        if t % every == 0:
            checkpoints.append((float(np.max(qp.a @ x - qp.b)), lam.copy()))
    alarm = None
    if alarm_violation is not None and len(checkpoints) >= 8:
        tail = checkpoints[-len(checkpoints) // 4 :]
        grow = [k for k in range(m) if all(b[1][k] > a[1][k] for a, b in zip(tail, tail[1:]))]
        if min(v for v, _ in tail) > alarm_violation and grow:
            alarm = (
                f"QP looks infeasible: max violation stayed >= {min(v for v, _ in tail):.3g} over the last "
                f"{len(tail)} checkpoints while duals {grow} grew to {tail[-1][1][grow].round(3).tolist()}"
            )
    return QPRun(x, lam, sx / steps, sl / steps, steps, alarm)


def random_qp(d: int, m: int, seed: int, n_active: int | None = None) -> QP:
    """A strictly convex QP built from its KKT point: x*, lambda* drawn first, the first ``n_active``
    (default min(m, d, 3)) constraints tight with lambda*_k in [0.5, 2], the rest slack by 0.2..1.2, and
    c = -Q x* - A^T lambda*. The solution (x*, lambda*) is therefore known exactly. Slater holds when the
    active rows are linearly independent (then some direction v has A_active v < 0)."""
    rng = as_generator(seed)
    k = min(m, d, 3) if n_active is None else int(n_active)
    r = rng.standard_normal((d, d))
    q = r @ r.T / d + np.eye(d)
    a = rng.standard_normal((m, d))
    x_star = rng.standard_normal(d)
    lam = np.zeros(m)
    lam[:k] = 0.5 + 1.5 * rng.random(k)
    b = a @ x_star
    b[k:] += 0.2 + rng.random(m - k)
    c = -q @ x_star - a.T @ lam
    return QP(q, c, a, b)


def infeasible_qp(d: int) -> QP:
    """x_0 <= -1 and -x_0 <= -1 (x_0 >= 1): no feasible point."""
    a = np.zeros((2, d))
    a[0, 0], a[1, 0] = 1.0, -1.0
    return QP(np.eye(d), np.zeros(d), a, np.array([-1.0, -1.0]))
