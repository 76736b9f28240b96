"""The curvature lens on the lens contract: ``measure(subject, settings, seed=...) -> LensResult``.

The subject (:class:`Subject`) is what a user passes: a torch ``model`` (never modified), a
``loss_fn(outputs, targets)`` returning the *mean* loss of a batch, and ``data``: one ``(x, y)``
pair of tensors, a list of such batches, or a ``DataLoader`` yielding them. The Hessian studied is
that of the mean loss over all of ``data``. ``eval_data`` (optional, one ``(x, y)`` pair; default:
``data`` concatenated) holds the examples the margin and the invariance study's input-noise
metric are measured on. :func:`default_subject` trains the bundled MLP classifier on the digits.

Parts (each one its own settings table and random stream, ``part_seed(seed, "curvature", part)``):

* ``eigenvalues``: the top-k eigenvalues (Lanczos, converged on explicit residuals) against the
  dense Hessian's ``eigh``; the geometry gate's ``kappa`` (the top eigenvalue: a sharpness proxy,
  not a condition number);
* ``trace``: Hutch++ and Hutchinson at equal budget, with intervals, against the dense trace;
* ``density``: the SLQ spectral density, its extremes against the dense extremes;
* ``per_layer``: each layer's diagonal Hessian block (interlacing bound, traces summing to the trace);
* ``margin``: the geometry gate's normalized margin ``m`` with a bootstrap interval;
* ``sharpness``: SAM and ASAM worst-case sharpness against the second-order model;
* ``invariance``: function-preserving reparameterizations and which metrics they change (A.2, A.16,
  B.16, C.16; Kwon et al. 2021, Thm 2);
* ``landscape``: filter-normalized slices; the slice curvature along v1 against lambda_1 (worked
  example 7);
* ``along_training``: full-batch GD on the digits under schedules, lambda_max against 2/eta (C.9);
* ``preconditioning``: constructed quadratics, GD iterations against the closed form (worked
  example 1, B.3).

Shared computations are not parts: the top-k eigenpairs (Lanczos from its own seed
``part_seed(seed, "curvature", "top_eigenpairs")``) and the dense reference are computed once,
on first use, and give the same numbers whichever part asks first.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import torch
from scipy import stats as scipy_stats
from torch import nn

from multilens.data import load_digits_split
from multilens.lenses.contract import Runtime, finish, part_seed, run_parts
from multilens.lenses.curvature import figures as F
from multilens.lenses.curvature.along_training import init_ratio, max_ratio, relative_change, run_schedule
from multilens.lenses.curvature.api import per_layer_table
from multilens.lenses.curvature.functional import FlatModel, as_batches, iter_batches
from multilens.lenses.curvature.hvp import CurvatureOperator
from multilens.lenses.curvature.invariance import (
    build_layernorm_mlp,
    invariance_study,
    rescale_before_norm,
    rescale_relu_layers,
)
from multilens.lenses.curvature.landscape import directions_for, fit_curvature, random_direction, slice_1d, slice_2d
from multilens.lenses.curvature.margin import normalized_margin, per_example_margins
from multilens.lenses.curvature.preconditioning import condition_sweep, preconditioning_sweep
from multilens.lenses.curvature.settings import (
    AlongTrainingSettings,
    DensitySettings,
    EigenvaluesSettings,
    InvarianceSettings,
    LandscapeSettings,
    MarginSettings,
    PerLayerSettings,
    PreconditioningSettings,
    Settings,
    SharpnessSettings,
    TraceSettings,
)
from multilens.lenses.curvature.sharpness import ascent_sharpness, quadratic_bounds
from multilens.linalg import hutchinson, hutchpp, lanczos, slq_density
from multilens.models import MLPSpec, build_mlp
from multilens.results import (
    Assumption,
    Check,
    Estimate,
    LensResult,
    Part,
    Recommendation,
    check_bound,
    check_in_interval,
    check_within,
    metric_with_interval,
)
from multilens.seeding import as_generator, derive_seed
from multilens.stats import DETERMINISTIC, SINGLE_SEED, clopper_pearson
from multilens.train import TrainConfig, evaluate, train_model

LENS = "curvature"
KAPPA_PROXY = "top Hessian eigenvalue of the mean training loss (Lanczos, converged on residuals)"
FIXED_BUDGET = "fixed budget: no stopping rule"
ASCENT = "deterministic ascent on fixed data: no sampling variability; a lower bound on the worst case"


@dataclass(frozen=True)
class Subject:
    """What the curvature lens measures: a model, its mean loss, and the data (see the module docstring)."""

    model: nn.Module
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    data: Any
    eval_data: tuple[torch.Tensor, torch.Tensor] | None = None
    info: Mapping[str, Any] = field(default_factory=dict)


def _f(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


# --- the default subject ---------------------------------------------------------------------------
MAIN_MODEL_HESSIAN_EXAMPLES = 2048  # the main model's Hessian: its first N training examples when hessian_examples = 0


def default_subject(settings: Settings, *, seed: int, runtime: Runtime | None = None) -> Subject:
    """The main model (``allocation.model_path``) when an earlier phase saved one; else an MLP classifier trained on
    the digits (cross-entropy). The Hessian is that of the subject's mean training loss."""
    path = (runtime.inputs if runtime is not None else {}).get("allocation.model_path")
    if path:
        from dataclasses import replace as _replace

        from multilens.lenses.allocation import describe, main_subject
        from multilens.lenses.curvature.adapter import from_subject

        n = settings.hessian_examples or MAIN_MODEL_HESSIAN_EXAMPLES
        subj, _ = from_subject(main_subject(path, n_train=n), settings)
        return _replace(subj, info=dict(subj.info) | {"main_model": describe(path)})
    data = load_digits_split(seed, n_train=settings.n_train or None)
    spec = MLPSpec(data.d_in, tuple(settings.widths), data.n_classes, settings.activation)
    model = build_mlp(spec, seed=derive_seed(seed, "curvature-model"))
    tcfg = TrainConfig(
        optimizer=settings.optimizer, lr=settings.lr, batch_size=settings.batch_size, epochs=settings.epochs, loss="ce"
    )
    res = train_model(model, data.x_train, data.y_train, tcfg, seed=derive_seed(seed, "curvature-train"))
    n_h = settings.hessian_examples or int(data.x_train.shape[0])
    x_h, y_h = data.x_train[:n_h], data.y_train[:n_h]
    info = {
        "name": "digits MLP (bundled)",
        "architecture": f"MLP {data.d_in}-{'-'.join(map(str, settings.widths))}-{data.n_classes}, "
        f"{settings.activation}",
        "n_train": int(data.x_train.shape[0]),
        "hessian_examples": int(x_h.shape[0]),
        "optimizer": settings.optimizer,
        "lr": settings.lr,
        "epochs": settings.epochs,
        "steps": res.steps,
        "diverged": res.diverged,
        "train": evaluate(model, data.x_train, data.y_train, "ce"),
        "test": evaluate(model, data.x_test, data.y_test, "ce"),
    }
    return Subject(
        model,
        nn.functional.cross_entropy,
        iter_batches(x_h, y_h, settings.hessian_batch_size),
        (data.x_train, data.y_train),
        info,
    )


