"""Optimizers compared at matched budgets on separable logistic regression (exercise C.2).

GD, SGD, Adam, sign descent (steepest descent in l_inf) and greedy coordinate descent (steepest
descent in l_1) train the same linear classifier on the same separable data for the same number
of examples processed (epochs; SGD takes n/b smaller steps per epoch). At the budget each is
measured by: training error and loss; the minimum margin normalised in l_2, l_inf and l_1 (each
against its exact optimum: the SVM for l_2, linear programs for the others) and the l_2 margin
distribution; parameter norms; direction cosines to the three max-margin directions; and
function-space disagreement (sign disagreement on held-out points) with each other and with the
references.

Asymptotic theory (not measured here, stated beside the finite-time numbers): for linear models
with exponentially tailed losses, GD (Soudry et al. 2018) and SGD (Nacson, Srebro, Soudry,
AISTATS 2019) converge in direction to the l_2 max-margin solution from any initialisation;
steepest descent in a norm maximises the margin in that norm (Gunasekar, Lee, Soudry, Srebro,
ICML 2018): sign descent -> l_inf, coordinate descent -> l_1. Adam has no single answer: with its
epsilon negligible and a decaying step it tends to the l_inf max margin (Zhang, Zou, Cao, "The
Implicit Bias of Adam on Separable Data", NeurIPS 2024), while once gradients fall below epsilon
it behaves like GD and the l_2 answer applies (Wang et al., ICML 2021); so no prediction is
checked for Adam.

Controls, one mechanism at a time (C.2 [H]): the initialisation scale, the learning-rate schedule
and reseeding (init and SGD order with the problem fixed). Finite-time conclusions (what the
numbers at the budget show) are kept apart from asymptotic ones (what the theorems say).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.special import log_expit

from multilens.errors import ConfigError, ConvergenceWarning
from multilens.seeding import SeedLike, as_generator, derive_seed
from multilens.theory.implicit_bias import MaxMarginLP, SVMSolution, hard_margin_svm, max_margin_lp
from multilens.validation import check_int

OPTIMIZERS = ("gd", "sgd", "adam", "sign", "coordinate")
SCHEDULES = ("constant", "cosine", "inv_sqrt")
# The max-margin geometry each optimizer converges to asymptotically (None: no single answer).
GEOMETRY: dict[str, str | None] = {"gd": "l2", "sgd": "l2", "adam": None, "sign": "linf", "coordinate": "l1"}
NORMS = ("l2", "linf", "l1")


@dataclass(frozen=True)
class TeacherProblem:
    """Separable data labelled by a random teacher, training points at margin >= ``margin``."""

    x: np.ndarray  # (n, d)
    y: np.ndarray  # (n,)
    x_test: np.ndarray  # (n_test, d) unfiltered, so many sit near the boundary
    y_test: np.ndarray
    teacher: np.ndarray | None  # None for a user's set


def make_teacher_problem(n: int, d: int, margin: float, n_test: int, seed: SeedLike) -> TeacherProblem:
    """x ~ N(0, I_d), y = sign(w*^T x); training points kept only if |w*^T x|/||w*|| >= margin."""
    check_int("n", n, 2)
    check_int("d", d, 2)
    rng = as_generator(seed)
    w = rng.standard_normal(d)
    w /= np.linalg.norm(w)
    rows: list[np.ndarray] = []
    while sum(r.shape[0] for r in rows) < n:
        cand = rng.standard_normal((4 * n, d))
        rows.append(cand[np.abs(cand @ w) >= margin])
    x = np.vstack(rows)[:n]
    xt = rng.standard_normal((n_test, d))
    return TeacherProblem(x, np.sign(x @ w), xt, np.sign(xt @ w), w)


@dataclass(frozen=True)
class References:
    """The exact max-margin directions of one problem (unit l_2 norm) and optimal margins."""

    svm: SVMSolution
    linf: MaxMarginLP
    l1: MaxMarginLP

    def direction(self, norm: str) -> np.ndarray:
        w = {"l2": self.svm.w, "linf": self.linf.w, "l1": self.l1.w}[norm]
        return w / np.linalg.norm(w)

    def optimum(self, norm: str) -> float:
        return {"l2": self.svm.margin, "linf": self.linf.margin, "l1": self.l1.margin}[norm]

    @property
    def converged(self) -> bool:
        return self.svm.converged and self.linf.converged and self.l1.converged


def references(p: TeacherProblem) -> References:
    """The exact l2 (QP), l_inf and l_1 (LP) max-margin solutions; warns if a solver fell short."""
    ref = References(hard_margin_svm(p.x, p.y), max_margin_lp(p.x, p.y, "linf"), max_margin_lp(p.x, p.y, "l1"))
    if not ref.converged:
        warnings.warn(
            f"a max-margin reference did not converge (SVM KKT residual {ref.svm.kkt_residual:.2e}; "
            f"LPs: {ref.linf.message!r}, {ref.l1.message!r})",
            ConvergenceWarning,
            stacklevel=2,
        )
    return ref


def lr_factor(schedule: str, step: int, total: int) -> float:
    """Multiplier of the base learning rate at ``step`` of ``total``."""
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + np.cos(np.pi * step / max(total, 1)))
    if schedule == "inv_sqrt":
        return 1.0 / np.sqrt(1.0 + step)
    raise ConfigError(f"`schedule` must be one of {', '.join(SCHEDULES)}; got {schedule!r}.")


def _grad(z: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Gradient of the mean logistic loss for a batch of runs: z (B, m, d), w (B, d) -> (B, d)."""
    m = np.einsum("bnd,bd->bn", z, w)
    return -np.einsum("bnd,bn->bd", z, np.exp(log_expit(-m))) / z.shape[1]


