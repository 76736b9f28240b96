"""The robustness lens on the lens contract: ``measure(subject, settings, seed=...) -> LensResult``.

The subject (:class:`Subject`) is what a user passes: a classifier ``model`` returning logits
(never modified: every computation runs on a deep copy in eval mode), held-out inputs ``x`` and
integer labels ``y``, and the valid input box ``input_range`` (``(low, high)``; inputs outside
[0, 1] are fine; ``None`` means unbounded). Optional: ``image_shape`` (the square attack's windows
and the blur corruption), ``linear`` (a linear classifier for the exact reference),
``source`` (a second model for transfer attacks), ``checkpoints`` (models along standard and
adversarial training, for A.8). :func:`default_subject` builds the bundled task: the digits
scaled to [0, 1], a linear classifier, an MLP and the same MLP after PGD adversarial training
(Madry et al. 2018) and after TRADES (Zhang et al. 2019), with checkpoints along each training.

Parts (each its own settings table and random stream ``part_seed(seed, "robustness", part)``):

* ``attacks``: PGD l-inf and l-2 over epsilon grids, FGSM and the square attack; robust accuracy
  with Clopper-Pearson intervals over examples; sanity checks (eps = 0 reproduces clean accuracy,
  non-increasing in eps and in attack strength, budget and box respected, no gradient masking);
  PGD-l2 robust accuracy against the accuracy certified by the Lipschitz bound (bound); the gate
  inputs W (robust minus clean 0-1 risk at ``policy_eps``), R_emp (clean 0-1 risk), Omega;
* ``linear_reference``: PGD on a linear classifier against the exact worst case (agreement);
* ``lipschitz``: per-stage upper bounds (power iteration) and attack-found lower bounds (bound);
* ``smoothing``: randomized-smoothing certified radii, abstention, certified accuracy vs radius;
  certified radius <= the exact distance for a binary linear classifier (bound);
* ``certificate``: the FNR certificate of the critical class (Clopper-Pearson upper bound u);
* ``training``: clean and robust accuracy along standard and adversarial training (A.8, C.8);
* ``corruptions``: Gaussian noise, blur and contrast by severity;
* ``transfer``: PGD crafted on the source model, evaluated on the subject;
* ``handoff``: PGD on the implicit-bias lens's linear classifier (``runtime.inputs``), against the
  exact linear reference; not evaluated without the hand-off.

Metrics (gates read only the subject's ``model``, the protocol's main subject): ``w``, ``r_emp``,
``omega``, ``lipschitz_stage_<i>``, ``fnr_upper`` and their intervals.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from multilens import plots
from multilens.errors import ConfigError
from multilens.lenses.contract import Runtime, finish, run_parts
from multilens.lenses.robustness import attacks as A
from multilens.lenses.robustness.certificate import make_certificate, verify_certificate, write_certificate
from multilens.lenses.robustness.handoff import handoff_part
from multilens.lenses.robustness.lipschitz import layers_of, lipschitz_bounds
from multilens.lenses.robustness.settings import (
    AttacksSettings,
    CertificateSettings,
    CorruptionsSettings,
    LinearReferenceSettings,
    LipschitzSettings,
    Settings,
    SmoothingSettings,
    TrainingSettings,
    TransferSettings,
)
from multilens.lenses.robustness.smoothing import smoothing_certify
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
)
from multilens.results import metric_with_interval as mwi
from multilens.seeding import derive_seed
from multilens.stats import DETERMINISTIC, clopper_pearson, interval_text

LENS = "robustness"
MAX_DEV = 1e-5  # float32 rounding allowed on the budget/box checks (input units)
# the smoothing reference's certificates each hold w.p. >= 1 - REF_ALPHA: with 1e-6, a false failure of the
# bound check over 20 examples has probability <= 2e-5
REF_ALPHA = 1e-6


@dataclass(frozen=True)
class Checkpoint:
    family: str  # "standard", "adversarial" (PGD training) or "trades"
    epoch: int
    model: nn.Module


@dataclass(frozen=True, eq=False)
class Subject:
    """A classifier and held-out data (see the module docstring)."""

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    input_range: tuple[float, float] | None = None
    image_shape: tuple[int, ...] | None = None
    linear: nn.Module | None = None
    source: nn.Module | None = None
    checkpoints: tuple[Checkpoint, ...] = ()
    info: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.model, nn.Module):
            raise ConfigError(f"`model` must be a torch.nn.Module; got {type(self.model).__name__}.")
        if not isinstance(self.x, torch.Tensor) or not isinstance(self.y, torch.Tensor):
            raise ConfigError("`x` and `y` must be tensors (held-out inputs and integer labels).")
        if self.y.dtype.is_floating_point or self.y.dim() != 1 or self.y.shape[0] != self.x.shape[0]:
            raise ConfigError("`y` must be a 1-D integer label tensor with one label per row of `x`.")
        if self.x.shape[0] < 2:
            raise ConfigError(f"`x` must hold at least 2 held-out examples; got {self.x.shape[0]}.")
        if self.input_range is not None:
            lo, hi = self.input_range
            if not float(lo) < float(hi):
                raise ConfigError(f"`input_range` must be (low, high) with low < high; got {self.input_range!r}.")
            if bool((self.x < lo).any() or (self.x > hi).any()):
                raise ConfigError("some held-out inputs lie outside `input_range`; the box must contain the data.")


# --- the default subject -----------------------------------------------------------------------------
def digits_box(seed: int, test_fraction: float) -> tuple[torch.Tensor, ...]:
    """The digits scaled to [0, 1] (pixel / 16), stratified split seeded by ``seed``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.data.astype(np.float32) / 16.0
    y = d.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=test_fraction, random_state=int(seed) % 2**32, stratify=y)
    return torch.from_numpy(xtr), torch.from_numpy(ytr), torch.from_numpy(xte), torch.from_numpy(yte)