# --- shared, always-available computations ----------------------------------------------------------
class _Shared:
    """The Hessian operator, its top-k eigenpairs and the dense reference, each computed once on first use."""

    def __init__(self, subject: Subject, settings: Settings, seed: int) -> None:
        self.subject = subject
        self.settings = settings
        self.batches = as_batches(subject.data)
        self.flat = FlatModel(subject.model, subject.loss_fn, self.batches, dtype=torch.float64, mode="eval")
        self.op = CurvatureOperator(self.flat, "hessian")
        self.eig_seed = part_seed(seed, LENS, "top_eigenpairs")
        if subject.eval_data is not None:
            self.x_eval, self.y_eval = subject.eval_data
        else:
            self.x_eval = torch.cat([x for x, _ in self.batches])
            self.y_eval = torch.cat([y for _, y in self.batches])

    @cached_property
    def eig(self) -> Any:
        s = self.settings
        k = min(s.k, self.op.dim)
        return lanczos(
            self.op, self.op.dim, k, "LA", tol=s.tol, max_iter=max(s.max_iter, k), seed=self.eig_seed,
            return_eigenvectors=True,
        )  # fmt: skip

    @property
    def lam1(self) -> float:
        return float(self.eig.eigenvalues[0])

    @property
    def v1(self) -> np.ndarray:
        v = self.eig.eigenvectors[:, 0]
        return v / np.linalg.norm(v)

    @cached_property
    def exact(self) -> dict[str, Any] | None:
        """eigh of the explicitly built Hessian when it has at most ``dense_check_max_dim`` rows."""
        if not 0 < self.op.dim <= self.settings.dense_check_max_dim:
            return None
        t0 = time.perf_counter()
        dense = self.op.dense()
        evals = np.linalg.eigvalsh(dense)
        return {
            "eigenvalues_top": [float(v) for v in evals[::-1][: self.settings.k]],
            "trace": float(np.trace(dense)),
            "lambda_min": float(evals[0]),
            "lambda_max": float(evals[-1]),
            "wall_time_s": time.perf_counter() - t0,
        }

    def no_dense_reason(self) -> str:
        return (
            f"not evaluated: {self.op.dim} parameters exceed dense_check_max_dim = "
            f"{self.settings.dense_check_max_dim} (no dense reference)"
        )


# --- the measurement -----------------------------------------------------------------------------------
def measure(subject: Subject, settings: Settings, *, seed: int, runtime: Runtime | None = None) -> LensResult:
    """Every part of the curvature lens on ``subject`` (see the module docstring)."""
    t0 = time.perf_counter()
    if not isinstance(subject, Subject):
        raise TypeError(f"`subject` must be a curvature Subject(model, loss_fn, data); got {type(subject).__name__}.")
    sh = _Shared(subject, settings, seed)
    s = settings
    parts, notes = run_parts(
        LENS,
        [
            ("eigenvalues", s.eigenvalues, lambda ps, ss: eigenvalues_part(sh, ps, seed=ss)),
            ("trace", s.trace, lambda ps, ss: trace_part(sh, ps, seed=ss)),
            ("density", s.density, lambda ps, ss: density_part(sh, ps, seed=ss)),
            ("per_layer", s.per_layer, lambda ps, ss: per_layer_part(sh, ps, seed=ss)),
            ("margin", s.margin, lambda ps, ss: margin_part(sh, ps, seed=ss)),
            ("sharpness", s.sharpness, lambda ps, ss: sharpness_part(sh, ps, seed=ss)),
            ("invariance", s.invariance, lambda ps, ss: invariance_part(sh, ps, seed=ss)),
            ("landscape", s.landscape, lambda ps, ss: landscape_part(sh, ps, seed=ss)),
            ("along_training", s.along_training, lambda ps, ss: along_training_part(ps, seed=ss)),
            ("preconditioning", s.preconditioning, lambda ps, ss: preconditioning_part(ps, seed=ss)),
        ],
        seed,
    )
    if "main_model" in subject.info:
        notes.insert(0, f"subject: {subject.info.get('name')} (allocation.model_path)")
    notes.insert(
        0,
        f"kappa, the geometry gate's curvature proxy, is the {KAPPA_PROXY}; m is the normalized margin "
        "(a low quantile of (z_y - max_(j != y) z_j)/||z||_2 over training points).",
    )
    data = {
        "model": dict(subject.info),
        "hessian": {
            "objective": "mean loss over the subject's data (batches weighted by their size)",
            "n_examples": sh.flat.n_examples,
            "n_batches": len(sh.batches),
            "n_params": sh.op.dim,
            "dtype": "float64",
            "mode": "eval",
            "loss": sh.flat.loss0,
        },
    }
    if "eig" in sh.__dict__:
        data["top_eigenpairs"] = sh.eig.to_dict() | {"seed_stream": "part_seed(seed, 'curvature', 'top_eigenpairs')"}
    if sh.__dict__.get("exact") is not None:
        data["exact"] = sh.exact
    return finish(LENS, parts, settings, seed, t0, notes=notes, data=data)


