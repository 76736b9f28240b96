"""Constrained training: rate constraints with differentiable proxies, primal-dual and augmented-Lagrangian trainers.

A :class:`RateConstraint` is ``c(model, x, y, g) <= bound`` given twice: ``proxy`` (differentiable,
on probabilities, used for training) and ``true`` (the hard-prediction rate that matters). The
trainers measure both, on the training and the held-out data, at every evaluation (with
``TrainSettings.eval_n_boot`` > 0 also their percentile-bootstrap intervals over resampled rows,
drawn from their own seeded streams so the training trajectory does not change). Built-in
constraints: :func:`dp_gap_constraint`, :func:`fnr_constraint`, :func:`ece_constraint` (expected
calibration error of P(y = 1 | x): true = equal-width binned ECE, proxy = soft-binned ECE with Gaussian
bin memberships, see :func:`soft_binned_ece`), :func:`param_budget_constraint`.

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
from multilens.seeding import as_generator, derive_seed, torch_generator

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
    # True: ``true_from_predictions`` receives the probabilities sigmoid(logit) instead of 0/1 predictions
    uses_probabilities: bool = False
    # the proxy as a function of the logits (logits, y, g): lets the evaluation bootstrap skip the forward passes
    proxy_from_logits: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None


def logits_of(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    return out.reshape(out.shape[0]) if out.ndim == 2 and out.shape[1] == 1 else out


def _dp_pred(pred: np.ndarray, y: np.ndarray, g: np.ndarray) -> float:
    a, b = pred[g == 1], pred[g == 0]
    return float(abs(a.mean() - b.mean())) if a.size and b.size else math.nan


def dp_gap_constraint(bound: float, temperature: float = 1.0) -> RateConstraint:
    """|P(yhat=1 | g=1) - P(yhat=1 | g=0)| <= bound; proxy on sigmoid(logit / temperature) (sharper as T -> 0)."""

    def from_logits(z, y, g):
        p = torch.sigmoid(z / temperature)
        m1, m0 = g == 1, g == 0
        if not (bool(m1.any()) and bool(m0.any())):
            return p.sum() * 0.0
        return (p[m1].mean() - p[m0].mean()).abs()

    def proxy(model, x, y, g):
        return from_logits(logits_of(model, x), y, g)

    def true(model, x, y, g):
        with torch.no_grad():
            pred = (logits_of(model, x) > 0).numpy().astype(float)
        return _dp_pred(pred, y.numpy(), g.numpy())

    return RateConstraint("dp_gap", proxy, true, float(bound), _dp_pred, proxy_from_logits=from_logits)


def fnr_constraint(bound: float, group: int = 1, temperature: float = 1.0) -> RateConstraint:
    """P(yhat=0 | y=1, g=group) <= bound: the false-negative rate on a slice; proxy 1 - sigmoid(logit / T)."""

    def sel(y, g):
        return (y > 0.5) & (g == group)

    def from_logits(z, y, g):
        p = torch.sigmoid(z / temperature)
        m = sel(y, g)
        return (1.0 - p[m]).mean() if bool(m.any()) else p.sum() * 0.0

    def proxy(model, x, y, g):
        return from_logits(logits_of(model, x), y, g)

    def from_pred(pred, y, g):
        m = (y > 0.5) & (g == group)
        return float(1.0 - pred[m].mean()) if m.any() else math.nan

    def true(model, x, y, g):
        with torch.no_grad():
            pred = (logits_of(model, x) > 0).numpy().astype(float)
        return from_pred(pred, y.numpy(), g.numpy())

    return RateConstraint(f"fnr_g{group}", proxy, true, float(bound), from_pred, proxy_from_logits=from_logits)


def param_budget_constraint(budget: float, tau: float = 1e-2) -> RateConstraint:
    """#{|w| > tau} <= budget over weight matrices; proxy sum tanh(|w| / tau) (a smooth count)."""

    def weights(model):
        return [p for n, p in model.named_parameters() if p.ndim >= 2]

    def proxy(model, x, y, g):
        return sum(torch.tanh(w.abs() / tau).sum() for w in weights(model))

    def true(model, x, y, g):
        return float(sum(int((w.detach().abs() > tau).sum()) for w in weights(model)))

    return RateConstraint("param_budget", proxy, true, float(budget))


def binned_ece(p: np.ndarray, y: np.ndarray, n_bins: int = 10) -> float:
    """ECE of the positive-class probability with ``n_bins`` equal-width bins [k/B, (k+1)/B) (the last closed):
    sum_b (n_b / n) |mean_b(y) - mean_b(p)| = (1/n) sum_b |sum_{i in b} (y_i - p_i)|."""
    p, y = np.asarray(p, np.float64).reshape(-1), np.asarray(y, np.float64).reshape(-1)
    if p.size == 0:
        return math.nan
    idx = np.minimum(np.floor(p * n_bins).astype(np.int64), n_bins - 1)
    return float(np.abs(np.bincount(idx, weights=y - p, minlength=n_bins)).sum() / p.size)