def train_classifier(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    s: Settings,
    *,
    seed: int,
    adv_eps: float = 0.0,
    n_checkpoints: int = 0,
    family: str = "standard",
    box: tuple[float, float] | None = (0.0, 1.0),
    trades_beta: float = 0.0,
) -> tuple[Checkpoint, ...]:
    """Adam on cross-entropy; with adv_eps > 0, PGD adversarial training (Madry et al. 2018: the loss at the
    PGD-l-inf point) or, with trades_beta > 0, TRADES (Zhang et al. 2019: CE(f(x), y) + beta KL(f(x) || f(x'))
    with x' maximising the KL term by PGD-l-inf)."""
    import copy

    from multilens.seeding import torch_generator

    g = torch_generator(seed)
    opt = torch.optim.Adam(model.parameters(), lr=s.lr)
    n = x.shape[0]
    keep = set(np.linspace(1, s.epochs, n_checkpoints).round().astype(int).tolist()) if n_checkpoints else set()
    ckpts = []
    for ep in range(1, s.epochs + 1):
        perm = torch.randperm(n, generator=g)
        for b in range(0, n, s.batch_size):
            idx = perm[b : b + s.batch_size]
            xb, yb = x[idx], y[idx]
            if adv_eps > 0 and trades_beta > 0:
                xa = _trades_point(model, xb, adv_eps, s.at_steps, box, g)
                model.train()
                opt.zero_grad(set_to_none=True)
                logits = model(xb)
                kl = nn.functional.kl_div(
                    nn.functional.log_softmax(model(xa), 1), nn.functional.softmax(logits, 1), reduction="batchmean"
                )
                (nn.functional.cross_entropy(logits, yb) + trades_beta * kl).backward()
                opt.step()
                continue
            if adv_eps > 0:
                xb = A.pgd(
                    model,
                    xb,
                    yb,
                    eps=adv_eps,
                    steps=s.at_steps,
                    step_size=2.5 / s.at_steps,
                    input_range=box,
                    seed=int(torch.randint(0, 2**31, (1,), generator=g)),
                ).x_adv
            model.train()
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
        if ep in keep:
            ckpts.append(Checkpoint(family, ep, copy.deepcopy(model).eval()))
    model.eval()
    return tuple(ckpts)


def _trades_point(model: nn.Module, x: torch.Tensor, eps: float, steps: int, box: Any, g: torch.Generator):
    """TRADES' inner maximisation: PGD-l-inf on KL(f(x) || f(x')) from x + 0.001 N(0, I)."""
    m = A.frozen_eval(model)
    with torch.no_grad():
        p0 = nn.functional.softmax(m(x), 1)
    xa = x + 0.001 * torch.randn(x.shape, generator=g, dtype=x.dtype)
    lo, hi = box if box is not None else (-math.inf, math.inf)
    for _ in range(steps):
        xa = xa.detach().requires_grad_(True)
        kl = nn.functional.kl_div(nn.functional.log_softmax(m(xa), 1), p0, reduction="sum")
        (grad,) = torch.autograd.grad(kl, xa)
        with torch.no_grad():
            xa = torch.min(torch.max(xa + (2.5 * eps / steps) * grad.sign(), x - eps), x + eps).clamp(lo, hi)
    return xa.detach()


def mlp(d_in: int, widths: tuple[int, ...], d_out: int, seed: int) -> nn.Sequential:
    from multilens.models.mlp import MLPSpec, build_mlp

    return build_mlp(MLPSpec(d_in, tuple(widths), d_out, "relu"), seed)


MAIN_MODEL_N_TRAIN = 2048  # the linear reference of the main model is fitted on its first N training examples


def default_subject(settings: Settings, *, seed: int, runtime: Runtime | None = None) -> Subject:
    """The main model (``allocation.model_path``) on the family's test split in the box [-1, 1] when an earlier phase
    saved one (through the adapter: a linear reference fitted on its training examples; no checkpoints, no transfer
    source); else digits in [0, 1]: linear, MLP, PGD-trained MLP, a second MLP (transfer source), checkpoints."""
    path = (runtime.inputs if runtime is not None else {}).get("allocation.model_path")
    if path:
        from dataclasses import replace as _replace

        from multilens.lenses.allocation import describe, main_subject
        from multilens.lenses.robustness.adapter import from_subject

        subj, _ = from_subject(main_subject(path, n_train=MAIN_MODEL_N_TRAIN), settings)
        return _replace(subj, info=dict(subj.info) | {"main_model": describe(path)})
    key = (seed, *(getattr(settings, f) for f in SUBJECT_FIELDS))
    if key not in _SUBJECTS:
        if len(_SUBJECTS) >= 4:
            _SUBJECTS.pop(next(iter(_SUBJECTS)))
        _SUBJECTS[key] = _build_default_subject(settings, seed=seed, executor=getattr(runtime, "executor", None))
    return _SUBJECTS[key]


# the bundled subject is a pure function of these fields and the seed; measure never modifies it
SUBJECT_FIELDS = ("test_fraction", "n_train", "n_holdout", "widths", "epochs", "lr", "batch_size", "at_eps",
                  "at_steps", "trades_beta", "checkpoints", "main")  # fmt: skip
_SUBJECTS: dict[tuple, Subject] = {}


def _build_default_subject(settings: Settings, *, seed: int, executor: Any = None) -> Subject:
    from multilens.lenses.robustness.population import load_state, member_model, train_population

    s = settings
    xtr, _, xte, yte = digits_box(seed, s.test_fraction)
    if s.n_holdout:
        xte, yte = xte[: s.n_holdout], yte[: s.n_holdout]
    n_train = min(int(xtr.shape[0]), s.n_train) if s.n_train else int(xtr.shape[0])
    fields = {f: (list(v) if isinstance(v, tuple) else v) for f in SUBJECT_FIELDS if (v := getattr(s, f)) is not None}
    roles = ["linear", "mlp", "mlp_at", *(["trades"] if s.trades_beta > 0 else []), "source"]
    # every member is a pure task of its spec: through runtime.executor when there is one (identical numbers)
    results = dict(zip(roles, train_population([{"role": r, "seed": seed, "fields": fields} for r in roles], executor)))

    def model_of(role: str) -> nn.Module:
        return load_state(member_model(role, fields, seed), results[role]["state"])

    def ckpts_of(role: str) -> tuple[Checkpoint, ...]:
        return tuple(
            Checkpoint(c["family"], int(c["epoch"]), load_state(member_model(role, fields, seed), c["state"]))
            for c in results[role]["checkpoints"]
        )

    lin, std, adv, src = model_of("linear"), model_of("mlp"), model_of("mlp_at"), model_of("source")
    c_std, c_adv = ckpts_of("mlp"), ckpts_of("mlp_at")
    c_tr = ckpts_of("trades") if "trades" in results else ()
    main = {"mlp": std, "mlp_at": adv, "linear": lin}[s.main]
    info = {
        "task": "sklearn digits, pixels / 16 in [0, 1]",
        "n_train": n_train,
        "n_holdout": int(xte.shape[0]),
        "main": s.main,
        "widths": list(s.widths),
        "epochs": s.epochs,
        "at_eps": s.at_eps,
        "at_steps": s.at_steps,
    }
    return Subject(main, xte, yte, (0.0, 1.0), (8, 8), lin, src, c_std + c_adv + c_tr, info)


# --- helpers -------------------------------------------------------------------------------------------
def _cp(name: str, k: int, n: int, level: float = 0.95, note: str = "") -> Estimate:
    return clopper_pearson(k, n, level).to_estimate(name, unit="fraction", note=note)