# --- parts ---------------------------------------------------------------------------------------------
def eigenvalues_part(sh: _Shared, ps: EigenvaluesSettings, *, seed: int) -> Part:
    eig = sh.eig
    est: list[Estimate] = []
    checks: list[Check] = []
    for i, (v, r) in enumerate(zip(eig.eigenvalues, eig.residuals)):
        est.append(
            Estimate(
                f"top_eigenvalue_{i + 1}", float(v), float(v - r), float(v + r), level=1.0,
                method="Lanczos Ritz value +- explicit residual norm (an eigenvalue lies in it: Bauer-Fike)",
                n=eig.n_matvec, converged=eig.converged, n_iter=eig.n_iter,
            )
        )  # fmt: skip
    r1 = float(eig.residuals[0])
    kappa = Estimate(
        "kappa", sh.lam1, sh.lam1 - r1, sh.lam1 + r1, level=1.0,
        method=f"curvature proxy kappa = {KAPPA_PROXY}; +- its residual",
        n=eig.n_matvec, converged=eig.converged, n_iter=eig.n_iter,
    )  # fmt: skip
    est.append(kappa)

    # Self-tests of the operator: one fixed symmetric matrix (fixed examples, no fresh mini-batch per product).
    rng = as_generator(derive_seed(seed, "operator-probe"))
    u, w = rng.standard_normal(sh.op.dim), rng.standard_normal(sh.op.dim)
    hu, hw, hu2 = sh.op(u), sh.op(w), sh.op(u)
    checks.append(
        check_within(
            "hessian_operator_symmetric", float(u @ hw), float(w @ hu), 1e-10, relative=True, kind="sanity",
            what="u.Hw vs w.Hu for two Gaussian vectors",
        )
    )  # fmt: skip
    same = bool(np.array_equal(hu, hu2))
    checks.append(
        Check(
            "hessian_operator_deterministic", same, float(np.max(np.abs(hu - hu2))), 0.0, 0.0,
            "two products with the same vector are " + ("bit-identical" if same else "not bit-identical"),
            kind="sanity", criterion="H u computed twice is bit-identical",
        )
    )  # fmt: skip

    exact = sh.exact
    if exact is not None:
        for i, (got, want) in enumerate(zip(eig.eigenvalues, exact["eigenvalues_top"])):
            checks.append(
                check_within(
                    f"lanczos_eigenvalue_{i + 1}_vs_dense", float(got), float(want), ps.dense_rel_tol, relative=True,
                    kind="agreement", what=f"Lanczos eigenvalue {i + 1} vs dense eigh",
                )
            )  # fmt: skip
    else:
        for i in range(len(eig.eigenvalues)):
            checks.append(
                Check(
                    f"lanczos_eigenvalue_{i + 1}_vs_dense",
                    None,
                    reason=sh.no_dense_reason(),
                    kind="agreement",
                    criterion=f"|observed - expected| <= {ps.dense_rel_tol:g} x |expected|",
                )
            )
    dense_top = exact["eigenvalues_top"] if exact else [None] * len(eig.eigenvalues)
    rows = [
        [f"lambda_{i + 1}", float(v), float(r), float(r) / max(abs(float(v)), 1e-300), bool(eig.converged), dt]
        for i, (v, r, dt) in enumerate(zip(eig.eigenvalues, eig.residuals, dense_top))
    ]
    table = F.table(
        "curvature.spectrum",
        "Top Hessian eigenvalues vs the dense reference",
        ["quantity", "estimate", "residual", "relative residual", "converged", "dense (exact)"],
        rows,
        f"Lanczos ({eig.n_matvec} HVPs, tol {sh.settings.tol:g}). 'dense' is eigh of the explicitly built Hessian "
        "(empty when the model exceeds dense_check_max_dim).",
    )
    metrics = metric_with_interval("curvature.kappa", kappa)
    metrics["curvature.top_eigenvalue"] = sh.lam1
    metrics["curvature.lanczos_converged"] = 1.0 if eig.converged else 0.0
    # The hand-off to later phases' trainings: lambda_max with its (Bauer-Fike) interval, and the gradient-descent
    # stability threshold 2 / lambda_max taken at the upper end of that interval (the conservative side).
    metrics |= metric_with_interval("curvature.lambda_max", kappa)
    lam_hi = sh.lam1 + r1
    lr_max = 2.0 / lam_hi if lam_hi > 0 else None
    est.append(
        Estimate(
            "lr_max", lr_max, note="2 / (upper end of lambda_max's interval): the step size above which full-batch "
            "GD on this loss is unstable along the top eigenvector (a threshold for plain GD/SGD, not for Adam)",
            no_interval_reason="derived from the upper end of lambda_max's interval (conservative, level 1.0)",
        )
    )  # fmt: skip
    if lr_max is not None:
        metrics["curvature.lr_max"] = lr_max
    return Part(
        "eigenvalues",
        estimates=est,
        checks=checks,
        tables=[table],
        assumptions=[
            Assumption(
                f"The Hessian is that of the mean loss over {sh.flat.n_examples} fixed examples (not a fresh "
                "mini-batch per product), so Lanczos sees one fixed symmetric operator.",
                "Golub & Van Loan 10.1",
                ("hessian_operator_symmetric", "hessian_operator_deterministic"),
            )
        ],
        metrics=metrics,
        outputs={"curvature.kappa": sh.lam1, "curvature.lambda_max": sh.lam1, "curvature.lr_max": lr_max},
        predictions={"geometry_gate_kappa_proxy": "top Hessian eigenvalue (a sharpness proxy, not a condition number)"},
        data={"eigenvalues": eig.to_dict(), "exact": exact},
    )


def _trace_estimate(name: str, tr: Any, level: float, method: str) -> Estimate:
    return Estimate(
        name, tr.estimate, tr.ci_low, tr.ci_high, tr.stderr, level, method, n=tr.n_matvec,
        converged=None, n_iter=tr.n_iter, note=FIXED_BUDGET + ("; " + tr.note if tr.note else ""),
    )  # fmt: skip


def trace_part(sh: _Shared, ps: TraceSettings, *, seed: int) -> Part:
    level = sh.settings.level
    op = sh.op
    tr = hutchpp(op, op.dim, ps.n_matvec, seed=derive_seed(seed, "hutch++"), level=level)
    tr_h = hutchinson(op, op.dim, ps.n_matvec, seed=derive_seed(seed, "hutchinson"), level=level)
    pnorm = float(np.linalg.norm(sh.flat.theta0_numpy()))
    e_pp = _trace_estimate(
        "trace", tr, level, f"Hutch++ ({tr.sketch_rank}-dim sketch + {tr.n_probes} Rademacher probes), Student-t"
    )
    e_h = _trace_estimate("trace_hutchinson", tr_h, level, "Hutchinson (Rademacher), Student-t")
    e_n = Estimate(
        "trace_over_param_norm", tr.estimate / pnorm, tr.ci_low / pnorm, tr.ci_high / pnorm, tr.stderr / pnorm,
        level, "Hutch++ trace / ||theta||_2", n=tr.n_matvec, converged=None, note=FIXED_BUDGET,
    )  # fmt: skip
    checks: list[Check] = []
    exact = sh.exact
    for name, t in (("hutchpp", tr), ("hutchinson", tr_h)):
        if exact is not None:
            checks.append(
                check_in_interval(
                    f"{name}_ci_covers_dense_trace", exact["trace"], t.ci_low, t.ci_high, kind="agreement",
                    severity="info",
                    what=f"dense trace in the {level:.0%} {name} interval (it misses {1 - level:.0%} of the time)",
                )
            )  # fmt: skip
        else:
            checks.append(
                Check(
                    f"{name}_ci_covers_dense_trace",
                    None,
                    reason=sh.no_dense_reason(),
                    severity="info",
                    kind="agreement",
                    criterion="the measured interval covers the prediction",
                )  # fmt: skip
            )
    # The two estimators are independent (own probes): their difference's interval should cover 0.
    z = float(scipy_stats.norm.ppf(0.5 + level / 2))
    se = math.hypot(tr.stderr, tr_h.stderr)
    d = tr.estimate - tr_h.estimate
    checks.append(
        check_in_interval(
            "hutchpp_vs_hutchinson", 0.0, d - z * se, d + z * se, kind="agreement", severity="info",
            what="0 in the interval of Hutch++ - Hutchinson (independent probes)",
        )
    )  # fmt: skip
    table = F.table(
        "curvature.trace",
        "Hessian trace: Hutch++ and Hutchinson at equal budget",
        ["estimator", "estimate", "stderr", "CI low", "CI high", "HVPs", "dense (exact)"],
        [
            [t.method, t.estimate, t.stderr, t.ci_low, t.ci_high, t.n_matvec, exact["trace"] if exact else None]
            for t in (tr, tr_h)
        ],
        f"{level:.0%} Student-t intervals over the probes; a fixed budget of {ps.n_matvec} products each.",
    )
    return Part(
        "trace",
        estimates=[e_pp, e_h, e_n],
        checks=checks,
        tables=[table],
        metrics=metric_with_interval("curvature.trace", e_pp),
        data={"hutch++": tr.to_dict(), "hutchinson": tr_h.to_dict(), "param_norm": pnorm},
    )