def _direction(z: np.ndarray, w: np.ndarray) -> np.ndarray:
    """A positive multiple of -grad (log-space softmax weights): never underflows to zero."""
    lw = log_expit(-np.einsum("bnd,bd->bn", z, w))
    q = np.exp(lw - lw.max(axis=1, keepdims=True))
    return np.einsum("bnd,bn->bd", z, q)


def train(
    optimizer: str,
    z: np.ndarray,
    w0: np.ndarray,
    epochs: int,
    lr: float,
    schedule: str,
    batch_size: int,
    rng: np.random.Generator,
    record_epochs: np.ndarray,
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Train a batch of B independent runs in lockstep; return final weights and snapshots.

    ``z`` (B, n, d) signed examples, ``w0`` (B, d). Every optimizer sees ``epochs`` * n examples.
    """
    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"`optimizer` must be one of {', '.join(OPTIMIZERS)}; got {optimizer!r}.")
    b_count, n, d = z.shape
    w = w0.copy()
    snaps: dict[int, np.ndarray] = {}
    want = set(int(e) for e in record_epochs)
    if 0 in want:
        snaps[0] = w.copy()
    if optimizer == "sgd":
        bs = min(batch_size, n)
        per_epoch = n // bs  # drop the ragged tail so every step has the same batch size
        total = per_epoch * epochs
        step = 0
        rows = np.arange(b_count)[:, None]
        for e in range(1, epochs + 1):
            perm = np.argsort(rng.random((b_count, n)), axis=1)  # an independent order per run
            for k in range(per_epoch):
                idx = perm[:, k * bs : (k + 1) * bs]
                w = w - lr * lr_factor(schedule, step, total) * _grad(z[rows, idx], w)
                step += 1
            if e in want:
                snaps[e] = w.copy()
        return w, snaps
    m1 = np.zeros_like(w)
    m2 = np.zeros_like(w)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for t in range(epochs):
        eta = lr * lr_factor(schedule, t, epochs)
        if optimizer == "gd":
            w = w - eta * _grad(z, w)
        elif optimizer == "adam":
            g = _grad(z, w)
            m1 = beta1 * m1 + (1 - beta1) * g
            m2 = beta2 * m2 + (1 - beta2) * g * g
            mh = m1 / (1 - beta1 ** (t + 1))
            vh = m2 / (1 - beta2 ** (t + 1))
            w = w - eta * mh / (np.sqrt(vh) + eps)
        elif optimizer == "sign":
            w = w + eta * np.sign(_direction(z, w))
        else:  # coordinate: the steepest-descent step of the l_1 norm moves one coordinate
            g = _direction(z, w)
            j = np.argmax(np.abs(g), axis=1)
            w[np.arange(b_count), j] += eta * np.sign(g[np.arange(b_count), j])
        if t + 1 in want:
            snaps[t + 1] = w.copy()
    return w, snaps


@dataclass(frozen=True)
class RunMetrics:
    """Metrics of one trained weight vector on its problem (finite-time, at the budget)."""

    train_error: float
    train_loss: float
    norm_l2: float
    margin: dict[str, float]  # normalised minimum margin per norm
    margin_ratio: dict[str, float]  # margin / optimal margin per norm (1 = max-margin)
    margin_q10: float  # l_2-normalised margin quantiles over training points
    margin_q50: float
    cosine: dict[str, float]  # cosine to each max-margin direction
    test_accuracy: float
    disagree_ref: dict[str, float]  # held-out sign disagreement with each reference direction


def metrics(p: TeacherProblem, ref: References, w: np.ndarray) -> RunMetrics:
    z = p.x * p.y[:, None]
    m = z @ w
    scale = {"l2": np.linalg.norm(w), "linf": np.abs(w).max(), "l1": np.abs(w).sum()}
    margin = {k: float(m.min() / v) if v > 0 else float("nan") for k, v in scale.items()}
    held_out = p.x_test.shape[0] > 0  # a user's set may come without held-out points: NaN, not a warning
    pred = np.sign(p.x_test @ w)
    ml2 = m / scale["l2"] if scale["l2"] > 0 else np.full_like(m, np.nan)
    return RunMetrics(
        train_error=float(np.mean(m <= 0)),
        train_loss=float(np.mean(np.logaddexp(0.0, -m))),
        norm_l2=float(scale["l2"]),
        margin=margin,
        margin_ratio={k: margin[k] / ref.optimum(k) for k in NORMS},
        margin_q10=float(np.quantile(ml2, 0.1)),
        margin_q50=float(np.quantile(ml2, 0.5)),
        cosine={k: float(ref.direction(k) @ w / scale["l2"]) if scale["l2"] > 0 else float("nan") for k in NORMS},
        test_accuracy=float(np.mean(pred == p.y_test)) if held_out else float("nan"),
        disagree_ref={
            k: float(np.mean(pred != np.sign(p.x_test @ ref.direction(k)))) if held_out else float("nan") for k in NORMS
        },
    )


def disagreement(p: TeacherProblem, wa: np.ndarray, wb: np.ndarray) -> float:
    """Fraction of held-out points on which two linear classifiers predict different signs (NaN if none)."""
    if p.x_test.shape[0] == 0:
        return float("nan")
    return float(np.mean(np.sign(p.x_test @ wa) != np.sign(p.x_test @ wb)))


def init_weights(b_count: int, d: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    """w_0 ~ N(0, scale^2 / d I): scale 0 is the zero initialisation."""
    return scale * rng.standard_normal((b_count, d)) / np.sqrt(d)


@dataclass(frozen=True)
class Condition:
    """One control setting; exactly one mechanism differs from the base condition."""

    label: str
    init_scale: float
    schedule: str
    varies: str  # "base", "init scale" or "schedule"


def conditions(init_scales: tuple[float, ...], schedules: tuple[str, ...]) -> tuple[Condition, ...]:
    """The base condition (first scale, first schedule) and one-at-a-time variations of it."""
    s0, h0 = init_scales[0], schedules[0]
    out = [Condition(f"base (init {s0:g}, {h0})", s0, h0, "base")]
    out += [Condition(f"init scale {s:g}", s, h0, "init scale") for s in init_scales[1:]]
    out += [Condition(f"schedule {h}", s0, h, "schedule") for h in schedules[1:]]
    return tuple(out)


@dataclass(frozen=True)
class OptimizerStudy:
    """Everything measured in the comparison, indexed by (condition label, optimizer)."""

    problems: tuple[TeacherProblem, ...]
    refs: tuple[References, ...]
    conditions: tuple[Condition, ...]
    optimizers: tuple[str, ...]
    record_epochs: np.ndarray  # (K,)
    final_w: dict[tuple[str, str], np.ndarray]  # (S, R, d)
    metrics: dict[tuple[str, str], list[list[RunMetrics]]]  # [instance][reseed]
    cos_traj: dict[tuple[str, str], np.ndarray]  # (S, R, K, 3) cosine to the l2, linf, l1 directions


def compare_optimizers(
    problems: list[TeacherProblem],
    optimizers: tuple[str, ...],
    conds: tuple[Condition, ...],
    epochs: int,
    lr: float,
    lr_normalized: float,
    batch_size: int,
    reseeds: int,
    n_points: int,
    seed: int,
) -> OptimizerStudy:
    """Train every optimizer under every condition on every problem, ``reseeds`` times each.

    Within a condition all optimizers start from the same initial weights and SGD's order is
    drawn from its own stream, so optimizers differ only in their update rule.
    """
    refs = tuple(references(p) for p in problems)
    s_count, d = len(problems), problems[0].x.shape[1]
    z = np.repeat(np.stack([p.x * p.y[:, None] for p in problems]), reseeds, axis=0)  # (S*R, n, d)
    rec = np.unique(np.r_[np.round(np.logspace(0, np.log10(epochs), n_points)).astype(int), epochs // 10, epochs])
    dirs = np.stack([np.stack([r.direction(k) for k in NORMS]) for r in refs])  # (S, 3, d)
    final_w: dict[tuple[str, str], np.ndarray] = {}
    mets: dict[tuple[str, str], list[list[RunMetrics]]] = {}
    trajs: dict[tuple[str, str], np.ndarray] = {}
    for c in conds:
        w0 = init_weights(s_count * reseeds, d, c.init_scale, as_generator(derive_seed(seed, "init", c.label)))
        for o in optimizers:
            rate = lr if o in ("gd", "sgd") else lr_normalized
            order = as_generator(derive_seed(seed, "order", c.label))
            w, snaps = train(o, z, w0, epochs, rate, c.schedule, batch_size, order, rec)
            w = w.reshape(s_count, reseeds, d)
            final_w[(c.label, o)] = w
            mets[(c.label, o)] = [
                [metrics(problems[i], refs[i], w[i, r]) for r in range(reseeds)] for i in range(s_count)
            ]
            traj = np.empty((s_count, reseeds, rec.size, len(NORMS)))
            for k, e in enumerate(rec):
                ws = snaps[int(e)].reshape(s_count, reseeds, d)
                nrm = np.linalg.norm(ws, axis=2, keepdims=True)
                unit = np.divide(ws, nrm, out=np.full_like(ws, np.nan), where=nrm > 0)
                traj[:, :, k, :] = np.einsum("srd,snd->srn", unit, dirs)
            trajs[(c.label, o)] = traj
    return OptimizerStudy(tuple(problems), refs, conds, tuple(optimizers), rec, final_w, mets, trajs)