def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    m = A.frozen_eval(model)
    with torch.no_grad():
        return m(x).argmax(1)


def _omega(model: nn.Module) -> float:
    ps = [p.detach().double().reshape(-1) for p in model.parameters()]
    v = torch.cat(ps) if ps else torch.zeros(1, dtype=torch.float64)
    return float((v**2).mean())


def _linear_params(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    try:
        layers = layers_of(model)
    except ConfigError:
        return None
    lins = [m for m in layers if isinstance(m, nn.Linear)]
    rest = [m for m in layers if not isinstance(m, (nn.Linear, nn.Flatten, nn.Identity, nn.Dropout))]
    if len(lins) != 1 or rest:
        return None
    w = lins[0].weight.detach()
    b = lins[0].bias.detach() if lins[0].bias is not None else torch.zeros(w.shape[0])
    return w, b


def _plain_lipschitz(model: nn.Module) -> float | None:
    """prod ||W_l||_2 (dense SVD) of a chain of Linear layers and 1-Lipschitz activations; None otherwise."""
    try:
        layers = layers_of(model)
    except ConfigError:
        return None
    if not all(isinstance(m, (nn.Linear, nn.ReLU, nn.Tanh, nn.Flatten, nn.Identity, nn.Dropout)) for m in layers):
        return None
    return math.prod(
        float(torch.linalg.matrix_norm(m.weight.detach().double(), 2)) for m in layers if isinstance(m, nn.Linear)
    )


# --- parts ---------------------------------------------------------------------------------------------
def attacks_part(sub: Subject, s: Settings, ps: AttacksSettings, *, seed: int) -> Part:
    x, y, box, m = sub.x, sub.y, sub.input_range, sub.model
    n = int(x.shape[0])
    lvl = ps.level
    pred = _predict(m, x)
    clean_ok = pred == y
    k_clean = int(clean_ok.sum())
    est = [_cp("clean_accuracy", k_clean, n, lvl)]
    checks: list[Check] = []
    metrics = mwi(f"{LENS}.clean_accuracy", est[0])
    # restart 0 starts at x (no random start), the others at uniform points of the ball
    common = dict(
        steps=ps.steps,
        restarts=ps.restarts,
        targeted=ps.targeted,
        step_size=ps.step_size,
        schedule=ps.schedule,
        loss=ps.loss,
        input_range=box,
        random_start=False,
    )
    curves: dict[str, list[float]] = {}
    figs = []
    results: dict[tuple[str, float], A.AttackResult] = {}
    worst_dev = 0.0
    rows = []
    for norm, grid in (("linf", ps.eps_linf), ("l2", ps.eps_l2)):
        accs, lo, hi = [], [], []
        for i, eps in enumerate(grid):
            r = A.pgd(m, x, y, eps=eps, norm=norm, seed=derive_seed(seed, norm, i), **common)
            results[(norm, eps)] = r
            worst_dev = max(worst_dev, A.budget_violation(x, r.x_adv, eps, norm, box))
            e = _cp(
                f"robust_accuracy_{norm}_eps{eps:g}",
                int(r.robust.sum()),
                n,
                lvl,
                note=f"PGD-{norm}, {ps.steps} steps, {ps.restarts} restarts + {ps.targeted} targeted",
            )
            est.append(e)
            accs.append(e.value)
            lo.append(e.ci_low)
            hi.append(e.ci_high)
            rows.append([norm, "PGD", eps, e.value, interval_text(clopper_pearson(int(r.robust.sum()), n, lvl))])
        curves[norm] = accs
        checks.append(
            check_within(
                f"eps0_reproduces_clean_{norm}",
                accs[0],
                k_clean / n,
                0.0,
                kind="sanity",
                what=f"PGD-{norm} at eps = 0 (the full attack loop) against the clean accuracy",
            )
        )
        inc = max((accs[i + 1] - accs[i] for i in range(len(accs) - 1)), default=0.0)
        checks.append(
            Check(
                f"nonincreasing_in_eps_{norm}",
                inc <= 0,
                inc,
                0.0,
                0.0,
                f"largest rise of PGD-{norm} robust accuracy between consecutive eps: {inc:.4g}",
                kind="sanity",
                criterion="robust accuracy never rises with eps",
            )
        )
        est_fig = plots.line_with_errorbars(
            f"robust_accuracy_{norm}",
            f"Robust accuracy vs eps (PGD-{norm})",
            list(grid),
            accs,
            lo,
            hi,
            name=f"PGD-{norm}",
            xlabel="eps",
            ylabel="robust accuracy",
            caption=f"Clopper-Pearson {lvl:.0%} intervals over {n} examples",
        )
        figs.append(est_fig)
    # FGSM and the square attack on the l-inf grid; gradient masking: the square attack must not fool
    # (many) examples PGD leaves standing.
    mask_worst = 0.0
    fgsm_worse = 0.0
    other_fooled = torch.zeros_like(clean_ok)  # FGSM and square at the policy's eps, for W
    for i, eps in enumerate(ps.eps_linf):
        if eps == 0:
            continue
        rf = A.fgsm(m, x, y, eps=eps, input_range=box)
        rs = A.square_attack(
            m,
            x,
            y,
            eps=eps,
            queries=ps.square_queries,
            image_shape=sub.image_shape,
            input_range=box,
            seed=derive_seed(seed, "square", i),
        )
        worst_dev = max(
            worst_dev,
            A.budget_violation(x, rf.x_adv, eps, "linf", box),
            A.budget_violation(x, rs.x_adv, eps, "linf", box),
        )
        rp = results[("linf", eps)]
        for nm, r in (("FGSM", rf), ("square", rs)):
            k = int(r.robust.sum())
            est.append(_cp(f"robust_accuracy_{nm.lower()}_eps{eps:g}", k, n, lvl))
            rows.append(["linf", nm, eps, k / n, interval_text(clopper_pearson(k, n, lvl))])
        if eps == s.policy_eps:
            other_fooled = rf.fooled | rs.fooled
        mask_worst = max(mask_worst, float((rs.fooled & ~rp.fooled).float().mean()))
        fgsm_worse = max(fgsm_worse, float(rp.robust.float().mean() - rf.robust.float().mean()))
    checks.append(
        Check(
            "no_gradient_masking_square",
            mask_worst <= ps.masking_tol,
            mask_worst,
            0.0,
            ps.masking_tol,
            f"largest fraction of examples the gradient-free square attack fools but PGD does not: {mask_worst:.4g} "
            f"(tolerance {ps.masking_tol:g})",
            kind="sanity",
            criterion="fraction fooled by square but not by PGD <= masking_tol",
        )
    )
    checks.append(
        Check(
            "pgd_at_least_fgsm",
            fgsm_worse <= 0,
            fgsm_worse,
            0.0,
            0.0,
            f"largest excess of PGD robust accuracy over FGSM's across eps: {fgsm_worse:.4g}",
            kind="sanity",
            criterion="PGD robust accuracy <= FGSM robust accuracy at every eps",
        )
    )
    checks.append(
        Check(
            "budget_and_box_respected",
            worst_dev <= MAX_DEV,
            worst_dev,
            0.0,
            MAX_DEV,
            f"largest excursion of any adversarial point outside its eps-ball or the box: {worst_dev:.3g}",
            kind="sanity",
            criterion=f"max violation <= {MAX_DEV:g} (float32 rounding)",
        )
    )
    # attack strength: a weaker attack (fewer steps, one restart, same first random start) never beats it
    eps_p = s.policy_eps
    strong = A.pgd(
        m,
        x,
        y,
        eps=eps_p,
        norm="linf",
        steps=ps.steps,
        restarts=ps.restarts,
        step_size=ps.step_size,
        loss=ps.loss,
        input_range=box,
        seed=derive_seed(seed, "strength"),
    )
    weak = A.pgd(
        m,
        x,
        y,
        eps=eps_p,
        norm="linf",
        steps=ps.weak_steps,
        restarts=1,
        step_size=ps.step_size,
        loss=ps.loss,
        input_range=box,
        seed=derive_seed(seed, "strength"),
    )
    helped = int((weak.fooled & ~strong.fooled).sum())
    checks.append(
        Check(
            "nonincreasing_in_strength",
            helped == 0,
            float(helped),
            0.0,
            0.0,
            f"examples fooled by PGD with {ps.weak_steps} steps x 1 restart but not by {ps.steps} steps x "
            f"{ps.restarts} restarts from the same first start: {helped}",
            kind="sanity",
            criterion="more steps and restarts never help the model (per example)",
        )
    )
    # W at the policy's epsilon: the strongest of the attacks run there, per example
    r_pol = results.get(("linf", eps_p)) or A.pgd(
        m, x, y, eps=eps_p, norm="linf", seed=derive_seed(seed, "policy"), **common
    )
    fooled = r_pol.fooled | strong.fooled | other_fooled  # per example, the worst case over every attack run
    robust = clean_ok & ~fooled
    k_w = int((clean_ok & ~robust).sum())
    w = _cp(
        "w",
        k_w,
        n,
        lvl,
        note=f"robust 0-1 risk minus clean 0-1 risk at l-inf eps = {eps_p:g}: the fraction of "
        "examples correct when clean but fooled by some attack (PGD, and FGSM and square "
        "when eps is on the grid; paired, exact binomial)",
    )
    r_emp = _cp("r_emp", n - k_clean, n, lvl, note="clean 0-1 risk on the held-out examples")
    rob = _cp("robust_accuracy", int(robust.sum()), n, lvl, note=f"PGD l-inf at the policy's eps = {eps_p:g}")
    om = Estimate(
        "omega", _omega(m), method="mean squared parameter ||theta||^2 / P", n=1, no_interval_reason=DETERMINISTIC
    )
    est += [w, r_emp, rob, om]
    metrics |= mwi(f"{LENS}.w", w) | mwi(f"{LENS}.r_emp", r_emp) | mwi(f"{LENS}.robust_accuracy", rob)
    metrics[f"{LENS}.omega"] = om.value
    # a bound: PGD-l2 robust accuracy >= the fraction certified by the Lipschitz constant of the logits
    # (margin M at x and ||z(x') - z(x)||_2 <= L ||x' - x||_2 keep the label for ||x' - x||_2 < M / (sqrt(2) L)).
    lip = _plain_lipschitz(m)
    if lip is not None:
        with torch.no_grad():
            marg = A.margins(A.frozen_eval(m).double()(x.double()), y)
        worst_gap = -1.0
        for eps in ps.eps_l2:
            cert = int(((marg > 0) & (marg / (math.sqrt(2) * lip) > eps)).sum())
            gap = (cert - int(results[("l2", eps)].robust.sum())) / n  # counts: no float32 rounding
            worst_gap = max(worst_gap, gap)
        pgd_l2 = float(results[("l2", ps.eps_l2[-1])].robust.float().mean())
        checks.append(
            check_bound(
                "pgd_l2_above_lipschitz_certified",
                -worst_gap,
                0.0,
                direction=">=",
                what="min over the l-2 grid of (PGD robust accuracy - accuracy certified by margin / "
                f"(sqrt 2 L), L = {lip:.4g}); at the largest eps PGD gives {pgd_l2:.4g}",
            )
        )
    recs = [
        Recommendation(
            f"Report robust accuracy {rob.value:.3f} {interval_text(clopper_pearson(int(robust.sum()), n, lvl))} at "
            f"l-inf eps = {eps_p:g} next to clean accuracy {k_clean / n:.3f}: the attack passed its sanity checks.",
            (
                "eps0_reproduces_clean_linf",
                "nonincreasing_in_strength",
                "no_gradient_masking_square",
                "budget_and_box_respected",
            ),
        )
    ]
    tables = [
        Table(
            "robust_accuracy",
            "Robust accuracy by attack and eps",
            ["norm", "attack", "eps", "accuracy", f"{lvl:.0%} CI"],
            rows,
        )
    ]
    assumptions = [
        Assumption(
            "PGD approximates the inner maximum of the robust risk (no gradient masking)",
            "DEF-ROBUST; A.8",
            ("no_gradient_masking_square", "nonincreasing_in_strength"),
        ),
        Assumption(
            "adversarial points stay inside the threat model and the valid input box",
            "DEF-ROBUST",
            ("budget_and_box_respected",),
        ),
    ]
    return Part(
        "attacks",
        tuple(est),
        tuple(checks),
        tuple(figs),
        tuple(tables),
        tuple(assumptions),
        tuple(recs),
        metrics,
        data={"eps_linf": list(ps.eps_linf), "eps_l2": list(ps.eps_l2), "curves": curves, "policy_eps": eps_p},
    )


def linear_reference_part(sub: Subject, ps: LinearReferenceSettings, *, seed: int) -> Part:
    lin = sub.linear if sub.linear is not None else sub.model
    wb = _linear_params(lin)
    if wb is None:
        return Part("linear_reference", notes=("no linear classifier in the subject: the exact reference was not run",))
    w, b = wb
    x, y = sub.x, sub.y
    n = int(x.shape[0])
    k = int(w.shape[0])
    est, checks, rows = [], [], []
    cases = [
        ("linf", ps.eps_linf, sub.input_range, "box"),
        ("linf", ps.eps_linf, None, "nobox"),
        ("l2", ps.eps_l2, None, "nobox"),
    ]
    for i, (norm, eps, box, tag) in enumerate(cases):
        wm, rob = A.exact_linear_robust(w, b, x, y, eps=eps, norm=norm, input_range=box)
        r = A.pgd(
            lin,
            x,
            y,
            eps=eps,
            norm=norm,
            steps=ps.steps,
            restarts=1,
            targeted=k - 1,
            input_range=box,
            seed=derive_seed(seed, i),
        )
        ex, got = int(rob.sum()) / n, int(r.robust.sum()) / n  # counts: no float32 rounding in the comparison
        name = f"linear_{norm}_{tag}"
        est.append(
            Estimate(
                f"{name}_exact_robust_accuracy",
                ex,
                method="closed form (dual norm; separable box)",
                n=n,
                no_interval_reason="exact closed form on these examples",
            )
        )
        est.append(_cp(f"{name}_pgd_robust_accuracy", int(r.robust.sum()), n))
        checks.append(
            check_within(
                f"{name}_pgd_matches_exact",
                got,
                ex,
                ps.accuracy_tol,
                kind="agreement",
                what=f"PGD-{norm} robust accuracy ({tag}) against the exact linear worst case",
            )
        )
        checks.append(
            check_bound(
                f"{name}_pgd_not_below_exact",
                got,
                ex,
                direction=">=",
                what="an attack cannot find more adversarial examples than exist",
            )
        )
        dm = float((r.margin.double() - wm).abs().max())
        checks.append(
            check_within(
                f"{name}_margin_matches_exact",
                dm,
                0.0,
                ps.margin_tol,
                kind="agreement",
                what="max over examples of |PGD worst margin - exact worst margin|",
            )
        )
        rows.append([norm, eps, tag, ex, got, dm])
    return Part(
        "linear_reference",
        tuple(est),
        tuple(checks),
        tables=(
            Table(
                "linear_reference",
                "PGD against the exact linear worst case",
                ["norm", "eps", "box", "exact robust acc", "PGD robust acc", "max |margin diff|"],
                rows,
                caption="worst-case margin of the pair (y, j) = margin - eps ||w_y - w_j||_q (q dual to p); "
                "with the l-inf box the maximum is separable per coordinate; exact for any number "
                "of classes (robust iff every pair stays positive)",
            ),
        ),
        assumptions=(
            Assumption(
                "PGD (with one targeted restart per wrong class) reaches the worst case of a linear model",
                "G5: PGD must match eps ||w||_q",
                ("linear_*_matches_exact",),
            ),
        ),
    )


def lipschitz_part(sub: Subject, ps: LipschitzSettings, *, seed: int) -> Part:
    try:
        rep = lipschitz_bounds(
            sub.model,
            sub.x,
            n_stages=ps.n_stages,
            seed=seed,
            tol=ps.tol,
            max_iter=ps.max_iter,
            ascent_examples=ps.ascent_examples,
            ascent_steps=ps.ascent_steps,
            ascent_radius=ps.ascent_radius,
        )
    except ConfigError as e:
        return Part("lipschitz", notes=(f"no Lipschitz bounds: {e}",))
    est, checks, rows = [], [], []
    metrics: dict[str, float] = {}
    for lb in rep.layer_bounds:
        if lb.dense is not None:
            checks.append(
                check_within(
                    f"layer{lb.index}_power_matches_dense",
                    lb.constant,
                    lb.dense,
                    ps.dense_rel_tol,
                    kind="agreement",
                    relative=True,
                    what=f"layer {lb.index} spectral norm: power iteration vs dense SVD",
                )
            )
        if lb.converged is not None:
            est.append(
                Estimate(
                    f"layer{lb.index}_spectral_norm",
                    lb.constant,
                    method=lb.how,
                    n=1,
                    converged=lb.converged,
                    n_iter=lb.n_iter,
                    no_interval_reason="deterministic: power iteration to a residual tolerance",
                )
            )
    for st in (*rep.stages, rep.end_to_end):
        tag = f"stage_{st.index}" if st.index >= 0 else "end_to_end"
        est.append(
            Estimate(
                f"lipschitz_upper_{tag}",
                st.upper,
                method="product of layer constants",
                n=len(st.layers),
                no_interval_reason=DETERMINISTIC,
            )
        )
        est.append(
            Estimate(
                f"lipschitz_lower_{tag}",
                st.lower,
                n=st.n_inputs,
                method="max of Jacobian spectral norms and attack-found finite-difference ratios",
                no_interval_reason="a maximum over inputs: a certified lower bound, no sampling error",
            )
        )
        est.append(
            Estimate(
                f"lipschitz_ratio_{tag}",
                st.ratio,
                method="lower / upper",
                n=st.n_inputs,
                no_interval_reason="ratio of two bounds",
            )
        )
        if st.layers:
            checks.append(
                check_bound(
                    f"lipschitz_lower_le_upper_{tag}",
                    st.lower,
                    st.upper,
                    slack=1e-9 * st.upper,
                    what=f"{tag} ({'+'.join(st.layer_kinds)}): attack lower bound vs product bound",
                )
            )
            if st.affine:
                checks.append(
                    check_within(
                        f"lipschitz_affine_tight_{tag}",
                        st.lower,
                        st.upper,
                        ps.linear_rel_tol,
                        kind="agreement",
                        relative=True,
                        what=f"{tag} is affine: its constant is ||W||_2, reached by the Jacobian",
                    )
                )
        rows.append([tag, "+".join(st.layer_kinds) or "identity", st.upper, st.lower, st.ratio])
        if st.index >= 0:
            metrics[f"{LENS}.lipschitz_stage_{st.index}"] = st.upper
            metrics[f"{LENS}.lipschitz_lower_stage_{st.index}"] = st.lower
    metrics[f"{LENS}.lipschitz_upper"] = rep.end_to_end.upper
    metrics[f"{LENS}.lipschitz_lower"] = rep.end_to_end.lower
    stage_names = [f"lipschitz_lower_le_upper_stage_{s.index}" for s in rep.stages if s.layers]
    return Part(
        "lipschitz",
        tuple(est),
        tuple(checks),
        tables=(
            Table(
                "lipschitz",
                "l-2 Lipschitz bounds per stage",
                ["stage", "layers", "upper", "lower", "lower / upper"],
                rows,
                caption="upper: product of spectral norms (ReLU/Tanh 1-Lipschitz, eval BatchNorm by its "
                "largest scale); lower: attack-found; the composition gate reads the uppers",
            ),
        ),
        assumptions=(
            Assumption(
                "the product of per-stage constants bounds the pipeline (L_sys = prod L_i)",
                "EX-CONCRETE-3",
                tuple(stage_names) or (),
            ),
        ),
        metrics=metrics,
        outputs={f"{LENS}.lipschitz_stages": [s.upper for s in rep.stages]},
        data={"stages": [[int(i) for i in s.layers] for s in rep.stages]},
    )


def smoothing_part(sub: Subject, ps: SmoothingSettings, *, seed: int) -> Part:
    x, y = sub.x[: ps.n_examples], sub.y[: ps.n_examples]
    n = int(x.shape[0])
    est, checks, rows, figs = [], [], [], []
    metrics: dict[str, float] = {}
    for i, sg in enumerate(ps.sigmas):
        r = smoothing_certify(
            sub.model, x, y, sigma=sg, n0=ps.n0, n=ps.n, alpha=ps.alpha, seed=derive_seed(seed, "sigma", i)
        )
        ab = _cp(f"abstain_rate_sigma{sg:g}", int((r.prediction < 0).sum()), n, ps.level)
        est.append(ab)
        accs, lo, hi = [], [], []
        for rad in ps.radii:
            e = _cp(f"certified_accuracy_sigma{sg:g}_r{rad:g}", r.certified_count(rad), n, ps.level)
            est.append(e)
            accs.append(e.value)
            lo.append(e.ci_low)
            hi.append(e.ci_high)
        cert_r = r.radius[r.correct]
        med = float(np.median(cert_r)) if cert_r.size else 0.0
        est.append(
            Estimate(
                f"median_certified_radius_sigma{sg:g}",
                med,
                n=int(cert_r.size),
                method="median l-2 radius over examples certified correct",
                no_interval_reason="a per-example certificate (each holds w.p. >= 1 - alpha)",
            )
        )
        rows.append([sg, ab.value, accs[0], med, float(cert_r.max()) if cert_r.size else 0.0])
        figs.append(
            plots.line_with_errorbars(
                f"certified_accuracy_sigma{sg:g}",
                f"Certified accuracy vs l-2 radius (sigma = {sg:g})",
                list(ps.radii),
                accs,
                lo,
                hi,
                name=f"sigma={sg:g}",
                xlabel="l-2 radius",
                ylabel="certified accuracy",
            )
        )
        if i == 0:
            metrics |= mwi(f"{LENS}.smoothing_abstain_rate", ab)
            metrics[f"{LENS}.smoothing_median_radius"] = med
    # reference: a binary linear classifier, whose smoothed version is certified to exactly its distance
    wb = _linear_params(sub.linear) if sub.linear is not None else None
    if wb is not None:
        w, b = wb
        a_, b_ = 0, 1
        sel = (sub.y == a_) | (sub.y == b_)
        xr = sub.x[sel][: ps.reference_examples]
        two = nn.Linear(w.shape[1], 2)
        with torch.no_grad():
            two.weight.copy_(w[[a_, b_]])
            two.bias.copy_(b[[a_, b_]])
        side = xr.double() @ (w[a_] - w[b_]).double() + float(b[a_] - b[b_])
        dist = side.abs() / float((w[a_] - w[b_]).double().norm())
        yr = (side < 0).long()  # the base classifier's own label: the certificate is about g, not the truth
        sg = ps.sigmas[0]
        rr = smoothing_certify(two, xr, yr, sigma=sg, n0=ps.n0, n=ps.n, alpha=REF_ALPHA, seed=derive_seed(seed, "ref"))
        ok = rr.prediction >= 0
        excess = float((torch.from_numpy(rr.radius[ok]) - dist[ok]).max()) if ok.any() else float("nan")
        checks.append(
            check_bound(
                "smoothing_radius_le_exact_distance",
                excess,
                0.0,
                slack=1e-9,
                what=f"max over {int(ok.sum())} certified examples of (certified radius - exact "
                "distance to the hyperplane) for a binary linear classifier",
            )
        )
        wrong = int((ok & (rr.prediction != yr.numpy())).sum())
        checks.append(
            Check(
                "smoothing_reference_predictions",
                wrong == 0,
                float(wrong),
                0.0,
                0.0,
                f"certified predictions of the smoothed binary linear classifier that differ from the "
                f"base side: {wrong}",
                kind="sanity",
                criterion="g(x) = f(x) for a linear f (Gaussian noise is symmetric)",
            )
        )
        ratio = float((torch.from_numpy(rr.radius[ok]) / dist[ok]).mean()) if ok.any() else float("nan")
        est.append(
            Estimate(
                "smoothing_reference_radius_over_distance",
                ratio,
                n=int(ok.sum()),
                method="mean certified radius / exact distance (1 = the certificate is tight)",
                no_interval_reason="a per-example ratio summary",
            )
        )
    return Part(
        "smoothing",
        tuple(est),
        tuple(checks),
        tuple(figs),
        (
            Table(
                "smoothing",
                "Randomized smoothing (Cohen et al. 2019)",
                ["sigma", "abstain rate", "certified acc (r=0)", "median radius", "max radius"],
                rows,
                caption=f"n0 = {ps.n0}, n = {ps.n}, alpha = {ps.alpha:g}, {n} held-out examples",
            ),
        ),
        metrics=metrics,
    )


def certificate_part(sub: Subject, ps: CertificateSettings, runtime: Runtime | None, *, seed: int) -> Part:
    cert = make_certificate(sub.model, sub.x, sub.y, cls=ps.critical_class, delta=ps.delta)
    if cert["n"] == 0:
        return Part("certificate", notes=(f"class {ps.critical_class} has no held-out example: no certificate",))
    ok, problems = verify_certificate(cert)
    checks = [
        Check(
            "certificate_verifies",
            ok,
            float(len(problems)),
            0.0,
            0.0,
            "recomputed k, u and digest match" if ok else "; ".join(problems),
            kind="sanity",
            criterion="verify_certificate recomputes the same k, u and digest",
        )
    ]
    fnr = clopper_pearson(cert["k"], cert["n"], 1 - 2 * ps.delta)
    est = [
        fnr.to_estimate("fnr", unit="fraction", note=f"false-negative rate of class {ps.critical_class}"),
        Estimate(
            "fnr_upper",
            cert["u"],
            None,
            cert["u"],
            level=1 - ps.delta,
            n=cert["n"],
            unit="fraction",
            method="one-sided Clopper-Pearson upper bound",
            no_interval_reason="itself a one-sided bound",
        ),
    ]
    path = None
    if runtime is not None and runtime.out_dir is not None:
        path = str(write_certificate(cert, runtime.out_dir / "robustness_certificate.json"))
    return Part(
        "certificate",
        tuple(est),
        tuple(checks),
        metrics={f"{LENS}.fnr_upper": cert["u"], f"{LENS}.fnr": cert["k"] / cert["n"]},
        outputs={
            f"{LENS}.fnr_upper": float(cert["u"]),
            f"{LENS}.certificate": cert,  # the whole certificate: save it and `multilens certify verify` it
            f"{LENS}.certificate_path": path,
        },
        assumptions=(
            Assumption(
                "the held-out examples of the class are an i.i.d. sample of the deployment slice",
                "EX-CONCRETE-4 (Clopper-Pearson)",
                (),
            ),
        ),
    )


def mcnemar_one_sided(gain: int, loss: int) -> float:
    """Exact one-sided McNemar p-value for "the second of two paired classifiers is better".

    ``gain`` = examples right only under the second, ``loss`` = right only under the first; under
    the null of no difference each discordant example is a fair coin: P(Binom(gain + loss, 1/2) >= gain).
    """
    from scipy import stats as sps

    m = gain + loss
    return float(sps.binom.sf(gain - 1, m, 0.5)) if m else 1.0


def training_part(sub: Subject, s: Settings, ps: TrainingSettings, *, seed: int) -> Part:
    if not sub.checkpoints:
        return Part("training", notes=("no checkpoints along training in the subject: A.8 not examined",))
    x, y, n = sub.x, sub.y, int(sub.x.shape[0])
    curves: dict[str, dict[str, list[float]]] = {}
    masks: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    est = []
    for i, c in enumerate(sub.checkpoints):
        r = A.pgd(
            c.model, x, y, eps=s.policy_eps, steps=ps.steps, input_range=sub.input_range, seed=derive_seed(seed, i)
        )
        cur = curves.setdefault(c.family, {"epoch": [], "clean": [], "robust": []})
        cur["epoch"].append(c.epoch)
        cur["clean"].append(float(r.clean_correct.float().mean()))
        cur["robust"].append(r.robust_accuracy)
        masks.setdefault(c.family, []).append((r.clean_correct, r.robust))
        est.append(_cp(f"{c.family}_epoch{c.epoch}_robust_accuracy", int(r.robust.sum()), n))
        est.append(_cp(f"{c.family}_epoch{c.epoch}_clean_accuracy", int(r.clean_correct.sum()), n))

    def paired(a: torch.Tensor, b: torch.Tensor) -> float:  # p-value of "b better than a" on the same examples
        return mcnemar_one_sided(int((b & ~a).sum()), int((a & ~b).sum()))

    checks = []
    std = curves.get("standard")
    if std and len(std["epoch"]) >= 2:
        mk = masks["standard"]
        pairs = [(i, j) for i in range(len(mk)) for j in range(i + 1, len(mk))]
        level = ps.alpha / len(pairs)  # Bonferroni over the pairs looked at
        scored = []
        for i, j in pairs:
            p_clean = paired(mk[i][0], mk[j][0])  # clean accuracy rose from i to j
            p_rob = paired(mk[j][1], mk[i][1])  # robust accuracy fell from i to j
            scored.append((max(p_clean, p_rob), i, j, p_clean, p_rob))
        pmax, i, j, p_clean, p_rob = min(scored)
        txt = (
            f"epochs {std['epoch'][i]} -> {std['epoch'][j]}: clean {std['clean'][i]:.3f} -> {std['clean'][j]:.3f} "
            f"(one-sided McNemar p = {p_clean:.2g}), robust {std['robust'][i]:.3f} -> {std['robust'][j]:.3f} "
            f"(p = {p_rob:.2g})"
        )
        checks.append(
            Check(
                "a8_clean_up_robust_down",
                pmax < level,
                pmax,
                level,
                level,
                f"strongest pair of standard-training checkpoints: {txt}; both p < {level:.2g} needed",
                severity="info",
                kind="agreement",
                criterion=f"for some pair of checkpoints, clean accuracy rises AND robust accuracy falls, each by an "
                f"exact paired McNemar test at level {ps.alpha:g} / {len(pairs)} pairs (A.8: possible, not certain)",
            )
        )
    for fam, label in (("adversarial", "PGD training"), ("trades", "TRADES training")):
        adv = curves.get(fam)
        if not (std and adv):
            continue
        p_rob = paired(masks["standard"][-1][1], masks[fam][-1][1])
        d_clean = std["clean"][-1] - adv["clean"][-1]
        checks.append(
            Check(
                f"c8_{fam}_training_tradeoff",
                p_rob < ps.alpha,
                p_rob,
                ps.alpha,
                ps.alpha,
                f"final robust accuracy: {fam} {adv['robust'][-1]:.3f} vs standard {std['robust'][-1]:.3f} "
                f"(one-sided McNemar p = {p_rob:.2g}); clean: {adv['clean'][-1]:.3f} vs {std['clean'][-1]:.3f} "
                f"(clean cost {d_clean:.3f})",
                severity="info",
                kind="agreement",
                criterion=f"{label} raises robust accuracy over standard training, exact paired McNemar test at "
                f"level {ps.alpha:g} (C.8)",
            )
        )
    rows = [[fam, cur["epoch"][-1], cur["clean"][-1], cur["robust"][-1]] for fam, cur in curves.items()]
    table = Table(
        "training_final",
        f"Final checkpoints (PGD l-inf eps = {s.policy_eps:g})",
        ["training", "epoch", "clean accuracy", "robust accuracy"],
        rows,
    )
    traces = []
    for k, (fam, cur) in enumerate(curves.items()):
        col = plots.PALETTE[k % len(plots.PALETTE)]
        traces.append(plots.line_trace(cur["epoch"], cur["clean"], f"{fam}: clean", color=col))
        traces.append(plots.curve_trace(cur["epoch"], cur["robust"], f"{fam}: robust", color=col))
    fig = plots.figure(
        "along_training",
        f"Clean and robust accuracy along training (l-inf eps = {s.policy_eps:g})",
        traces,
        xlabel="epoch",
        ylabel="accuracy",
    )
    return Part("training", tuple(est), tuple(checks), (fig,), (table,), data={"curves": curves})


def _blur(x: torch.Tensor, shape: tuple[int, ...], sd: float) -> torch.Tensor:
    c, h, w = (1, *shape) if len(shape) == 2 else shape
    r = max(1, int(math.ceil(3 * sd)))
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-(t**2) / (2 * sd**2))
    k = k / k.sum()
    img = x.reshape(-1, c, h, w)
    img = nn.functional.conv2d(
        nn.functional.pad(img, (r, r, 0, 0), mode="replicate"), k.reshape(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c
    )
    img = nn.functional.conv2d(
        nn.functional.pad(img, (0, 0, r, r), mode="replicate"), k.reshape(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c
    )
    return img.reshape(x.shape)


def corruptions_part(sub: Subject, ps: CorruptionsSettings, *, seed: int) -> Part:
    from multilens.seeding import torch_generator

    x, y, n = sub.x, sub.y, int(sub.x.shape[0])
    g = torch_generator(seed)
    lo, hi = sub.input_range if sub.input_range is not None else (-math.inf, math.inf)
    fams = ["gaussian_noise", "contrast"] + (["blur"] if sub.image_shape is not None else [])
    est, rows, traces = [], [], []
    clean = float((_predict(sub.model, x) == y).float().mean())
    for k, fam in enumerate(fams):
        accs = [clean]
        for sv in range(1, ps.severities + 1):
            if fam == "gaussian_noise":
                xc = x + ps.noise_step * sv * torch.randn(x.shape, generator=g, dtype=x.dtype)
            elif fam == "contrast":
                mu = x.reshape(n, -1).mean(1).reshape(-1, *([1] * (x.dim() - 1)))
                xc = mu + (1 - ps.contrast_step * sv) * (x - mu)
            else:
                xc = _blur(x, sub.image_shape, ps.blur_step * sv)
            xc = xc.clamp(lo, hi)
            kk = int((_predict(sub.model, xc) == y).sum())
            e = _cp(f"{fam}_severity{sv}_accuracy", kk, n)
            est.append(e)
            accs.append(e.value)
            rows.append([fam, sv, e.value, interval_text(clopper_pearson(kk, n))])
        traces.append(
            plots.line_trace(list(range(ps.severities + 1)), accs, fam, color=plots.PALETTE[k % len(plots.PALETTE)])
        )
    fig = plots.figure(
        "corruptions", "Accuracy under corruptions by severity", traces, xlabel="severity", ylabel="accuracy"
    )
    note = "blur skipped: the subject gives no image_shape" if sub.image_shape is None else ""
    return Part(
        "corruptions",
        tuple(est),
        (),
        (fig,),
        (Table("corruptions", "Accuracy under corruptions", ["family", "severity", "accuracy", "95% CI"], rows),),
        notes=(note,) if note else (),
    )


def transfer_part(sub: Subject, s: Settings, ps: TransferSettings, *, seed: int) -> Part:
    if sub.source is None:
        return Part("transfer", notes=("no source model in the subject: transfer attacks not run",))
    x, y, n, eps = sub.x, sub.y, int(sub.x.shape[0]), s.policy_eps
    src = A.pgd(sub.source, x, y, eps=eps, steps=ps.steps, input_range=sub.input_range, seed=derive_seed(seed, "src"))
    wb = A.pgd(sub.model, x, y, eps=eps, steps=ps.steps, input_range=sub.input_range, seed=derive_seed(seed, "wb"))
    pred_t = _predict(sub.model, src.x_adv)
    t_fooled = pred_t != y
    t_rob = wb.clean_correct & ~t_fooled
    extra = float((t_fooled & wb.clean_correct & ~wb.fooled).float().mean())
    est = [
        _cp("transfer_robust_accuracy", int(t_rob.sum()), n, note="PGD-l-inf crafted on the source model"),
        _cp("whitebox_robust_accuracy", int(wb.robust.sum()), n),
        _cp("source_robust_accuracy", int(src.robust.sum()), n, note="the source model under its own attack"),
    ]
    chk = Check(
        "whitebox_at_least_transfer",
        extra <= ps.masking_tol,
        extra,
        0.0,
        ps.masking_tol,
        f"fraction of examples the transferred attack fools but white-box PGD does not: {extra:.4g}",
        kind="sanity",
        criterion="fraction <= masking_tol (more would mean masked gradients)",
    )
    return Part("transfer", tuple(est), (chk,))


# --- measure ------------------------------------------------------------------------------------------
def measure(subject: Subject, settings: Settings, *, seed: int, runtime: Runtime | None = None) -> LensResult:
    """Every part of the robustness lens on ``subject`` (see the module docstring)."""
    t0 = time.perf_counter()
    if not isinstance(subject, Subject):
        raise TypeError(f"`subject` must be a robustness Subject(model, x, y, ...); got {type(subject).__name__}.")
    s, sub = settings, subject
    main_notes = []
    if "main_model" in sub.info:  # the main model of the allocation phase: the family's classes, not the digits'
        s, main_notes = _main_model_settings(sub, s)
    parts, notes = run_parts(
        LENS,
        [
            ("attacks", s.attacks, lambda ps, ss: attacks_part(sub, s, ps, seed=ss)),
            ("linear_reference", s.linear_reference, lambda ps, ss: linear_reference_part(sub, ps, seed=ss)),
            ("lipschitz", s.lipschitz, lambda ps, ss: lipschitz_part(sub, ps, seed=ss)),
            ("smoothing", s.smoothing, lambda ps, ss: smoothing_part(sub, ps, seed=ss)),
            ("certificate", s.certificate, lambda ps, ss: certificate_part(sub, ps, runtime, seed=ss)),
            ("training", s.training, lambda ps, ss: training_part(sub, s, ps, seed=ss)),
            ("corruptions", s.corruptions, lambda ps, ss: corruptions_part(sub, ps, seed=ss)),
            ("transfer", s.transfer, lambda ps, ss: transfer_part(sub, s, ps, seed=ss)),
            ("handoff", s.handoff, lambda ps, ss: handoff_part(runtime.inputs if runtime else None, ps, seed=ss)),
        ],
        seed,
    )
    notes[0:0] = main_notes
    notes.insert(
        0,
        f"the gates read the subject's model only ({sub.info.get('main', 'the given model')}); the "
        "linear, adversarially trained and source models are demonstrations and references",
    )
    data = {
        "subject": dict(sub.info)
        | {"n_holdout": int(sub.x.shape[0]), "input_range": list(sub.input_range) if sub.input_range else None}
    }
    return finish(LENS, parts, s, seed, t0, notes=notes, data=data)


def _main_model_settings(sub: Subject, s: Settings) -> tuple[Settings, list[str]]:
    """The adapter's part switches for a user model, and a critical class that exists in the main model's task."""
    from dataclasses import replace

    from multilens.lenses.robustness.adapter import OFF_FOR_USER_MODELS

    notes = []
    off = [p for p in OFF_FOR_USER_MODELS if getattr(s, p, None) is not None]
    if off:
        s = replace(s, **{p: None for p in off})
        notes.append(f"main model: parts {', '.join(off)} need checkpoints or a second model and are off")
    k = int(sub.y.max()) + 1
    if s.certificate is not None and s.certificate.critical_class >= k:
        s = replace(s, certificate=replace(s.certificate, critical_class=k - 1))
        notes.append(f"main model: the task has {k} classes; the certificate is for class {k - 1}")
    return s, notes