def density_part(sh: _Shared, ps: DensitySettings, *, seed: int) -> Part:
    op = sh.op
    dens = slq_density(op, op.dim, n_vectors=ps.n_vectors, n_iter=ps.n_iter, sigma_rel=ps.sigma_rel, seed=seed)
    neg, neg_se = dens.mass_below(0.0)
    est = [
        Estimate(
            "density_negative_mass", neg, max(neg - 1.96 * neg_se, 0.0), min(neg + 1.96 * neg_se, 1.0), neg_se, 0.95,
            "SLQ quadrature weight below 0, normal interval over start vectors", n=dens.n_vectors,
            converged=None, n_iter=dens.n_iter, note=FIXED_BUDGET,
        ),
        Estimate(
            "slq_lambda_max", dens.lambda_max, method="largest SLQ Ritz value", n=dens.n_matvec, converged=None,
            n_iter=dens.n_iter, note=f"{FIXED_BUDGET}; residual bound {dens.residual_max:.3g}",
            no_interval_reason="a Ritz value +- its residual brackets some eigenvalue, not necessarily the largest",
        ),
        Estimate(
            "slq_lambda_min", dens.lambda_min, method="smallest SLQ Ritz value", n=dens.n_matvec, converged=None,
            n_iter=dens.n_iter, note=f"{FIXED_BUDGET}; residual bound {dens.residual_min:.3g}",
            no_interval_reason="a Ritz value +- its residual brackets some eigenvalue, not necessarily the smallest",
        ),
    ]  # fmt: skip
    checks: list[Check] = []
    exact = sh.exact
    if exact is not None:
        span = exact["lambda_max"] - exact["lambda_min"]
        tol = ps.extremes_rel_tol * span
        checks.append(
            check_within(
                "slq_lambda_max_vs_dense", dens.lambda_max, exact["lambda_max"], tol, kind="agreement",
                what=f"SLQ top Ritz value vs dense lambda_max (tolerance {ps.extremes_rel_tol:g} x dense span)",
            )
        )  # fmt: skip
        checks.append(
            check_within(
                "slq_lambda_min_vs_dense", dens.lambda_min, exact["lambda_min"], tol, kind="agreement",
                severity="info",
                what=f"SLQ bottom Ritz value vs dense lambda_min (tolerance {ps.extremes_rel_tol:g} x dense span; the "
                "bottom of a Hessian spectrum converges slowly)",
            )
        )  # fmt: skip
    else:
        for which in ("max", "min"):
            checks.append(
                Check(
                    f"slq_lambda_{which}_vs_dense",
                    None,
                    reason=sh.no_dense_reason(),
                    kind="agreement",
                    severity="error" if which == "max" else "info",
                    criterion=f"|SLQ - dense| <= {ps.extremes_rel_tol:g} x dense span",
                )  # fmt: skip
            )
    notes = () if dens.extremes_converged else ("SLQ extremes did not meet their residual tolerance",)
    if exact is not None:
        fig = F.density_figure(dens, [exact["lambda_min"], exact["lambda_max"]], "dense lambda_min, lambda_max (exact)")
    else:
        fig = F.density_figure(dens, [dens.lambda_min, dens.lambda_max], "extreme SLQ Ritz values")
    return Part(
        "density",
        estimates=est,
        checks=checks,
        figures=[fig],
        data=dens.to_dict(),
        notes=notes,
    )


def per_layer_part(sh: _Shared, ps: PerLayerSettings, *, seed: int) -> Part:
    level = sh.settings.level
    sub = sh.subject
    layers = per_layer_table(
        sub.model, sub.loss_fn, sh.batches, tol=sh.settings.tol, n_matvec=ps.n_matvec, level=level, seed=seed
    )
    est: list[Estimate] = []
    checks: list[Check] = []
    eig = sh.eig
    lam1, r1 = sh.lam1, float(eig.residuals[0])
    for r in layers.rows:
        est.append(
            Estimate(
                f"per_layer_{r.layer}_top_eigenvalue", r.top_eigenvalue, r.top_eigenvalue - r.residual,
                r.top_eigenvalue + r.residual, level=1.0, method="Lanczos on the diagonal block +- residual",
                n=r.eig_n_matvec, converged=r.converged,
            )
        )  # fmt: skip
        est.append(
            Estimate(
                f"per_layer_{r.layer}_trace", r.trace, r.trace_ci_low, r.trace_ci_high, r.trace_stderr, level,
                "Hutch++ on the diagonal block, Student-t" + (" (exact: the sketch spans the block)" if r.trace_exact
                                                                else ""),
                n=r.trace_n_matvec, converged=None, note=FIXED_BUDGET,
            )
        )  # fmt: skip
        # Cauchy interlacing: a principal submatrix's largest eigenvalue is at most the matrix's.
        checks.append(
            check_bound(
                f"per_layer_{r.layer}_top_le_lambda_max", r.top_eigenvalue, lam1, slack=r1 + r.residual,
                what=f"layer {r.layer}: block lambda_max <= lambda_max(H) (Cauchy interlacing; slack: both residuals)",
            )
        )  # fmt: skip
    exact = sh.exact
    total = float(sum(r.trace for r in layers.rows))
    lo = total - math.sqrt(sum((r.trace - r.trace_ci_low) ** 2 for r in layers.rows))
    hi = total + math.sqrt(sum((r.trace_ci_high - r.trace) ** 2 for r in layers.rows))
    if exact is not None:
        checks.append(
            check_in_interval(
                "per_layer_traces_sum_to_dense_trace", exact["trace"], lo, hi, kind="agreement", severity="info",
                what=f"dense trace in the combined {level:.0%} interval of the sum of block traces",
            )
        )  # fmt: skip
    else:
        checks.append(
            Check(
                "per_layer_traces_sum_to_dense_trace",
                None,
                reason=sh.no_dense_reason(),
                severity="info",
                kind="agreement",
                criterion="the measured interval covers the prediction",
            )  # fmt: skip
        )
    return Part(
        "per_layer",
        estimates=est,
        checks=checks,
        tables=[layers.to_table("curvature.per_layer", "Per-layer curvature (diagonal Hessian blocks)")],
        data={"layers": layers.to_dict(), "trace_sum": total, "trace_sum_interval": [lo, hi]},
    )