def soft_binned_ece(p: torch.Tensor, y: torch.Tensor, n_bins: int = 10, smoothing: float = 0.5) -> torch.Tensor:
    """Differentiable proxy of :func:`binned_ece`: soft bin memberships w_ib = softmax_b(-(p_i - c_b)^2 / (2 s^2))
    around the bin centres c_b = (b + 1/2) / B with width s = ``smoothing`` / B, then
    (1/n) sum_b |sum_i w_ib (y_i - p_i)|. As ``smoothing`` -> 0 the memberships become the equal-width bins
    (nearest centre) and the proxy becomes the binned ECE."""
    c = (torch.arange(n_bins, dtype=p.dtype) + 0.5) / n_bins
    s = smoothing / n_bins
    w = torch.softmax(-((p.reshape(-1, 1) - c) ** 2) / (2 * s * s), dim=1)
    return (w * (y.reshape(-1, 1) - p.reshape(-1, 1))).sum(0).abs().sum() / max(p.numel(), 1)


def ece_constraint(bound: float, n_bins: int = 10, smoothing: float = 0.5) -> RateConstraint:
    """Expected calibration error of P(y = 1 | x) = sigmoid(logit) <= bound. True: the binned ECE with ``n_bins``
    equal-width bins (:func:`binned_ece`); proxy: the soft-binned ECE (:func:`soft_binned_ece`), on the same
    probabilities (no temperature: the calibration of the model's own probabilities is what is constrained)."""

    def from_logits(z, y, g):
        return soft_binned_ece(torch.sigmoid(z), y, n_bins, smoothing)

    def proxy(model, x, y, g):
        return from_logits(logits_of(model, x), y, g)

    def from_probs(p, y, g):
        return binned_ece(p, y, n_bins)

    def true(model, x, y, g):
        with torch.no_grad():
            p = torch.sigmoid(logits_of(model, x)).double().numpy()
        return binned_ece(p, y.numpy(), n_bins)

    return RateConstraint(
        "ece", proxy, true, float(bound), from_probs, uses_probabilities=True, proxy_from_logits=from_logits
    )


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
    eval_n_boot: int = 0  # > 0: percentile-bootstrap intervals of every proxy and true value at every evaluation
    level: float = 0.95

    def __post_init__(self) -> None:
        if self.method not in ("gda", "alm", "unconstrained"):
            raise ConfigError(f"`method` must be one of 'gda', 'alm', 'unconstrained'; got {self.method!r}.")
        if isinstance(self.eval_n_boot, bool) or not isinstance(self.eval_n_boot, int) or self.eval_n_boot < 0:
            raise ConfigError(f"`eval_n_boot` must be an int >= 0; got {self.eval_n_boot!r}.")


@dataclass(frozen=True)
class ConstrainedFit:
    model: nn.Module
    lambdas: np.ndarray
    history: list[dict] = field(default_factory=list)
    n_steps: int = 0


def _evaluate(
    model, loss_fn, constraints, data: Batch, tag: str, boot: list[torch.Tensor] | None = None, level: float = 0.95
) -> dict:
    """Loss, accuracy, every proxy and true value on ``data``; with ``boot`` (row-index resamples) also their
    percentile-bootstrap intervals ``<key>_ci = [low, high]`` (proxy and true re-evaluated on each resample;
    the same resamples for every constraint and every evaluation)."""
    x, y, g = data
    with torch.no_grad():
        z = logits_of(model, x)
        out = {f"{tag}.loss": float(loss_fn(z, y)), f"{tag}.accuracy": float(((z > 0).float() == y).float().mean())}
        for c in constraints:
            out[f"{tag}.proxy.{c.name}"] = float(c.proxy(model, x, y, g))
            out[f"{tag}.true.{c.name}"] = float(c.true(model, x, y, g))
        if boot:
            q = [(1 - level) / 2, (1 + level) / 2]
            yn, gn = y.numpy(), g.numpy()
            hard, prob = (z > 0).double().numpy(), torch.sigmoid(z).double().numpy()
            for c in constraints:
                if c.proxy_from_logits is not None:  # the same values as c.proxy on the resampled rows
                    pv = np.array([float(c.proxy_from_logits(z[i], y[i], g[i])) for i in boot])
                else:
                    pv = np.array([float(c.proxy(model, x[i], y[i], g[i])) for i in boot])
                if c.true_from_predictions is not None:
                    a = prob if c.uses_probabilities else hard
                    tv = np.array([c.true_from_predictions(a[i], yn[i], gn[i]) for i in (b.numpy() for b in boot)])
                else:
                    tv = np.array([float(c.true(model, x[i], y[i], g[i])) for i in boot])
                for kind, v in (("proxy", pv), ("true", tv)):
                    v = v[np.isfinite(v)]
                    out[f"{tag}.{kind}.{c.name}_ci"] = np.quantile(v, q).tolist() if v.size >= 2 else [None, None]
    return out


def _boot_indices(n: int, n_boot: int, seed: int) -> list[torch.Tensor]:
    gen = torch_generator(seed)
    return [torch.randint(0, n, (n,), generator=gen) for _ in range(n_boot)]


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
    # bootstrap resamples for the evaluation intervals: their own streams, so they never move the training draws
    boot_tr = (
        _boot_indices(n, ts.eval_n_boot, derive_seed(seed, "eval_boot.train")) if ts.eval_n_boot and cons else None
    )
    boot_ho = (
        _boot_indices(holdout[0].shape[0], ts.eval_n_boot, derive_seed(seed, "eval_boot.holdout"))
        if ts.eval_n_boot and cons and holdout is not None
        else None
    )
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
            h = {"step": step, "lambdas": lam.tolist()} | _evaluate(m, loss_fn, cons, train, "train", boot_tr, ts.level)
            if holdout is not None:
                h |= _evaluate(m, loss_fn, cons, holdout, "holdout", boot_ho, ts.level)
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
