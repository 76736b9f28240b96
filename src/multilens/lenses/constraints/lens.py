"""Constraints lens: constrained training with held-out violations, shadow prices, O(1/sqrt T), infeasibility, Pareto.

Subject: :class:`ConstrainedSubject`: one or more :class:`Task` (a torch model giving one logit per
row, a mean loss ``loss_fn(logits, y)``, ``train``/``holdout`` ``(x, y, g)`` tensors with labels and
group in {0, 1}, and :class:`RateConstraint` functions with their bounds; the first task is the main
one), optionally a convex :class:`QP` (for ``duality``, ``rate``, ``infeasibility``) and a
multiclass ``(x_train, y_train, x_test, y_test)`` set for the ``pareto`` population.

Parts and their checks:

* ``held_out``: unconstrained, primal-dual (GDA) and augmented-Lagrangian training; the true
  (hard-prediction; binned for the ECE) values beside their proxies at EVERY evaluation, on train and
  held-out data, each with a percentile-bootstrap interval over resampled rows (table
  ``constraint_history``, figures ``history_<task>_<constraint>``). ``held_out_violation`` (bound): the
  main task's worst held-out excess over its bound at the end must stay <= ``slack``; a constraint met on
  train and violated on held-out fails. Constraints: DP gap, FNR on a slice, ECE (soft-binned proxy,
  binned true value: :func:`~multilens.lenses.constraints.core.ece_constraint`), a parameter budget.
* ``duality`` (THM-DUALITY, A.7): ``duality_gap`` (agreement with 0) and ``shadow_prices``
  (dp*/db_k from exact re-solves at b_k +- h against -lambda_k from the primal-dual run; agreement).
* ``rate`` (B.10): ``rate_1_over_sqrt_T``: the fitted log-log slope of objective gap + violation of
  the averaged iterates against T, interval over noise seeds, upper end <= -1/2 + slack (bound).
* ``infeasibility`` (WE-11): ``infeasibility_alarm``: the alarm fires on the infeasible QP and the
  infeasible DP bound, and not on the feasible problems (agreement).
* ``pareto`` (A.18): accuracy, PGD robustness and timed latency of a width x adversarial-training x
  unit-pruning population (trained by :func:`population_task` on JSON specs, through
  ``runtime.executor`` when there is one: the same numbers either way; latency is timed here);
  non-domination probabilities, hypervolume with interval, scalarization vs epsilon-constraint,
  unsupported points named; the front re-checked under input noise.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from multilens import plots, stats
from multilens.errors import ConfigError, MultilensError
from multilens.lenses.constraints import pareto as pf
from multilens.lenses.constraints.core import (
    QP,
    InfeasibleConstraints,
    RateConstraint,
    TrainSettings,
    dp_gap_constraint,
    ece_constraint,
    fnr_constraint,
    infeasible_qp,
    logits_of,
    qp_dual_value,
    qp_primal_dual,
    random_qp,
    solve_qp_exact,
    train_constrained,
)
from multilens.lenses.constraints.settings import (
    DualitySettings,
    HeldOutSettings,
    InfeasibilitySettings,
    ParetoSettings,
    RateSettings,
    Settings,
)
from multilens.lenses.contract import Runtime, finish, part_seed, run_parts
from multilens.results import (
    Assumption,
    Check,
    Estimate,
    LensResult,
    Part,
    Recommendation,
    Table,
    check_bound,
    check_within,
    metric_with_interval,
)
from multilens.seeding import torch_generator

LENS = "constraints"
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


@dataclass(frozen=True, eq=False)
class Task:
    name: str
    model: nn.Module
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    train: Batch
    holdout: Batch
    constraints: tuple[RateConstraint, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.model, nn.Module):
            raise ConfigError(f"task {self.name!r}: `model` must be a torch.nn.Module.")
        if not self.constraints:
            raise ConfigError(f"task {self.name!r}: give at least one RateConstraint.")
        for what, data in (("train", self.train), ("holdout", self.holdout)):
            if not (isinstance(data, (tuple, list)) and len(data) == 3):
                raise ConfigError(f"task {self.name!r}: `{what}` must be an (x, y, g) triple of tensors.")


@dataclass(frozen=True, eq=False)
class ConstrainedSubject:
    tasks: tuple[Task, ...] = ()
    qp: QP | None = None
    population_data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    # how an executor's worker reloads ``population_data`` (JSON, e.g. {"kind": "digits", "seed": 3}); without it
    # the data travel in the task specs as lists
    population_source: dict[str, Any] | None = None


def bce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.binary_cross_entropy_with_logits(logits, y)


def logistic_model(d_in: int, seed: int) -> nn.Module:
    lin = nn.Linear(d_in, 1, device="meta").to_empty(device="cpu")
    g = torch_generator(seed)
    with torch.no_grad():
        lin.weight.uniform_(-1 / math.sqrt(d_in), 1 / math.sqrt(d_in), generator=g)
        lin.bias.zero_()
    return lin


def default_subject(settings: Settings, *, seed: int, runtime: Runtime | None = None) -> ConstrainedSubject:
    from multilens.data.digits import load_digits_split
    from multilens.data.groups import digits_group_task, make_group_task
    from multilens.models.mlp import MLPSpec, build_mlp

    t = make_group_task(
        settings.n_train, settings.n_test, settings.d, settings.disparity, seed=part_seed(seed, LENS, "data")
    )
    tau = settings.proxy_temperature
    cons = (dp_gap_constraint(settings.dp_bound, tau), fnr_constraint(settings.fnr_bound, group=1, temperature=tau))
    tasks = [
        Task("logistic", logistic_model(t.d_in, part_seed(seed, LENS, "logistic")), bce, t.train(), t.test(), cons),
        Task(
            "mlp",
            build_mlp(MLPSpec(t.d_in, (settings.mlp_width,), 1), part_seed(seed, LENS, "mlp")),
            bce,
            t.train(),
            t.test(),
            (dp_gap_constraint(settings.dp_bound, tau), ece_constraint(settings.ece_bound, settings.ece_bins)),
        ),
    ]
    info = {"tabular": t.name, "tabular_base_rate_gap_exact": t.base_rate_gap}
    if settings.digits:
        dg = digits_group_task(seed)
        tasks.append(
            Task(
                "digits_logistic",
                logistic_model(dg.d_in, part_seed(seed, LENS, "digits")),
                bce,
                dg.train(),
                dg.test(),
                (dp_gap_constraint(settings.dp_bound, tau),),
            )
        )
        info["digits_base_rate_gap"] = dg.base_rate_gap
    d = load_digits_split(seed)
    qp = random_qp(settings.qp_d, settings.qp_m, part_seed(seed, LENS, "qp"))
    return ConstrainedSubject(
        tuple(tasks),
        qp,
        (d.x_train, d.y_train, d.x_test, d.y_test),
        info,
        population_source={"kind": "digits", "seed": int(seed)},
    )


# ----------------------------------------------------------------------------------------------- held_out
def _predictions(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return (logits_of(model.eval(), x) > 0).numpy().astype(float)


def _probabilities(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return torch.sigmoid(logits_of(model.eval(), x)).double().numpy()


def _rate_ci(c: RateConstraint, model, data: Batch, n_boot: int, level: float, seed: int) -> stats.Interval:
    x, y, g = data
    if c.true_from_predictions is None:
        v = c.true(model, x, y, g)
        return stats.Interval(v, math.nan, math.nan, math.nan, 1, level, "exact", 0, stats.DETERMINISTIC)
    pred = _probabilities(model, x) if c.uses_probabilities else _predictions(model, x)
    return stats.bootstrap_ci(
        lambda p, yy, gg: c.true_from_predictions(p, yy, gg),
        pred,
        y.numpy(),
        g.numpy(),
        n_boot=n_boot,
        level=level,
        seed=seed,
    )


def _excess_ci(cons, model, data: Batch, n_boot: int, level: float, seed: int) -> stats.Interval:
    """max_k (true_k - b_k) with a bootstrap interval (all constraints on the same resamples)."""
    x, y, g = data
    pred, prob = _predictions(model, x), _probabilities(model, x)
    fns = [c for c in cons if c.true_from_predictions is not None]
    if not fns:
        v = max(c.true(model, x, y, g) - c.bound for c in cons)
        return stats.Interval(v, math.nan, math.nan, math.nan, 1, level, "exact", 0, stats.DETERMINISTIC)

    def stat(p, q, yy, gg):
        return max(c.true_from_predictions(q if c.uses_probabilities else p, yy, gg) - c.bound for c in fns)

    return stats.bootstrap_ci(stat, pred, prob, y.numpy(), g.numpy(), n_boot=n_boot, level=level, seed=seed)


def _fit(task: Task, ts: TrainSettings, seed: int) -> tuple[Any, str | None]:
    try:
        return train_constrained(
            task.model, task.loss_fn, task.train, task.constraints, ts, seed=seed, holdout=task.holdout
        ), None
    except InfeasibleConstraints as e:
        return None, str(e)


HISTORY_COLUMNS = [
    "task",
    "method",
    "step",
    "constraint",
    "bound",
    "lambda",
    *[
        f"{split} {kind}{suffix}"
        for split in ("train", "held-out")
        for kind in ("proxy", "true")
        for suffix in ("", " ci low", " ci high")
    ],
]


def _history_rows(task: Task, meth: str, history: list[dict]) -> list[list]:
    rows = []
    for h in history:
        for k, c in enumerate(task.constraints):
            row = [task.name, meth, h["step"], c.name, c.bound, h["lambdas"][k] if h["lambdas"] else None]
            for split in ("train", "holdout"):
                for kind in ("proxy", "true"):
                    key = f"{split}.{kind}.{c.name}"
                    lo, hi = h.get(f"{key}_ci", [None, None])
                    row += [h.get(key), lo, hi]
            rows.append(row)
    return rows


def _history_figure(task: Task, c: RateConstraint, history: list[dict], level: float) -> Any:
    steps = [h["step"] for h in history]
    traces: list = []
    for i, (key, label) in enumerate(
        (("train.proxy", "train proxy"), ("train.true", "train true"), ("holdout.true", "held-out true"))
    ):
        k = f"{key}.{c.name}"
        ci = [h.get(f"{k}_ci", [None, None]) for h in history]
        color = plots.PALETTE[i]
        traces += plots.band_traces(steps, [v[0] for v in ci], [v[1] for v in ci], label, color=color)
        traces.append(plots.line_trace(steps, [h[k] for h in history], label, color=color))
    traces.append(plots.curve_trace(steps, [c.bound] * len(steps), "bound", color="#444444"))
    return plots.figure(
        f"history_{task.name}_{c.name}",
        f"{task.name}, {c.name}: proxy vs true vs held-out over the primal-dual run",
        traces,
        xlabel="step",
        ylabel=c.name,
        caption=f"Shaded: {100 * level:g}% percentile-bootstrap intervals over resampled rows at each evaluation.",
    )


def held_out_part(subject: ConstrainedSubject, ps: HeldOutSettings, *, seed: int, level: float) -> Part:
    if not subject.tasks:
        raise ConfigError("the `held_out` part needs at least one Task in the subject.")
    ests, checks, rows, hist_rows, metrics, notes = [], [], [], [], {}, []
    base = TrainSettings(
        steps=ps.steps,
        lr=ps.lr,
        dual_lr=ps.dual_lr,
        rho=ps.rho,
        batch_size=ps.batch_size,
        eval_every=ps.eval_every,
        eval_n_boot=ps.history_n_boot,
        level=level,
    )
    figures = []
    for ti, task in enumerate(subject.tasks):
        main = ti == 0
        methods = (["given"] if subject.info.get("user_model") else []) + ["unconstrained", "gda"]
        for meth in methods + (["alm"] if main else []):
            s = part_seed(seed, LENS, f"held_out.{task.name}")  # same example order for every method
            ts = replace(base, method="unconstrained", steps=0) if meth == "given" else replace(base, method=meth)
            fit, alarm = _fit(task, ts, s)
            tag = f"{task.name}.{meth}"
            if fit is None:
                notes.append(f"{tag}: infeasibility alarm, no model: {alarm}")
                if meth == "gda":
                    name = "held_out_violation" if main else f"held_out_violation.{task.name}"
                    checks.append(
                        Check(
                            name,
                            None,
                            None,
                            0.0,
                            ps.slack,
                            f"{tag}: alarm fired, no model to evaluate ({alarm})",
                            kind="bound",
                            criterion="held-out excess <= slack",
                        )
                    )
                continue
            xh, yh, gh = task.holdout
            acc = stats.clopper_pearson(int((_predictions(fit.model, xh) == yh.numpy()).sum()), int(len(yh)), level)
            ests.append(acc.to_estimate(f"holdout_accuracy.{tag}"))
            for c in task.constraints:
                tr = _rate_ci(c, fit.model, task.train, ps.n_boot, level, s + 1)
                ho = _rate_ci(c, fit.model, task.holdout, ps.n_boot, level, s + 2)
                xt, yt, gt = task.train
                with torch.no_grad():
                    proxy = float(c.proxy(fit.model, xt, yt, gt))
                e_ho_c = ho.to_estimate(f"holdout_true.{tag}.{c.name}")
                if c.uses_probabilities and meth == "gda" and f"constraints.holdout_{c.name}" not in metrics:
                    metrics |= metric_with_interval(f"constraints.holdout_{c.name}", e_ho_c)
                    metrics |= metric_with_interval(f"constraints.train_{c.name}", tr.to_estimate("train"))
                ests += [
                    tr.to_estimate(f"train_true.{tag}.{c.name}"),
                    e_ho_c,
                    Estimate(
                        f"proxy_minus_true.{tag}.{c.name}",
                        proxy - tr.estimate,
                        method="train data",
                        no_interval_reason=stats.DETERMINISTIC,
                    ),
                ]
                rows.append(
                    [
                        task.name,
                        meth,
                        c.name,
                        c.bound,
                        proxy,
                        tr.estimate,
                        ho.estimate,
                        ho.low if ho.ok else None,
                        ho.high if ho.ok else None,
                        acc.estimate,
                    ]
                )
            if meth in ("given", "unconstrained"):
                continue
            tr_ex = _excess_ci(task.constraints, fit.model, task.train, ps.n_boot, level, s + 3)
            ho_ex = _excess_ci(task.constraints, fit.model, task.holdout, ps.n_boot, level, s + 4)
            e_tr = tr_ex.to_estimate(f"train_excess.{tag}", note="max_k (true rate_k - bound_k)")
            e_ho = ho_ex.to_estimate(f"holdout_excess.{tag}", note="max_k (true rate_k - bound_k)")
            ests += [e_tr, e_ho]
            for k, c in enumerate(task.constraints):
                ests.append(
                    Estimate(
                        f"lambda.{tag}.{c.name}",
                        float(fit.lambdas[k]),
                        method=f"{meth} final dual",
                        converged=None,
                        n_iter=fit.n_steps,
                        no_interval_reason=stats.SINGLE_SEED,
                    )
                )
            if meth == "gda":
                name = "held_out_violation" if main else f"held_out_violation.{task.name}"
                checks.append(
                    check_bound(
                        name,
                        ho_ex.estimate,
                        0.0,
                        slack=ps.slack,
                        what=f"{task.name}: worst held-out true rate minus bound (train: {tr_ex.estimate:.3g})",
                    )
                )
                checks.append(
                    check_bound(
                        f"train_violation.{task.name}",
                        tr_ex.estimate,
                        0.0,
                        slack=ps.slack,
                        severity="info",
                        what=f"{task.name}: worst train true rate minus bound",
                    )
                )
                if main:
                    metrics |= metric_with_interval("constraints.held_out_violation", e_ho)
                    metrics |= metric_with_interval("constraints.train_violation", e_tr)
                    metrics["constraints.holdout_accuracy"] = acc.estimate
            hist_rows += _history_rows(task, meth, fit.history)
            if meth == "gda" and (main or any(c.uses_probabilities for c in task.constraints)):
                figures += [_history_figure(task, c, fit.history, level) for c in task.constraints]
            if main and meth == "alm":
                metrics |= metric_with_interval("constraints.held_out_violation_alm", e_ho)
    main = subject.tasks[0]
    tables = (
        Table(
            "rates",
            "True rates (hard predictions) beside proxies, train and held-out",
            [
                "task",
                "method",
                "constraint",
                "bound",
                "train proxy",
                "train true",
                "held-out true",
                "held-out ci low",
                "held-out ci high",
                "held-out accuracy",
            ],
            rows,
        ),
        Table(
            "constraint_history",
            "Every evaluation of every constrained run: proxy and true (hard-prediction; binned for ECE) values on "
            f"train and held-out data with {100 * level:g}% percentile-bootstrap intervals ({ps.history_n_boot} "
            "resamples of the rows)",
            HISTORY_COLUMNS,
            hist_rows,
        ),
    )
    assumptions = ()
    recs = ()
    if any(c.name == "held_out_violation" for c in checks):
        assumptions = (
            Assumption(
                "the constraint met on training data also holds on held-out data",
                "held-out evaluation of anything fitted on training data (DESIGN)",
                ("held_out_violation",),
            ),
        )
        v = metrics.get("constraints.held_out_violation")
        if v is not None:
            recs = (
                Recommendation(
                    f"The constrained {main.name} model's worst held-out excess over its bounds is "
                    f"{v:.3g}; it may be deployed under these constraints.",
                    ("held_out_violation",),
                ),
            )
    return Part(
        "held_out",
        estimates=tuple(ests),
        checks=tuple(checks),
        tables=tables,
        figures=tuple(figures),
        metrics=metrics,
        assumptions=assumptions,
        recommendations=recs,
        notes=tuple(notes),
    )


# ----------------------------------------------------------------------------------------------- duality
def duality_part(subject: ConstrainedSubject, ps: DualitySettings, *, seed: int) -> Part:
    qp = subject.qp
    if qp is None:
        raise ConfigError("the `duality` part needs a convex QP in the subject (`qp=`).")
    exact = solve_qp_exact(qp)
    run = qp_primal_dual(qp, ps.steps, ps.eta, ps.gamma)
    lam = run.lam_last
    primal, dual = qp.objective(run.x_last), qp_dual_value(qp, lam)
    gap = primal - dual
    checks = [
        check_within(
            "duality_gap",
            gap,
            0.0,
            ps.tol,
            kind="agreement",
            what=f"strong duality: f(x_T) - q(lambda_T) after {ps.steps} GDA steps",
        )
    ]
    ests = [
        Estimate(
            "duality_gap",
            gap,
            method="f(x_T) - q(lambda_T)",
            converged=None,
            n_iter=ps.steps,
            no_interval_reason=stats.DETERMINISTIC,
        ),
        Estimate(
            "primal_violation",
            qp.violation(run.x_last),
            method="||[A x_T - b]_+||",
            no_interval_reason=stats.DETERMINISTIC,
        ),
        Estimate(
            "objective_error",
            primal - exact.value,
            method="f(x_T) - p* (exact active-set solution)",
            no_interval_reason=stats.DETERMINISTIC,
        ),
    ]
    rows, errs = [], []
    for k in range(qp.a.shape[0]):
        hi, lo = solve_qp_exact(qp.with_bound(k, ps.h)), solve_qp_exact(qp.with_bound(k, -ps.h))
        fd = (hi.value - lo.value) / (2 * ps.h)
        errs.append(abs(fd + lam[k]))
        ests.append(
            Estimate(
                f"shadow_price.b{k}",
                fd,
                method=f"central difference of p*, h = {ps.h:g}",
                no_interval_reason="exact re-solves; finite-difference error O(h^2) away from kinks",
            )
        )
        rows.append([k, float(qp.b[k]), float(lam[k]), float(exact.lambdas[k]), fd, float(-lam[k])])
    worst = int(np.argmax(errs))
    checks.append(
        check_within(
            "shadow_prices",
            float(rows[worst][4]),
            float(rows[worst][5]),
            ps.tol,
            kind="agreement",
            what=f"A.7: dp*/db_k (re-solved) vs -lambda_k (GDA) over {len(rows)} constraints, worst k = {worst}",
        )
    )
    n_active = int(np.sum(exact.lambdas > 1e-9))
    table = Table(
        "shadow_prices",
        "Shadow prices: dp*/db_k by re-solving vs -lambda_k",
        ["k", "b_k", "lambda_k (GDA)", "lambda_k (exact KKT)", "dp*/db_k", "-lambda_k"],
        rows,
    )
    assumptions = (
        Assumption(
            "convex objective and constraints with a strictly feasible point (Slater)",
            "THM-DUALITY (seed L177-181)",
            ("duality_gap",),
        ),
    )
    return Part(
        "duality",
        estimates=tuple(ests),
        checks=tuple(checks),
        tables=(table,),
        assumptions=assumptions,
        metrics={"constraints.duality_gap": abs(gap), "constraints.qp_active_constraints": float(n_active)},
        notes=(f"{n_active} of {len(rows)} constraints active at the optimum",),
    )


# ----------------------------------------------------------------------------------------------- rate
def rate_part(subject: ConstrainedSubject, ps: RateSettings, *, seed: int, level: float) -> Part:
    qp = subject.qp
    if qp is None:
        raise ConfigError("the `rate` part needs a convex QP in the subject (`qp=`).")
    p_star = solve_qp_exact(qp).value
    horizons = np.asarray(ps.horizons, float)
    err = np.zeros((ps.n_seeds, len(horizons), 2))
    for i in range(ps.n_seeds):
        s = part_seed(seed, LENS, f"rate.{i}")
        for j, t in enumerate(ps.horizons):
            r = qp_primal_dual(qp, t, ps.eta0 / math.sqrt(t), ps.gamma0 / math.sqrt(t), noise=ps.noise, seed=s + j)
            err[i, j] = abs(qp.objective(r.x_avg) - p_star), qp.violation(r.x_avg)
    total = err.sum(-1)
    lt = np.log(horizons)
    slopes = {
        k: [float(np.polyfit(lt, np.log(np.maximum(v[i], 1e-300)), 1)[0]) for i in range(ps.n_seeds)]
        for k, v in (("total", total), ("gap", err[..., 0]), ("violation", err[..., 1]))
    }
    cis = {k: stats.mean_ci(v, level) for k, v in slopes.items()}
    ests = [
        cis[k].to_estimate(f"slope_{k}", note="log-log slope against T; B.10 predicts <= -1/2")
        for k in ("total", "gap", "violation")
    ]
    ci = cis["total"]
    check = check_bound(
        "rate_1_over_sqrt_T",
        ci.high if ci.ok else None,
        -0.5,
        slack=ps.slack,
        what=f"B.10: upper end of the slope interval of |f - p*| + ||[Ax - b]_+|| (averaged iterates, "
        f"eta = {ps.eta0:g}/sqrt(T), gamma = {ps.gamma0:g}/sqrt(T), slope {ci.estimate:.3f}; allowed: -1/2 + slack "
        f"{ps.slack:g})",
    )
    rows = [
        [int(t), float(np.mean(err[:, j, 0])), float(np.mean(err[:, j, 1])), float(np.mean(total[:, j]))]
        for j, t in enumerate(ps.horizons)
    ]
    table = Table(
        "rate",
        "Averaged-iterate objective gap and violation vs T (mean over seeds)",
        ["T", "objective gap", "violation", "sum"],
        rows,
    )
    # B.10's trade-off: the dual step scale gamma0 shifts error between objective gap and violation.
    t_max = int(max(ps.horizons))
    trade = []
    for gk, g0 in enumerate(ps.dual_step_scales):
        e = []
        for i in range(ps.n_seeds):
            s = part_seed(seed, LENS, f"rate.tradeoff.{gk}.{i}")
            r = qp_primal_dual(qp, t_max, ps.eta0 / math.sqrt(t_max), g0 / math.sqrt(t_max), noise=ps.noise, seed=s)
            e.append((abs(qp.objective(r.x_avg) - p_star), qp.violation(r.x_avg)))
        e_arr = np.asarray(e)
        cg, cv = stats.mean_ci(e_arr[:, 0], level), stats.mean_ci(e_arr[:, 1], level)
        ests += [cg.to_estimate(f"tradeoff_gap.gamma0_{g0:g}"), cv.to_estimate(f"tradeoff_violation.gamma0_{g0:g}")]
        trade.append([g0, t_max, cg.estimate, cv.estimate])
    trade_table = Table(
        "dual_step_tradeoff",
        f"Objective gap and violation at T = {t_max} for dual steps gamma0/sqrt(T) (mean over seeds)",
        ["gamma0", "T", "objective gap", "violation"],
        trade,
    )
    return Part(
        "rate",
        estimates=tuple(ests),
        checks=(check,),
        tables=(table, trade_table),
        metrics=metric_with_interval("constraints.rate_slope", ests[0]),
    )


# ----------------------------------------------------------------------------------------------- infeasibility
def infeasibility_part(subject: ConstrainedSubject, ps: InfeasibilitySettings, *, seed: int) -> Part:
    cases: list[tuple[str, bool, bool, str]] = []  # (name, infeasible by construction, alarm fired, message)
    if subject.qp is not None:
        d = subject.qp.q.shape[0]
        for name, qp, bad in (("qp_feasible", subject.qp, False), ("qp_infeasible", infeasible_qp(d), True)):
            r = qp_primal_dual(qp, ps.qp_steps, 0.05, 0.05, alarm_violation=ps.alarm_violation)
            cases.append((name, bad, r.alarm is not None, r.alarm or "no alarm"))
    if subject.tasks:
        task = subject.tasks[0]
        ts = TrainSettings(
            method="gda", steps=ps.steps, eval_every=max(1, ps.steps // 24), alarm_violation=ps.alarm_violation
        )
        infeasible = tuple(
            c if c.name != "dp_gap" else replace(c, bound=ps.infeasible_dp_bound) for c in task.constraints
        )
        if not any(c.name == "dp_gap" for c in task.constraints):
            infeasible = (*task.constraints, dp_gap_constraint(ps.infeasible_dp_bound))
        for name, cons, bad in (
            (f"{task.name}_feasible", task.constraints, False),
            (f"{task.name}_dp_below_zero", infeasible, True),
        ):
            s = part_seed(seed, LENS, "infeasibility.train")
            try:
                train_constrained(task.model, task.loss_fn, task.train, cons, ts, seed=s)
                cases.append((name, bad, False, "no alarm: a model was returned"))
            except InfeasibleConstraints as e:
                cases.append((name, bad, True, str(e)))
    if not cases:
        raise ConfigError("the `infeasibility` part needs a QP or a Task in the subject.")
    ok = all(bad == fired for _, bad, fired, _ in cases)
    wrong = [n for n, bad, fired, _ in cases if bad != fired]
    check = Check(
        "infeasibility_alarm",
        bool(ok),
        float(sum(f for _, _, f, _ in cases)),
        float(sum(b for _, b, _, _ in cases)),
        None,
        "WE-11: alarm fired exactly on the infeasible controls" if ok else f"WE-11: alarm wrong on {wrong}",
        kind="agreement",
        criterion="alarm fires on every infeasible control and on no feasible problem",
    )
    table = Table(
        "infeasibility",
        "Infeasibility alarm (WE-11)",
        ["problem", "infeasible by construction", "alarm fired", "message"],
        [list(c) for c in cases],
    )
    return Part("infeasibility", checks=(check,), tables=(table,), metrics={"constraints.alarm_correct": float(ok)})


# ----------------------------------------------------------------------------------------------- pareto
def _train_mc(model, x, y, epochs, adv_eps, seed):
    g = torch_generator(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        perm = torch.randperm(x.shape[0], generator=g)
        for i in range(0, x.shape[0], 64):
            xb, yb = x[perm[i : i + 64]], y[perm[i : i + 64]]
            if adv_eps > 0:
                xa = xb.clone().requires_grad_(True)
                (gx,) = torch.autograd.grad(nn.functional.cross_entropy(model(xa), yb), xa)
                xb = torch.cat([xb, (xb + adv_eps * gx.sign()).detach()])
                yb = torch.cat([yb, yb])
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
    return model.eval()


def pgd_correct(model, x, y, eps, steps) -> np.ndarray:
    """Per-example correctness under an L-inf PGD attack (step 2.5 eps / steps, start at x)."""
    xa = x.clone()
    alpha = 2.5 * eps / steps
    for _ in range(steps):
        xa.requires_grad_(True)
        (gx,) = torch.autograd.grad(nn.functional.cross_entropy(model(xa), y), xa)
        xa = (x + (xa.detach() + alpha * gx.sign() - x).clamp(-eps, eps)).detach()
    with torch.no_grad():
        return (model(xa).argmax(-1) == y).numpy()


def prune_units(model: nn.Sequential, keep: float) -> nn.Sequential:
    """A smaller copy of a Linear-act-Linear-... MLP keeping the hidden units with the largest in x out weight norms."""
    m = copy.deepcopy(model)
    lins = [i for i, layer in enumerate(m) if isinstance(layer, nn.Linear)]
    for a, b in zip(lins[:-1], lins[1:]):
        la, lb = m[a], m[b]
        score = la.weight.detach().norm(dim=1) * lb.weight.detach().norm(dim=0)
        k = max(1, int(round(keep * la.out_features)))
        idx = torch.argsort(score, descending=True, stable=True)[:k].sort().values
        na = nn.Linear(la.in_features, k, device="meta").to_empty(device="cpu")
        nb = nn.Linear(k, lb.out_features, device="meta").to_empty(device="cpu")
        with torch.no_grad():
            na.weight.copy_(la.weight[idx])
            na.bias.copy_(la.bias[idx])
            nb.weight.copy_(lb.weight[:, idx])
            nb.bias.copy_(lb.bias)
        m[a], m[b] = na, nb
    return m


def _forward_flops(m: nn.Sequential) -> int:
    """Per-example forward FLOPs: 2 in out + out per Linear, one per hidden activation."""
    lins = [layer for layer in m if isinstance(layer, nn.Linear)]
    return sum(2 * lin.in_features * lin.out_features + lin.out_features for lin in lins) + sum(
        lin.out_features for lin in lins[:-1]
    )


def _front_analysis(
    pts: np.ndarray,
    boot_pts: list[np.ndarray],
    ref: np.ndarray,
    configs: list[str],
    level: float,
    weight_steps: int,
    prefix: str,
    what: str,
) -> tuple[list, list, dict, dict]:
    """Estimates, checks, metrics and per-point columns of one front (all objectives maximized)."""
    nd = pf.non_dominated(pts)
    p_nd = np.mean([pf.non_dominated(bp) for bp in boot_pts], axis=0)
    hv = [pf.hypervolume(bp, ref) for bp in boot_pts]
    lo, hi = np.quantile(hv, [(1 - level) / 2, (1 + level) / 2])
    e_hv = Estimate(
        f"{prefix}hypervolume",
        pf.hypervolume(pts, ref),
        ci_low=float(lo),
        ci_high=float(hi),
        stderr=float(np.std(hv, ddof=1)),
        level=level,
        n=len(boot_pts),
        method=f"percentile bootstrap ({len(boot_pts)} resamples)",
        note=what,
    )
    ests = [e_hv] + [
        Estimate(
            f"{prefix}p_nondominated.{c}",
            float(p_nd[i]),
            method="bootstrap frequency",
            n=len(boot_pts),
            no_interval_reason="a bootstrap frequency (itself the uncertainty)",
        )
        for i, c in enumerate(configs)
    ]
    norm = pf.normalize(pts)
    sel = pf.scalarization_selects(norm, pf.weight_grid(pts.shape[1], weight_steps))
    supported = [pf.lp_supported(norm, i) for i in range(len(pts))]
    eps_sel = pf.epsilon_constraint(pts)
    front = set(np.flatnonzero(nd).tolist())
    unsupported = [configs[i] for i in sorted(front) if not supported[i]]
    bad_sel = [configs[i] for i in sel if not supported[i]]
    checks = [
        Check(
            f"{prefix}scalarization_selects_only_supported",
            not bad_sel,
            float(len(bad_sel)),
            0.0,
            None,
            f"A.18 ({what}): the weight grid ({weight_steps} steps) selected {sorted(configs[i] for i in sel)}; "
            f"not LP-supported among them: {bad_sel or 'none'}; unsupported non-dominated points (no weight "
            f"selects them): {unsupported or 'none'}",
            kind="sanity",
            criterion="every grid-selected point is LP-supported",
        ),
        Check(
            f"{prefix}epsilon_constraint_recovers_front",
            eps_sel == front,
            float(len(eps_sel)),
            float(len(front)),
            None,
            f"{what}: epsilon-constraint solutions {sorted(configs[i] for i in eps_sel)} vs non-dominated "
            f"{sorted(configs[i] for i in front)} (Chankong-Haimes: equal unless points tie; a self-test of both)",
            kind="sanity",
            criterion="the epsilon-constraint solution set equals the non-dominated set",
        ),
    ]
    metrics = metric_with_interval(f"constraints.{prefix}pareto_hypervolume", e_hv) | {
        f"constraints.{prefix}pareto_n_nondominated": float(nd.sum()),
        f"constraints.{prefix}pareto_n_unsupported": float(len(unsupported)),
    }
    cols = {
        "non-dominated": nd.tolist(),
        "P(non-dominated)": p_nd.tolist(),
        "LP-supported": supported,
        "selected by a weight": [i in sel for i in range(len(pts))],
        "epsilon-constraint": [i in eps_sel for i in range(len(pts))],
    }
    return ests, checks, metrics, cols


POPULATION_TASK = "multilens.lenses.constraints.lens:population_task"


def _population_data(d: dict[str, Any]) -> tuple[torch.Tensor, ...]:
    if d["kind"] == "digits":
        from multilens.data.digits import load_digits_split

        s = load_digits_split(int(d["seed"]))
        return s.x_train, s.y_train, s.x_test, s.y_test
    if d["kind"] == "arrays":
        dt = getattr(torch, d.get("dtype", "float32"))
        return (
            torch.tensor(d["x_train"], dtype=dt),
            torch.tensor(d["y_train"], dtype=torch.long),
            torch.tensor(d["x_test"], dtype=dt),
            torch.tensor(d["y_test"], dtype=torch.long),
        )
    raise ConfigError(f"population data `kind` must be 'digits' or 'arrays'; got {d['kind']!r}.")


def population_task(spec: dict[str, Any]) -> dict[str, Any]:
    """One (width, adversarial-training eps) model of the Pareto population, trained and then unit-pruned at
    each kept fraction: per-example clean, PGD and shifted correctness, forward FLOPs and the weights (JSON).
    A pure function of ``spec`` (the same numbers in any process)."""
    from multilens.models.mlp import MLPSpec, build_mlp

    xtr, ytr, xte, yte = _population_data(spec["data"])
    w, eps, s = int(spec["width"]), float(spec["adv_eps"]), int(spec["seed"])
    gshift = torch_generator(int(spec["shift_seed"]))
    x_shift = xte + float(spec["shift_noise"]) * torch.randn(xte.shape, generator=gshift, dtype=xte.dtype)
    base = _train_mc(
        build_mlp(MLPSpec(xtr.shape[1], (w,), int(spec["n_classes"])), s), xtr, ytr, spec["epochs"], eps, s
    )
    out = []
    for keep in spec["keep_units"]:
        m = prune_units(base, keep) if keep < 1.0 else base
        with torch.no_grad():
            correct = (m(xte).argmax(-1) == yte).tolist()
            shifted = (m(x_shift).argmax(-1) == yte).tolist()
        robust = pgd_correct(m, xte, yte, float(spec["pgd_eps"]), int(spec["pgd_steps"])).tolist()
        hidden = next(layer for layer in m if isinstance(layer, nn.Linear)).out_features
        out.append(
            {
                "config": f"w{w}_adv{eps:g}_keep{keep:g}",
                "hidden": int(hidden),
                "correct": correct,
                "robust": robust,
                "shifted": shifted,
                "flops": _forward_flops(m),
                "state": {k: v.tolist() for k, v in m.state_dict().items()},
            }
        )
    return {"models": out}


def _run_population(specs: list[dict[str, Any]], runtime: Runtime | None) -> list[dict[str, Any]]:
    """The population tasks through ``runtime.executor`` when there is one, else in process on one torch
    thread (a worker's setting, so the numbers are identical either way); results in spec order."""
    from multilens.experiments.executors import execute_task

    executor = runtime.executor if runtime is not None else None
    if executor is None:
        pairs = [(i, execute_task(POPULATION_TASK, s, threads=1)) for i, s in enumerate(specs)]
    else:
        pairs = list(executor.map_unordered(POPULATION_TASK, specs))
    out: list[Any] = [None] * len(specs)
    for i, res in pairs:
        if not res.get("ok"):
            first = str(res.get("error", "")).splitlines()[0] if res.get("error") else "unknown error"
            raise MultilensError(f"pareto population run {i} (width {specs[i]['width']}, adv eps "
                                 f"{specs[i]['adv_eps']:g}) failed: {first}")  # fmt: skip
        out[i] = res["result"]
    return out


def pareto_part(
    subject: ConstrainedSubject, ps: ParetoSettings, *, seed: int, level: float, runtime: Runtime | None = None
) -> Part:
    """Two fronts over the same population: (accuracy, PGD accuracy, -FLOPs), reproducible, and
    (accuracy, PGD accuracy, -measured latency), whose names carry ``latency_front.`` (timing-dependent)."""
    from multilens.models.mlp import MLPSpec, build_mlp

    if subject.population_data is None:
        raise ConfigError("the `pareto` part needs `population_data=(x_train, y_train, x_test, y_test)`.")
    xtr, ytr, xte, yte = subject.population_data
    n_cls = int(max(int(ytr.max()), int(yte.max())) + 1)
    if subject.population_source is not None:
        data: dict[str, Any] = dict(subject.population_source)
    else:
        names = ("x_train", "y_train", "x_test", "y_test")
        data = {"kind": "arrays", "dtype": str(xtr.dtype).removeprefix("torch.")}
        data |= {k: v.tolist() for k, v in zip(names, subject.population_data)}
    specs = [
        {
            "width": int(w),
            "adv_eps": float(eps),
            "keep_units": [float(k) for k in ps.keep_units],
            "epochs": ps.epochs,
            "seed": part_seed(seed, LENS, f"pareto.{w}.{eps}"),
            "pgd_eps": ps.pgd_eps,
            "pgd_steps": ps.pgd_steps,
            "shift_noise": ps.shift_noise,
            "shift_seed": part_seed(seed, LENS, "pareto.shift"),
            "n_classes": n_cls,
            "data": data,
        }
        for w in ps.widths
        for eps in ps.adv_eps
    ]
    outcomes = _run_population(specs, runtime)
    configs, models, correct, robust, shifted, flops = [], [], [], [], [], []
    for out in outcomes:
        for r in out["models"]:
            m = build_mlp(MLPSpec(xtr.shape[1], (r["hidden"],), n_cls), 0)
            m.load_state_dict({k: torch.tensor(v, dtype=xtr.dtype) for k, v in r["state"].items()})
            models.append(m.eval())
            configs.append(r["config"])
            correct.append(np.asarray(r["correct"], bool))
            robust.append(np.asarray(r["robust"], bool))
            shifted.append(np.asarray(r["shifted"], bool))
            flops.append(int(r["flops"]))
    # Latency: round-robin over the population so load drift on a shared machine hits every model alike.
    xt = xte[: ps.timing_batch]
    times = [[] for _ in models]
    with torch.no_grad():
        for m in models:
            for _ in range(3):
                m(xt)
        for _ in range(ps.n_timing):
            for i, m in enumerate(models):
                t0 = time.perf_counter()
                m(xt)
                times[i].append((time.perf_counter() - t0) * 1e3)
    times = [np.asarray(t) for t in times]
    c, r = np.array(correct, float), np.array(robust, float)
    fl = np.array(flops, float)
    lat = np.array([t.mean() for t in times])
    rng = np.random.default_rng(part_seed(seed, LENS, "pareto.boot"))
    boot_idx = [rng.integers(0, c.shape[1], c.shape[1]) for _ in range(ps.n_boot)]
    pts = np.stack([c.mean(1), r.mean(1), -fl], 1)
    boot = [np.stack([c[:, i].mean(1), r[:, i].mean(1), -fl], 1) for i in boot_idx]
    ests, checks, metrics, cols = _front_analysis(
        pts,
        boot,
        np.array([0.0, 0.0, -2.0 * fl.max()]),
        configs,
        level,
        ps.weight_steps,
        "",
        "accuracy x PGD accuracy x -FLOPs",
    )
    lrng = np.random.default_rng(part_seed(seed, LENS, "pareto.latency_boot"))
    lpts = np.stack([c.mean(1), r.mean(1), -lat], 1)
    lboot = [
        np.stack([c[:, i].mean(1), r[:, i].mean(1), -np.array([lrng.choice(t, t.size).mean() for t in times])], 1)
        for i in boot_idx
    ]
    le, lc, lm, lcols = _front_analysis(
        lpts,
        lboot,
        np.array([0.0, 0.0, -2.0 * lat.max()]),
        configs,
        level,
        ps.weight_steps,
        "latency_front.",
        "accuracy x PGD accuracy x -latency",
    )
    ests += le
    checks += lc
    metrics |= lm
    for i, cfg in enumerate(configs):
        li = stats.batch_means_ci(times[i], n_batches=min(5, len(times[i])), level=level)
        ests.append(li.to_estimate(f"latency_ms.{cfg}", unit="ms"))
        ests.append(stats.clopper_pearson(int(c[i].sum()), c.shape[1], level).to_estimate(f"accuracy.{cfg}"))
        ests.append(stats.clopper_pearson(int(r[i].sum()), r.shape[1], level).to_estimate(f"pgd_accuracy.{cfg}"))
    sh = np.array(shifted, float).mean(1)
    nd_shift = pf.non_dominated(np.stack([sh, r.mean(1), -fl], 1))
    rows = [
        [
            cfg,
            float(pts[i, 0]),
            float(pts[i, 1]),
            int(fl[i]),
            *[v[i] for v in cols.values()],
            float(sh[i]),
            bool(nd_shift[i]),
        ]
        for i, cfg in enumerate(configs)
    ]
    table = Table(
        "population",
        "Model population (width x FGSM training eps x kept hidden units): Pareto status on "
        "accuracy x PGD accuracy x -FLOPs; latency fronts are in the latency_front.* estimates and checks",
        [
            "model",
            "accuracy",
            "PGD accuracy",
            "forward FLOPs",
            *cols,
            f"accuracy under noise {ps.shift_noise:g}",
            "non-dominated under shift",
        ],
        rows,
    )
    lost = [configs[i] for i in np.flatnonzero(pf.non_dominated(pts) & ~nd_shift)]
    notes = (f"front points no longer non-dominated under input noise {ps.shift_noise:g}: {lost or 'none'}",)
    return Part("pareto", estimates=tuple(ests), checks=tuple(checks), tables=(table,), metrics=metrics, notes=notes)


def measure(
    subject: ConstrainedSubject, settings: Settings, *, seed: int, runtime: Runtime | None = None
) -> LensResult:
    t0 = time.perf_counter()
    lv = settings.level
    parts, notes = run_parts(
        LENS,
        [
            ("held_out", settings.held_out, lambda ps, s: held_out_part(subject, ps, seed=s, level=lv)),
            ("duality", settings.duality, lambda ps, s: duality_part(subject, ps, seed=s)),
            ("rate", settings.rate, lambda ps, s: rate_part(subject, ps, seed=s, level=lv)),
            ("infeasibility", settings.infeasibility, lambda ps, s: infeasibility_part(subject, ps, seed=s)),
            ("pareto", settings.pareto, lambda ps, s: pareto_part(subject, ps, seed=s, level=lv, runtime=runtime)),
        ],
        seed,
    )
    return finish(LENS, parts, settings, seed, t0, notes=notes, data={"subject": dict(subject.info)})