def margin_part(sh: _Shared, ps: MarginSettings, *, seed: int) -> Part:
    level = sh.settings.level
    x, y = sh.x_eval, sh.y_eval
    if y.is_floating_point() or y.ndim != 1:
        reason = "the margin needs integer class labels (a classifier); this subject's targets are not"
        return Part(
            "margin",
            estimates=[Estimate("margin", None, note=reason)],
            checks=[Check("margin_bounded", None, reason=reason, kind="sanity", criterion="max |m_i| <= sqrt(2)")],
        )
    q = ps.main_model_quantile if sh.subject.info.get("main_model") else ps.quantile
    margin = normalized_margin(sh.subject.model, x, y, q, ps.n_bootstrap, seed, level)
    e_m = Estimate(
        "margin", margin.value, margin.ci_low, margin.ci_high, margin.stderr, level,
        f"{q:.0%} quantile of (z_y - max_j!=y z_j)/||z||_2 over {margin.n} examples; percentile bootstrap "
        f"({ps.n_bootstrap} resamples)", n=margin.n,
    )  # fmt: skip
    logits = FlatModel(sh.subject.model, sh.subject.loss_fn, (x, y), dtype=torch.float64).outputs(None, x)
    m = per_example_margins(logits, y)
    acc = int((logits.argmax(dim=1) == y).sum())
    pos = clopper_pearson(int((m > 0).sum()), int(m.size), level)
    checks = [
        Check(
            "margin_bounded", bool(np.max(np.abs(m)) <= math.sqrt(2) * (1 + 1e-12)), float(np.max(np.abs(m))),
            math.sqrt(2), 0.0, f"max |m_i| = {np.max(np.abs(m)):.4g} vs sqrt(2) (two coordinates' gap over the norm)",
            kind="sanity", criterion="max |m_i| <= sqrt(2)",
        ),
        check_within(
            "margin_sign_is_correctness", float((m > 0).mean()), acc / m.size, 0.0, kind="sanity",
            what="fraction of positive margins vs the argmax accuracy",
        ),
    ]  # fmt: skip
    return Part(
        "margin",
        estimates=[e_m, pos.to_estimate("margin_fraction_positive")],
        checks=checks,
        metrics=metric_with_interval("curvature.margin", e_m),
        outputs={"curvature.margin": margin.value},
        data=margin.to_dict(),
    )


def sharpness_part(sh: _Shared, ps: SharpnessSettings, *, seed: int) -> Part:
    flat, op = sh.flat, sh.op
    lam1, v1 = sh.lam1, sh.v1
    _, g = flat.loss_and_grad()
    gnorm = float(np.linalg.norm(g))
    ghat = g / gnorm if gnorm > 0 else g
    ghg = float(ghat @ op(ghat)) if gnorm > 0 else 0.0
    rhos = sorted(ps.rhos)
    bounds = [quadratic_bounds(r, gnorm, ghg, float(g @ v1), lam1) for r in rhos]
    sam = [
        ascent_sharpness(
            flat, r, n_steps=ps.steps, seed=derive_seed(seed, "sam", i), starts=[("+v1", v1), ("-v1", -v1)]
        )
        for i, r in enumerate(rhos)
    ]
    asam = [
        ascent_sharpness(flat, r, adaptive=True, eta=0.0, n_steps=ps.steps, seed=derive_seed(seed, "asam", i))
        for i, r in enumerate(sorted(ps.asam_rhos))
    ]
    est: list[Estimate] = []
    for prefix, runs, method in (
        ("sam", sam, "projected gradient ascent in the L2 ball (lower bound on the maximum)"),
        ("asam", asam, "projected gradient ascent in the ball ||delta/|theta| || <= rho (lower bound)"),
    ):
        for r in runs:
            est.append(
                Estimate(
                    f"{prefix}_sharpness_rho_{r.rho:g}", r.value, method=method, n=r.n_grad,
                    converged=r.converged or None, n_iter=r.n_iter, no_interval_reason=ASCENT,
                    note="" if r.converged else f"step cap of {ps.steps} reached while still improving",
                )
            )  # fmt: skip
    checks: list[Check] = []
    small, b0 = sam[0], bounds[0]
    lo, hi = b0.lower * (1 - ps.second_order_slack), b0.upper * (1 + ps.second_order_slack)
    ok = lo <= small.value <= hi
    checks.append(
        Check(
            "sam_small_rho_vs_second_order_model", bool(ok), small.value, (b0.lower + b0.upper) / 2, (hi - lo) / 2,
            f"SAM sharpness at rho={small.rho:g}: {small.value:.4g} {'inside' if ok else 'outside'} the second-order "
            f"model's band [{lo:.4g}, {hi:.4g}] (from ||g||, ghat.H ghat, g.v1 and lambda_1, widened "
            f"{ps.second_order_slack:.0%} for higher-order terms)",
            "info", kind="agreement", criterion=f"value in [lower x (1 - {ps.second_order_slack:g}), "
            f"upper x (1 + {ps.second_order_slack:g})]",
        )
    )  # fmt: skip
    if len(sam) >= 2:
        mono = all(b.value >= a.value * (1 - 1e-12) for a, b in zip(sam, sam[1:]))
        checks.append(
            Check(
                "sam_monotone_in_rho", bool(mono), float(len(sam)), None, None,
                "the maximum over a larger ball is at least the maximum over a smaller one: "
                + ("holds for the ascent's values" if mono else "violated: the ascent is stuck in a local maximum"),
                kind="sanity", criterion="value non-decreasing in rho",
            )
        )  # fmt: skip
    pnorm = float(np.linalg.norm(flat.theta0_numpy()))
    table = F.table(
        "curvature.sharpness",
        "Sharpness and curvature proxies",
        ["quantity", "rho", "value", "first-order step value", "ascent steps", "converged", "start"],
        [["SAM worst case", r.rho, r.value, r.first_step_value, r.n_iter, r.converged, r.start] for r in sam]
        + [["ASAM worst case (eta=0)", r.rho, r.value, r.first_step_value, r.n_iter, r.converged, r.start]
           for r in asam]
        + [["top eigenvalue", None, lam1, None, sh.eig.n_iter, sh.eig.converged, "lanczos"]],
        "Worst-case values are lower bounds on the true maxima (local ascent from the best of the first-order step "
        "and +-v1).",
    )  # fmt: skip
    notes = tuple(
        f"SAM/ASAM ascent at rho={r.rho:g} still improving at the step cap; its value is a looser lower bound"
        for r in sam + asam
        if not r.converged
    )
    return Part(
        "sharpness",
        estimates=est,
        checks=checks,
        figures=[F.sharpness_figure(sam, asam, bounds)],
        tables=[table],
        data={
            "sam": [r.to_dict() for r in sam],
            "asam": [r.to_dict() for r in asam],
            "quadratic_model_bounds": [{"rho": b.rho, "lower": b.lower, "upper": b.upper} for b in bounds],
            "gradient_norm": gnorm,
            "proxies": {"top_eigenvalue": lam1, "param_norm": pnorm},
        },
        notes=notes,
    )


def _relu_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """Consecutive Linear layers of an nn.Sequential separated only by ReLU, as (first, second) names."""
    if not isinstance(model, nn.Sequential):
        return []
    mods = list(model)
    lin = [i for i, m in enumerate(mods) if isinstance(m, nn.Linear)]
    return [(str(a), str(b)) for a, b in zip(lin[:-1], lin[1:]) if all(isinstance(m, nn.ReLU) for m in mods[a + 1 : b])]


def invariance_part(sh: _Shared, ps: InvarianceSettings, *, seed: int) -> Part:
    sub = sh.subject
    model, loss_fn, batches = sub.model, sub.loss_fn, sh.batches
    x_eval = sh.x_eval[: min(256, sh.x_eval.shape[0])]
    kw = dict(
        rho=ps.rho, rho_adaptive=ps.rho_adaptive, sharpness_steps=ps.sharpness_steps,
        trace_matvecs=ps.trace_matvecs, input_noise=ps.input_noise, seed=derive_seed(seed, "metrics"),
        rel_tol=ps.rel_tol,
    )  # fmt: skip
    families = []
    data: dict[str, Any] = {}
    notes: list[str] = []
    pairs = _relu_pairs(model)
    if pairs:
        a, b = pairs[0]
        tf = [
            (f"ReLU rescale layers {a}->{b}", c, (lambda c=c: rescale_relu_layers(model, a, b, c)))
            for c in ps.rescale_factors
        ]
        families.append(("relu", model, tf))
    else:
        notes.append("ReLU rescaling needs an nn.Sequential with Linear-ReLU-Linear; not run for this model")
    x_all, y_all = sh.x_eval, sh.y_eval
    if x_all.ndim == 2:
        with torch.no_grad():
            d_out = int(FlatModel(model, loss_fn, batches).outputs(None, x_all[:1]).shape[-1])
        ln = build_layernorm_mlp(int(x_all.shape[1]), ps.layernorm_width, d_out, derive_seed(seed, "layernorm-model"))
        classify = not y_all.is_floating_point()
        train_model(
            ln, x_all.to(torch.float32), y_all,
            TrainConfig(optimizer="adam", lr=ps.layernorm_lr, batch_size=64, epochs=ps.layernorm_epochs,
                        loss="ce" if classify else "mse"),
            seed=derive_seed(seed, "layernorm-train"),
        )  # fmt: skip
        tf_ln = [
            ("LayerNorm scale of layer 0", c, (lambda c=c: rescale_before_norm(ln, "0", c))) for c in ps.rescale_factors
        ]
        families.append(("layernorm", ln, tf_ln))
    else:
        notes.append("the LayerNorm family needs 2-D inputs (n, features); not run for this subject")
    checks: list[Check] = []
    all_rows, all_t = [], []
    for fam, base_model, transforms in families:
        tchecks, rows = invariance_study(base_model, transforms, loss_fn, batches, x_eval, **kw)
        all_rows += rows
        all_t += tchecks
        for t in tchecks:
            tol = 1e-9 * max(1.0, t.output_scale)
            checks.append(
                Check(
                    f"invariance_{fam}_c{t.c:g}_outputs_unchanged", bool(t.max_output_diff <= tol), t.max_output_diff,
                    0.0, tol, f"{t.family}, c={t.c:g}: max |f'(x) - f(x)| = {t.max_output_diff:.3g} (float64, "
                    f"tolerance {tol:.1g})", kind="sanity", criterion="max output difference <= 1e-9 x max(1, |f|)",
                )
            )  # fmt: skip
        for r in rows:
            if r.metric.startswith("ASAM"):
                checks.append(
                    check_within(
                        f"invariance_{fam}_c{r.c:g}_asam_invariant", r.rel_change, 0.0, ps.rel_tol, kind="agreement",
                        what=f"{r.family}, c={r.c:g}: relative change of ASAM (eta=0) sharpness (Kwon et al. 2021, "
                        "Thm 2: invariant)",
                    )
                )  # fmt: skip
        changed = [r for r in rows if r.metric == "top Hessian eigenvalue"]
        if changed:
            biggest = max(r.rel_change for r in changed)
            checks.append(
                Check(
                    f"invariance_{fam}_top_eigenvalue_changes", bool(biggest > ps.rel_tol), biggest, None, ps.rel_tol,
                    f"{fam}: largest relative change of the top Hessian eigenvalue under a function-preserving "
                    f"transform {biggest:.3g} ({'>' if biggest > ps.rel_tol else '<='} {ps.rel_tol:g}); A.2 predicts "
                    "sharpness is not reparameterization-invariant", kind="agreement",
                    criterion=f"largest relative change > {ps.rel_tol:g}",
                )
            )  # fmt: skip
        inv = [r for r in rows if r.theory == "invariant"]
        bad = [r for r in inv if r.verdict != "invariant"]
        worst = max((r.rel_change for r in inv), default=0.0)
        checks.append(
            Check(
                f"invariance_{fam}_function_space_metrics_invariant", not bad, worst, 0.0, ps.rel_tol,
                f"{fam}: metrics the theory says are invariant (loss, input sensitivity, ASAM): largest relative "
                f"change {worst:.3g}" + ("" if not bad else "; changed: " + ", ".join(sorted({r.metric for r in bad}))),
                kind="agreement", criterion=f"every invariant metric's relative change <= {ps.rel_tol:g}",
            )
        )  # fmt: skip
    table = F.table(
        "curvature.invariance",
        "Which metrics change under function-preserving reparameterizations",
        ["transform", "c", "metric", "original", "transformed", "relative change", "measured", "theory"],
        [[r.family, r.c, r.metric, r.original, r.transformed, r.rel_change, r.verdict, r.theory] for r in all_rows],
        f"Measured verdict: 'changes' when the relative change exceeds {ps.rel_tol:g} (deterministic metrics) or 3 "
        "combined standard errors (the Hutch++ trace). Random draws are shared between parameterizations.",
    )
    data |= {
        "transforms": [
            {"family": t.family, "c": t.c, "max_output_diff": t.max_output_diff, "output_scale": t.output_scale}
            for t in all_t
        ],
        "rows": [
            {
                "family": r.family, "c": r.c, "metric": r.metric, "original": _f(r.original),
                "transformed": _f(r.transformed), "rel_change": _f(r.rel_change), "measured": r.verdict,
                "theory": r.theory,
            }
            for r in all_rows
        ],
        "layernorm_model": "Linear -> LayerNorm(eps=1e-12) -> ReLU -> Linear, trained with Adam on the eval data",
    }  # fmt: skip
    assumptions: list[Assumption] = []
    recs: list[Recommendation] = []
    if any(f == "layernorm" for f, _, _ in families):
        assumptions.append(
            Assumption(
                "LayerNorm's eps (1e-12) leaves the scale invariance exact up to ~1e-12 relative, well inside the "
                "check's tolerance.",
                "torch.nn.LayerNorm definition",
                ("invariance_layernorm_c*_outputs_unchanged",),
            )
        )
    eig_rows = [r for r in all_rows if r.metric == "top Hessian eigenvalue"]
    asam_rows = [r for r in all_rows if r.metric.startswith("ASAM")]
    if eig_rows:
        assumptions.append(
            Assumption(
                "Sharpness (top eigenvalue, trace, SAM) depends on the parameterization; the gate's kappa is "
                "therefore chart-dependent and must be compared only between models with the same architecture and "
                "scale.",
                "chapter A.2, B.16; Dinh et al. 2017",
                ("invariance_*_top_eigenvalue_changes",),
            )
        )
        worst_eig = max(r.rel_change for r in eig_rows)
        recs.append(
            Recommendation(
                f"A function-preserving rescaling changed the top Hessian eigenvalue by up to {worst_eig:.1%}: compare "
                "kappa and the geometry score s = m/(1+kappa) only between checkpoints of the same architecture and "
                "scale.",
                ("invariance_*_top_eigenvalue_changes", "invariance_*_outputs_unchanged"),
            )
        )
        if asam_rows:
            worst_asam = max(r.rel_change for r in asam_rows)
            recs.append(
                Recommendation(
                    f"ASAM sharpness (eta=0) stayed invariant (largest relative change {worst_asam:.2g}) while the top "
                    f"eigenvalue changed by up to {worst_eig:.1%}: use the adaptive sharpness when comparing flatness "
                    "across parameterizations.",
                    ("invariance_*_asam_invariant", "invariance_*_top_eigenvalue_changes",
                     "invariance_*_outputs_unchanged"),
                )
            )  # fmt: skip
    return Part(
        "invariance",
        checks=checks,
        tables=[table],
        assumptions=assumptions,
        recommendations=recs,
        data=data,
        notes=notes,
    )


def landscape_part(sh: _Shared, ps: LandscapeSettings, *, seed: int) -> Part:
    sub = sh.subject
    flat = FlatModel(sub.model, sub.loss_fn, sh.batches, dtype=torch.float64, mode=ps.mode)
    lam1, v1 = sh.lam1, sh.v1
    rng = as_generator(seed)
    u, v, labels, norm = directions_for(flat, ps.directions, rng, sh.eig.eigenvectors)
    s2 = slice_2d(flat, u, v, ps.radius, ps.points_2d, labels=labels, normalization=norm)
    s_eig = slice_1d(flat, v1, ps.radius, ps.points_1d, label="Hessian eigenvector 1 (unit)", normalization="unit")
    d_rand = random_direction(flat, rng, "filter")
    s_rand = slice_1d(flat, d_rand, ps.radius, ps.points_1d, label="random (filter-normalized)", normalization="filter")
    fine = slice_1d(flat, v1, ps.fit_radius, ps.fit_points, label="Hessian eigenvector 1 (fit window)",
                    normalization="unit")  # fmt: skip
    fit = fit_curvature(fine.alphas, fine.losses)
    # The same fit on wider windows: for ReLU networks the loss is only piecewise smooth, and a window that
    # contains activation kinks reads their (Dirac) curvature too, which the Hessian does not contain.
    by_radius = []
    for r in ps.curvature_radii:
        s_r = slice_1d(flat, v1, r, ps.fit_points, label="v1", normalization="unit")
        f_r = fit_curvature(s_r.alphas, s_r.losses)
        by_radius.append(
            {"radius": r, "curvature": _f(f_r.curvature), "stderr": _f(f_r.stderr),
             "ratio_to_lambda_1": _f(f_r.curvature / lam1) if lam1 else None}
        )  # fmt: skip
    centre_ok = (
        s2.losses[len(s2.betas) // 2][len(s2.alphas) // 2] == s2.center_loss
        and s_eig.losses[len(s_eig.alphas) // 2] == s_eig.center_loss
    )
    checks = [
        Check(
            "slice_grid_contains_trained_point", bool(centre_ok), None, None, 0.0,
            "the centre grid value is the trained model's own loss, bit for bit" if centre_ok
            else "the centre grid value differs from the trained model's loss",
            kind="sanity", criterion="centre value == the model's loss (bit-identical)",
        ),
        check_within(
            "slice_curvature_vs_top_eigenvalue", fit.curvature, lam1, ps.curvature_rel_tol, relative=True,
            kind="agreement", what=f"second derivative of the 1-D slice along v1 (quartic fit on +-{ps.fit_radius:g}, "
            f"mode {ps.mode}) vs lambda_1 (Lanczos, eval mode)",
        ),
    ]  # fmt: skip
    est = [
        Estimate(
            "slice_curvature_along_v1", fit.curvature, fit.curvature - 1.96 * fit.stderr,
            fit.curvature + 1.96 * fit.stderr, fit.stderr, 0.95,
            "2 x quadratic coefficient of a degree-4 least-squares fit to the slice (normal interval from the fit)",
            n=fit.n_points,
        )
    ]  # fmt: skip
    return Part(
        "landscape",
        estimates=est,
        checks=checks,
        figures=[F.slice_1d_figure([s_eig, s_rand]), F.slice_2d_figure(s2)],
        data={
            "slice_1d": [s_eig.to_dict(), s_rand.to_dict()],
            "slice_2d": s2.to_dict(),
            "curvature_fit": {
                "curvature": fit.curvature,
                "stderr": fit.stderr,
                "radius": fit.radius,
                "n_points": fit.n_points,
                "lambda_1": lam1,
            },
            "curvature_by_radius": by_radius,
        },  # fmt: skip
    )


def along_training_part(ps: AlongTrainingSettings, *, seed: int) -> Part:
    runs = [
        run_schedule(
            sched, widths=tuple(ps.widths), activation=ps.activation, n_train=ps.n_train, lr=ps.lr, steps=ps.steps,
            n_checkpoints=ps.checkpoints, step_gamma=ps.step_gamma, k=ps.k, tol=ps.tol,
            trace_matvecs=ps.trace_matvecs, seed=seed,
        )
        for sched in ps.schedules
    ]  # fmt: skip
    checks: list[Check] = []
    est: list[Estimate] = []
    recs: list[Recommendation] = []
    crit = f"max lambda_max / (2/eta) <= 1 (slack {ps.eos_tolerance:g})"
    for r in runs:
        ratio = max_ratio(r)
        start = init_ratio(r)
        ok_conv = all(c.converged for c in r.checkpoints)
        name = f"eos_{r.schedule}_bound"
        if r.diverged:
            checks.append(Check(name, None, _f(ratio), 1.0, ps.eos_tolerance,
                                f"{r.schedule}: training diverged; the stability bound is moot", "info", kind="bound",
                                criterion=crit))  # fmt: skip
        elif not math.isfinite(ratio):
            checks.append(Check(name, None, None, 1.0, ps.eos_tolerance,
                                f"{r.schedule}: no checkpoint after initialization; raise `checkpoints`", "info",
                                kind="bound", criterion=crit))  # fmt: skip
        else:
            init_note = (
                f"; at initialization lambda_max was {start:.3f} x 2/eta, so GD started unstable and the sharpness "
                "fell (catapult, Lewkowycz et al. 2020)"
                if math.isfinite(start) and start > 1
                else ""
            )
            checks.append(
                check_bound(
                    name, ratio, 1.0, slack=ps.eos_tolerance,
                    what=f"{r.schedule}: max over GD iterates (steps >= 1) of lambda_max / (2/eta) (a non-diverging "
                    "GD run stays at or below the edge, Cohen et al. 2021)" + init_note
                    + ("" if ok_conv else "; some Lanczos runs did not converge"),
                )
            )  # fmt: skip
            if ratio >= 0.9:
                recs.append(
                    Recommendation(
                        f"Under the {r.schedule} schedule lambda_max reached {ratio:.2f} x 2/eta: full-batch GD at lr "
                        f"{ps.lr:g} trains at the edge of stability; a smaller step would leave room.",
                        (name,),
                    )
                )
        est.append(
            Estimate(
                f"eos_ratio_max_{r.schedule}", _f(ratio),
                method="max over GD iterates (steps >= 1) of lambda_max * eta / 2 (Lanczos, explicit residuals)",
                n=len(r.checkpoints) - 1, converged=ok_conv, no_interval_reason=SINGLE_SEED + "; one deterministic "
                "full-batch GD run (accuracy: the Lanczos residuals)",
                note="" if math.isfinite(ratio) else "no GD iterate measured",
            )
        )  # fmt: skip
        est.append(
            Estimate(
                f"lambda_max_relative_change_{r.schedule}", _f(relative_change(r)),
                method="max/min - 1 of lambda_max over checkpoints", n=len(r.checkpoints),
                no_interval_reason=SINGLE_SEED + "; one deterministic full-batch GD run",
            )
        )  # fmt: skip
    return Part(
        "along_training",
        estimates=est,
        checks=checks,
        figures=[F.along_training_figure(runs), F.trace_along_training_figure(runs, 0.95)],
        recommendations=recs,
        predictions={
            "edge_of_stability": "GD at step eta is linearly stable only where lambda_max < 2/eta (Cohen et al. 2021)"
        },
        data={
            "setting": "full-batch GD, squared loss to one-hot targets, same init and peak lr per schedule",
            "lr": ps.lr,
            "steps": ps.steps,
            "n_train": ps.n_train,
            "runs": [r.to_dict() for r in runs],
        },
    )


def preconditioning_part(ps: PreconditioningSettings, *, seed: int) -> Part:
    cond = condition_sweep(ps.dim, tuple(ps.kappas), ps.tol, seed=derive_seed(seed, "condition"))
    pre = preconditioning_sweep(ps.dim, ps.kappa_m, tuple(ps.scale_ranges), ps.tol, seed=derive_seed(seed, "jacobi"))
    checks: list[Check] = []
    est: list[Estimate] = []
    recs: list[Recommendation] = []
    for r in cond:
        checks.append(
            check_within(
                f"lanczos_extremes_kappa_{r.kappa:g}", r.lanczos_rel_err, 0.0, 1e-6, kind="agreement",
                what=f"kappa={r.kappa:g}: relative error of Lanczos mu and L vs the constructed spectrum",
            )
        )  # fmt: skip
        checks.append(
            check_within(
                f"gd_rate_attained_kappa_{r.kappa:g}", float(r.worst_iterations), float(r.theory_iterations), 1.0,
                kind="agreement",
                what=f"kappa={r.kappa:g}: GD steps from the worst-case start vs the closed form "
                f"ceil(log tol / log((kappa-1)/(kappa+1)))" + ("" if r.worst_converged else " (censored at the cap)"),
            )
        )  # fmt: skip
        checks.append(
            check_bound(
                f"gd_rate_bound_random_kappa_{r.kappa:g}", float(r.random_iterations), float(r.theory_iterations),
                slack=1.0, what=f"kappa={r.kappa:g}: GD steps from a random start <= the worst-case count"
                + ("" if r.random_converged else " (censored at the cap)"),
            )
        )  # fmt: skip
        est.append(
            Estimate(
                f"gd_iterations_kappa_{r.kappa:g}", float(r.worst_iterations), method="GD from the worst-case start",
                converged=r.worst_converged, n_iter=r.worst_iterations, no_interval_reason=DETERMINISTIC,
            )
        )  # fmt: skip
    for p in pre:
        jname, pname = f"jacobi_iterations_scale_{p.scale_range:g}", f"plain_iterations_scale_{p.scale_range:g}"
        checks.append(
            check_within(
                jname, float(p.measured_jacobi), float(p.theory_jacobi), 1.0, kind="agreement",
                what=f"S range {p.scale_range:g}: GD steps with P = diag(H) (kappa {p.kappa_jacobi:.3g}) vs closed form"
                + ("" if p.jacobi_converged else " (censored at the cap)"),
            )
        )  # fmt: skip
        if p.plain_converged:
            checks.append(
                check_within(
                    pname, float(p.measured_plain), float(p.theory_plain), 1.0, kind="agreement",
                    what=f"S range {p.scale_range:g}: plain GD steps (kappa {p.kappa:.3g}) vs closed form",
                )
            )  # fmt: skip
        else:  # censored at the cap: consistent with theory only if theory needs more than the cap
            checks.append(
                check_bound(
                    pname, float(p.theory_plain), float(p.measured_plain), direction=">=",
                    what=f"S range {p.scale_range:g}: plain GD censored at its cap; the closed form must exceed it",
                )
            )  # fmt: skip
        est.append(
            Estimate(
                f"jacobi_gain_scale_{p.scale_range:g}", p.gain_measured,
                method="plain GD iterations / Jacobi-preconditioned GD iterations (worst-case starts)",
                converged=p.plain_converged and p.jacobi_converged, no_interval_reason=DETERMINISTIC,
                note=f"theory {p.gain_theory:.3g}",
            )
        )  # fmt: skip
        if p.scale_range > 1 and p.gain_measured > 1:
            recs.append(
                Recommendation(
                    f"On H = S M S with a diagonal scale range of {p.scale_range:g}, Jacobi preconditioning cut GD "
                    f"iterations from {p.measured_plain} to {p.measured_jacobi} (closed form {p.theory_plain} -> "
                    f"{p.theory_jacobi}): rescale badly scaled parameters (or use a diagonal preconditioner).",
                    (jname, pname),
                )
            )
    table = F.table(
        "curvature.preconditioning",
        "Diagonal preconditioning on H = S M S",
        ["S range", "kappa(H)", "kappa Jacobi", "kappa bad P", "iters plain (theory)", "iters Jacobi (theory)",
         "iters bad P (theory)", "gain measured", "gain theory"],
        [
            [p.scale_range, p.kappa, p.kappa_jacobi, p.kappa_bad, f"{p.measured_plain} ({p.theory_plain})",
             f"{p.measured_jacobi} ({p.theory_jacobi})",
             f"{p.measured_bad}{'' if p.bad_converged else ' (cap, not converged)'} ({p.theory_bad})",
             p.gain_measured, p.gain_theory]
            for p in pre
        ],
        f"kappa(M) = {ps.kappa_m:g}; worst-case starts in the preconditioned coordinates; the bad P = diag(H)^-1 is "
        "the control.",
    )  # fmt: skip
    return Part(
        "preconditioning",
        estimates=est,
        checks=checks,
        figures=[F.preconditioning_figure(cond, pre, ps.tol)],
        tables=[table],
        recommendations=recs,
        predictions={"gd_iterations": {f"{r.kappa:g}": r.theory_iterations for r in cond}},
        data={
            "condition_sweep": [r.to_dict() for r in cond],
            "diagonal": [p.to_dict() for p in pre],
            "tol": ps.tol,
            "dim": ps.dim,
        },
    )
