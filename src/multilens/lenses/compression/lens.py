"""Spectral-compression lens: per-layer SVD, tail energy, and SVD truncation vs magnitude vs random pruning.

Subject: :class:`CompressionSubject` (one or more trained torch models, the first being the main
one, a mean loss ``loss_fn(outputs, targets)``, and ``train``/``holdout`` ``(x, y)`` tensors).
Only ``nn.Linear`` layers are compressed; other parametrized layers are left alone and named.
Default subject: MLPs on scikit-learn digits at a few widths.

Parts:

* ``spectra``: per-layer singular values, energy, stable rank, condition number, tail energy
  sum_{j>r} sigma_j^2 at the energy-threshold rank. Checks: ``eckart_young.*`` (the truncated
  layer's squared Frobenius error equals the tail energy; sanity) and ``eckart_young_whitened``
  (on exactly whitened inputs the loss increase of a least-squares linear model equals the tail
  energy of its weight; agreement).
* ``tail_energy`` (B.19): excess held-out loss after truncation against the neglected tail energy
  over models x energy thresholds; Spearman rank correlation with a bootstrap interval.
* ``pruning``: at matched per-layer weight counts, SVD truncation vs magnitude vs random pruning:
  the loss jump, then retraining at matched compute (same steps, same example order per seed);
  retained accuracy with intervals over seeds. Plus the high-rank-noise failure case where SVD
  loses to magnitude pruning (``svd_loses_on_high_rank_noise``).
* ``curvature``: top Hessian eigenvalue and trace (multilens.curvature) and per-layer condition
  numbers of the main model before and after compression.
* ``scaling_shift`` (:mod:`~multilens.lenses.compression.scaling_shift`): power-law fits of held-out
  loss in stored weights for the dense, SVD and magnitude families over the subject's models, with
  paired bootstrap intervals; ``scaling_exponent_overlap.*`` (agreement, info).
* ``jump_bound`` (:mod:`~multilens.lenses.compression.jump_bound`): the training-loss jump right after
  SVD truncation of the main model against g . delta + 1/2 lambda_max ||delta||^2 (||delta||^2 the
  tail energy; lambda_max handed on as ``curvature.lambda_max`` or computed);
  ``loss_jump_quadratic_bound`` (bound, with bound_ratio).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np
import torch
from scipy import stats as sps
from torch import nn

from multilens import stats
from multilens.errors import ConfigError
from multilens.lenses.compression.jump_bound import JumpBoundSettings, jump_bound_part
from multilens.lenses.compression.ops import (
    apply_masks,
    count_weights,
    layer_spectra,
    linear_layers,
    magnitude_prune,
    matched_keep,
    random_prune,
    skipped_layers,
    svd_truncate,
)
from multilens.lenses.compression.scaling_shift import ScalingShiftSettings, scaling_shift_part
from multilens.lenses.contract import Runtime, finish, part_seed, run_parts
from multilens.results import Check, Estimate, LensResult, Part, Table, check_within, metric_with_interval
from multilens.seeding import torch_generator
from multilens.validation import check_int, check_open_unit, check_positive, check_positive_list

LENS = "compression"


# ----------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class SpectraSettings:
    """``energy``: the kept energy fraction defining the truncation rank of the Eckart-Young checks."""

    energy: float = 0.9
    whitened_n: int = 400
    whitened_d: int = 20

    def __post_init__(self) -> None:
        check_open_unit("energy", self.energy)
        check_int("whitened_n", self.whitened_n, 8)
        check_int("whitened_d", self.whitened_d, 2)
        if self.whitened_n < 2 * self.whitened_d:
            raise ConfigError(f"`whitened_n` must be >= 2 x whitened_d; got {self.whitened_n}.")


@dataclass(frozen=True)
class TailEnergySettings:
    """Energy thresholds swept; the check asks the lower end of the Spearman interval to exceed ``min_spearman``."""

    energies: tuple[float, ...] = (0.3, 0.5, 0.7, 0.85, 0.95)
    min_spearman: float = 0.5
    n_boot: int = 500

    def __post_init__(self) -> None:
        check_positive_list("energies", self.energies)
        if any(not 0.0 < e < 1.0 for e in self.energies):
            raise ConfigError(f"`energies` must lie in (0, 1); got {self.energies!r}.")
        v = self.min_spearman
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not -1.0 < v < 1.0:
            raise ConfigError(f"`min_spearman` must be a number in (-1, 1); got {v!r}.")
        check_int("n_boot", self.n_boot, 50)


@dataclass(frozen=True)
class PruningSettings:
    """``keep_fraction`` of each layer's weights is kept (SVD rank r_l = floor(f m n / (m + n)), pruning
    keeps exactly r_l (m + n) weights). Retraining: ``retrain_steps`` Adam steps of batch ``batch_size``
    at ``lr``, ``n_seeds`` example orders shared by the three methods."""

    keep_fraction: float = 0.25
    retrain_steps: int = 400
    batch_size: int = 64
    lr: float = 3e-3
    n_seeds: int = 3
    noise_dim: int = 40

    def __post_init__(self) -> None:
        check_open_unit("keep_fraction", self.keep_fraction)
        check_int("retrain_steps", self.retrain_steps, 0)
        check_int("batch_size", self.batch_size, 1)
        check_positive("lr", self.lr)
        check_int("n_seeds", self.n_seeds, 1)
        check_int("noise_dim", self.noise_dim, 4)


@dataclass(frozen=True)
class LoraSettings:
    """Part ``lora``: on the shifted task, full fine-tuning vs LoRA W + U V^T (U = 0 at start, only U, V trained)
    at each rank in ``ranks``; ``steps`` Adam steps at ``lr``, batch ``batch_size``, ``n_seeds`` example orders
    (shared by full and LoRA runs). The check asks the lower end of the Spearman interval between the excess
    held-out loss (LoRA - full) and the full update's neglected tail energy to exceed ``min_spearman``."""

    ranks: tuple[int, ...] = (1, 2, 4, 8, 16)
    steps: int = 300
    lr: float = 3e-3
    batch_size: int = 64
    n_seeds: int = 3
    min_spearman: float = 0.5
    n_boot: int = 500

    def __post_init__(self) -> None:
        check_positive_list("ranks", self.ranks, ints=True, minimum=1)
        check_int("steps", self.steps, 1)
        check_positive("lr", self.lr)
        check_int("batch_size", self.batch_size, 1)
        check_int("n_seeds", self.n_seeds, 1)
        v = self.min_spearman
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not -1.0 < v < 1.0:
            raise ConfigError(f"`min_spearman` must be a number in (-1, 1); got {v!r}.")
        check_int("n_boot", self.n_boot, 50)


@dataclass(frozen=True)
class CurvatureSettings:
    """Hessian of the mean training loss on the first ``n_examples`` rows; Hutch++ with ``n_matvec`` products;
    gradient-noise variance over disjoint batches of ``noise_batch`` of those rows."""

    n_examples: int = 256
    n_matvec: int = 30
    tol: float = 1e-4
    noise_batch: int = 32

    def __post_init__(self) -> None:
        check_int("n_examples", self.n_examples, 2)
        check_int("noise_batch", self.noise_batch, 1)
        if 2 * self.noise_batch > self.n_examples:
            raise ConfigError(
                f"`noise_batch` must be <= n_examples / 2 (two batches at least); got {self.noise_batch}."
            )
        check_int("n_matvec", self.n_matvec, 3)
        check_open_unit("tol", self.tol)


@dataclass(frozen=True)
class Settings:
    """Default subject: MLPs 64 -> w -> w -> 10 on digits for w in ``widths`` (the first is the main model),
    trained ``epochs`` epochs with Adam (lr ``lr``, batch 64). ``level``: interval level."""

    schema_version: int = 1
    widths: tuple[int, ...] = (32, 64, 128)
    epochs: int = 20
    lr: float = 3e-3
    level: float = 0.95
    spectra: SpectraSettings | None = SpectraSettings()
    tail_energy: TailEnergySettings | None = TailEnergySettings()
    pruning: PruningSettings | None = PruningSettings()
    curvature: CurvatureSettings | None = CurvatureSettings()
    lora: LoraSettings | None = LoraSettings()
    scaling_shift: ScalingShiftSettings | None = ScalingShiftSettings()
    jump_bound: JumpBoundSettings | None = JumpBoundSettings()

    def __post_init__(self) -> None:
        check_int("schema_version", self.schema_version, 1)
        check_positive_list("widths", self.widths, ints=True, minimum=2)
        check_int("epochs", self.epochs, 1)
        check_positive("lr", self.lr)
        v = self.level
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.5 < v < 1.0:
            raise ConfigError(f"`level` must be a number in (0.5, 1); got {v!r}.")

    @classmethod
    def for_profile(cls, profile: str) -> Settings:
        if profile == "quick":
            return cls()
        if profile == "smoke":
            return replace(
                cls(),
                widths=(16, 32),
                epochs=4,
                tail_energy=TailEnergySettings(energies=(0.3, 0.6, 0.9), n_boot=100),
                pruning=PruningSettings(retrain_steps=20, n_seeds=2),
                curvature=CurvatureSettings(n_examples=64, n_matvec=9),
                lora=LoraSettings(ranks=(1, 4, 16), steps=30, n_seeds=2, n_boot=100),
                scaling_shift=ScalingShiftSettings(retrain_steps=20, n_seeds=2, n_boot=100),
            )
        if profile == "full":
            return replace(
                cls(), widths=(32, 64, 128, 256), epochs=40, pruning=PruningSettings(retrain_steps=400, n_seeds=5)
            )
        raise ConfigError(f"`profile` must be one of 'smoke', 'quick', 'full'; got {profile!r}.")


# ----------------------------------------------------------------------------------------------- subject
@dataclass(frozen=True, eq=False)
class CompressionSubject:
    """Trained models (``(name, model)`` pairs; the first is the main one), their mean loss, and data."""

    models: tuple[tuple[str, nn.Module], ...]
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    train: tuple[torch.Tensor, torch.Tensor]
    holdout: tuple[torch.Tensor, torch.Tensor]
    info: dict[str, Any] = field(default_factory=dict)
    # a shifted task for the ``lora`` part: ((x_train, y_train), (x_test, y_test))
    shifted: tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None

    def __post_init__(self) -> None:
        if not self.models:
            raise ConfigError("`models` must hold at least one (name, model) pair.")
        for name, m in self.models:
            if not isinstance(m, nn.Module) or not linear_layers(m):
                raise ConfigError(f"model {name!r} must be an nn.Module with at least one nn.Linear layer.")


def train_classifier(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, lr: float, seed: int, batch_size: int = 64
) -> nn.Module:
    """Adam on cross-entropy with a seeded example order; trains ``model`` in place and returns it."""
    g = torch_generator(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = x.shape[0]
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def default_subject(settings: Settings, *, seed: int, runtime: Runtime | None = None) -> CompressionSubject:
    """The main model (``allocation.model_path``: its own training examples, the family test split as holdout; the
    shifted task of ``lora`` is the same family with the next teacher seed) when an earlier phase saved one; else
    MLPs on the digits at ``widths``."""
    path = (runtime.inputs if runtime is not None else {}).get("allocation.model_path")
    if path:
        from multilens.data.family import FamilySpec
        from multilens.lenses.allocation import describe, main_subject, read_spec
        from multilens.lenses.compression.adapter import from_subject

        subj, _ = from_subject(main_subject(path), settings)
        spec = read_spec(path)
        fam = FamilySpec.from_dict(dict(spec["family"]))
        other = replace(fam, teacher_seed=fam.teacher_seed + 1)
        n = int(subj.train[0].shape[0])
        info = dict(subj.info) | {"main_model": describe(path),
                                  "shifted_task": f"the family with teacher_seed {other.teacher_seed}"}  # fmt: skip
        return replace(subj, info=info, shifted=(other.train(n, int(spec["seed"])), other.test()))
    from multilens.data.digits import load_digits_split
    from multilens.models.mlp import MLPSpec, build_mlp

    d = load_digits_split(seed)
    models = []
    for i, w in enumerate(settings.widths):
        s = part_seed(seed, LENS, f"model{i}")
        m = build_mlp(MLPSpec(d.d_in, (w, w), d.n_classes), s)
        models.append(
            (f"mlp{w}", train_classifier(m, d.x_train, d.y_train, epochs=settings.epochs, lr=settings.lr, seed=s))
        )
    mirror = lambda x: x.view(-1, 8, 8).flip(-1).reshape(x.shape[0], 64)  # noqa: E731
    return CompressionSubject(
        tuple(models),
        nn.functional.cross_entropy,
        (d.x_train, d.y_train),
        (d.x_test, d.y_test),
        {"data": "digits", "checksum": d.checksum, "shifted_task": "digits mirrored left-right"},
        shifted=((mirror(d.x_train), d.y_train), (mirror(d.x_test), d.y_test)),
    )


# ----------------------------------------------------------------------------------------------- helpers
@torch.no_grad()
def _loss_acc(model: nn.Module, loss_fn: Callable, data: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, float]:
    x, y = data
    flags = {m: m.training for m in model.modules()}
    try:
        out = model.eval()(x)
    finally:  # evaluated in eval mode; the caller's training flags are restored
        for m, f in flags.items():
            m.training = f
    loss = float(loss_fn(out, y))
    acc = float((out.argmax(-1) == y).float().mean()) if out.ndim == 2 and not y.is_floating_point() else math.nan
    return loss, acc


def _det(name: str, value: float, **kw: Any) -> Estimate:
    return Estimate(name, float(value), method="dense SVD / forward pass", no_interval_reason=stats.DETERMINISTIC, **kw)


def _linear(w: torch.Tensor) -> nn.Linear:
    """An nn.Linear (no bias) holding ``w``, built without touching the global RNG."""
    lin = nn.Linear(w.shape[1], w.shape[0], bias=False, device="meta", dtype=w.dtype).to_empty(device="cpu")
    with torch.no_grad():
        lin.weight.copy_(w)
    return lin


def whitened_linear_problem(n: int, d_in: int, d_out: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs whitened exactly (X^T X / n = I) and targets from a random teacher plus noise (float64)."""
    g = torch_generator(seed)
    x = torch.randn(n, d_in, generator=g, dtype=torch.float64)
    x = x - x.mean(0)
    q, _ = torch.linalg.qr(x)
    x = q * math.sqrt(n)  # X^T X / n = I
    w = torch.randn(d_out, d_in, generator=g, dtype=torch.float64) / math.sqrt(d_in)
    y = x @ w.T + 0.3 * torch.randn(n, d_out, generator=g, dtype=torch.float64)
    return x, y


def whitened_loss_increase(x: torch.Tensor, y: torch.Tensor, rank: int) -> tuple[float, float]:
    """(measured loss increase of the rank-r truncated least-squares linear model, its weight's tail energy).

    Loss = mean over examples of the summed squared error. With X^T X / n = I and W the least-squares
    fit, L(W_r) - L(W) = ||W - W_r||_F^2 exactly (the cross term is the normal equations' residual)."""
    lin = _linear(y.T @ x / x.shape[0])  # the least-squares fit, since X^T X / n = I

    @torch.no_grad()
    def loss(m: nn.Module) -> float:
        return float(((m(x) - y) ** 2).sum(1).mean())

    tail = layer_spectra(lin)[0].tail_energy(rank)
    return loss(svd_truncate(lin, rank=rank)) - loss(lin), tail


# ----------------------------------------------------------------------------------------------- parts
def spectra_part(subject: CompressionSubject, ps: SpectraSettings, *, seed: int) -> Part:
    ests, checks, rows = [], [], []
    for mname, model in subject.models:
        trunc = svd_truncate(model, energy=ps.energy)
        tl = dict(trunc.named_modules())
        dense = dict(linear_layers(model))
        for sp in (sp for sp in layer_spectra(model) if sp.name in dense):  # already-factored layers: not re-truncated
            r = sp.rank_for_energy(ps.energy)
            w = dense[sp.name].weight.detach().double()
            err2 = float(((w - tl[sp.name].weight.detach().double()) ** 2).sum())
            tag = f"{mname}.{sp.name}"
            checks.append(
                check_within(
                    f"eckart_young.{tag}",
                    err2,
                    sp.tail_energy(r),
                    1e-5 * sp.energy,
                    kind="sanity",
                    what=f"{tag}: ||W - W_r||_F^2 vs sum_(j>{r}) sigma_j^2",
                )
            )
            ests += [
                _det(f"stable_rank.{tag}", sp.stable_rank),
                _det(f"tail_energy.{tag}", sp.tail_energy(r)),
                _det(f"condition_number.{tag}", min(sp.condition_number, 1e300)),
            ]
            rows.append(
                [
                    mname,
                    sp.name,
                    f"{sp.shape[0]}x{sp.shape[1]}",
                    sp.energy,
                    sp.stable_rank,
                    sp.condition_number if math.isfinite(sp.condition_number) else None,
                    r,
                    sp.tail_energy(r),
                    [float(v) for v in sp.singular_values[:8]],
                ]
            )
        skipped = skipped_layers(model)
        if skipped:
            rows.append([mname, ", ".join(skipped), "not nn.Linear: left alone", None, None, None, None, None, []])
    x, y = whitened_linear_problem(ps.whitened_n, ps.whitened_d, ps.whitened_d // 2 + 1, seed)
    r = max(1, (ps.whitened_d // 2 + 1) // 2)
    inc, tail = whitened_loss_increase(x, y, r)
    checks.append(
        check_within(
            "eckart_young_whitened",
            inc,
            tail,
            1e-8,
            relative=True,
            kind="agreement",
            what=f"least-squares linear model on whitened inputs, rank {r}: loss increase vs tail energy",
        )
    )
    main = subject.models[0][0]
    sr = [e.value for e in ests if e.name.startswith(f"stable_rank.{main}.")]
    table = Table(
        "layer_spectra",
        "Per-layer spectra",
        [
            "model",
            "layer",
            "shape",
            "energy",
            "stable rank",
            "condition number",
            f"rank at {ps.energy:g} energy",
            "tail energy",
            "top singular values",
        ],
        rows,
    )
    return Part(
        "spectra",
        estimates=tuple(ests),
        checks=tuple(checks),
        tables=(table,),
        metrics={"compression.mean_stable_rank": float(np.mean(sr))},
    )


def _relative_tail(model: nn.Module, energy: float) -> float:
    """Mean over layers of the neglected energy fraction sum_{j>r} sigma_j^2 / sum sigma_j^2."""
    return float(np.mean([sp.tail_energy(sp.rank_for_energy(energy)) / sp.energy for sp in layer_spectra(model)]))


def tail_energy_part(subject: CompressionSubject, ps: TailEnergySettings, *, seed: int, level: float) -> Part:
    tails, excess, rows = [], [], []
    for mname, model in subject.models:
        base, _ = _loss_acc(model, subject.loss_fn, subject.holdout)
        for e in ps.energies:
            loss, acc = _loss_acc(svd_truncate(model, energy=e), subject.loss_fn, subject.holdout)
            t = _relative_tail(model, e)
            tails.append(t)
            excess.append(loss - base)
            rows.append([mname, e, t, loss - base, acc])
    t_arr, e_arr = np.asarray(tails), np.asarray(excess)
    rho = lambda a, b: float(sps.spearmanr(a, b).statistic) if np.ptp(a) > 0 and np.ptp(b) > 0 else math.nan  # noqa: E731
    ci = stats.bootstrap_ci(rho, t_arr, e_arr, n_boot=ps.n_boot, level=level, seed=seed, unit="(model, rank) points")
    est = ci.to_estimate("spearman_tail_vs_excess_loss")
    ok = bool(ci.ok and ci.low > ps.min_spearman)
    check = Check(
        "tail_energy_predicts_excess_loss",
        ok if ci.ok else None,
        ci.low if ci.ok else None,
        ps.min_spearman,
        None,
        f"B.19: Spearman(neglected tail energy, excess held-out loss) = {ci.estimate:.3f}, interval "
        f"{stats.interval_text(ci)} over {len(t_arr)} points; lower end {'>' if ok else '<='} "
        f"{ps.min_spearman:g}" + (f" ({ci.n_dropped} non-finite resamples dropped)" if ci.n_dropped else ""),
        kind="agreement",
        criterion=f"lower end of the rank-correlation interval > {ps.min_spearman:g}",
    )
    table = Table(
        "tail_vs_excess",
        "Neglected tail energy vs excess held-out loss",
        ["model", "kept energy", "mean relative tail energy", "excess loss", "accuracy"],
        rows,
    )
    return Part(
        "tail_energy",
        estimates=(est,),
        checks=(check,),
        tables=(table,),
        metrics=metric_with_interval("compression.tail_spearman", est),
    )


def _budget_ranks(model: nn.Module, f: float) -> dict[str, int]:
    return {n: max(1, int(f * lin.weight.numel() / sum(lin.weight.shape))) for n, lin in linear_layers(model)}


def _retrain(model: nn.Module, loss_fn: Callable, data: tuple, ps: PruningSettings, seed: int) -> nn.Module:
    m = copy.deepcopy(model).train()
    g = torch_generator(seed)
    opt = torch.optim.Adam(m.parameters(), lr=ps.lr)
    x, y = data
    for _ in range(ps.retrain_steps):
        idx = torch.randint(0, x.shape[0], (ps.batch_size,), generator=g)
        opt.zero_grad()
        loss_fn(m(x[idx]), y[idx]).backward()
        opt.step()
        apply_masks(m)
    return m.eval()


def high_rank_noise_case(d: int, seed: int) -> tuple[float, float, float]:
    """A d x d weight that is sparse spikes (high rank, flat spectrum): (SVD error^2, magnitude error^2, stable rank)
    at the matched count of a rank-max(1, d/8) factorization."""
    g = torch_generator(seed)
    w = torch.zeros(d, d, dtype=torch.float64)
    k = 2 * d
    idx = torch.randperm(d * d, generator=g)[:k]
    w.view(-1)[idx] = torch.randn(k, generator=g, dtype=torch.float64).sign() * (
        1 + torch.rand(k, generator=g, dtype=torch.float64)
    )
    w += 0.01 * torch.randn(d, d, generator=g, dtype=torch.float64)
    lin = _linear(w)
    r = max(1, d // 8)
    e_svd = float(((svd_truncate(lin, rank=r).weight.detach() - w) ** 2).sum())
    e_mag = float(((magnitude_prune(lin, keep=matched_keep(lin, r)).weight.detach() - w) ** 2).sum())
    return e_svd, e_mag, layer_spectra(lin)[0].stable_rank


def pruning_part(subject: CompressionSubject, ps: PruningSettings, *, seed: int, level: float) -> Part:
    name, model = subject.models[0]
    ranks = _budget_ranks(model, ps.keep_fraction)
    keep = matched_keep(model, ranks)
    l0, a0 = _loss_acc(model, subject.loss_fn, subject.holdout)
    seeds = [part_seed(seed, LENS, f"pruning.{i}") for i in range(ps.n_seeds)]
    methods = {
        "svd": lambda s: svd_truncate(model, rank=ranks),
        "magnitude": lambda s: magnitude_prune(model, keep=keep),
        "random": lambda s: random_prune(model, keep=keep, seed=s),
    }
    ests, rows, metrics, checks = [], [], {}, []
    ests.append(_det("original_holdout_accuracy", a0))
    retained = {}
    for meth, build in methods.items():
        jumps, accs0, accs = [], [], []
        for s in seeds:
            cm = build(s)
            l1, a1 = _loss_acc(cm, subject.loss_fn, subject.holdout)
            rm = _retrain(cm, subject.loss_fn, subject.train, ps, s)
            _, a2 = _loss_acc(rm, subject.loss_fn, subject.holdout)
            jumps.append(l1 - l0)
            accs0.append(a1)
            accs.append(a2 / a0 if a0 > 0 else math.nan)
        ci_j = stats.mean_ci(jumps, level) if meth == "random" else None
        ej = ci_j.to_estimate(f"loss_jump.{meth}") if ci_j else _det(f"loss_jump.{meth}", jumps[0])
        ci_r = stats.mean_ci(accs, level)
        er = ci_r.to_estimate(f"retained_accuracy.{meth}", note=f"after {ps.retrain_steps} retraining steps")
        ests += [ej, er]
        retained[meth] = er
        metrics |= metric_with_interval(f"compression.retained_accuracy_{meth}", er)
        metrics[f"compression.loss_jump_{meth}"] = float(np.mean(jumps))
        rows.append(
            [
                meth,
                count_weights(build(seeds[0])),
                float(np.mean(jumps)),
                float(np.mean(accs0)),
                ci_r.estimate,
                ci_r.low if ci_r.ok else None,
                ci_r.high if ci_r.ok else None,
            ]
        )
    best = max(retained.values(), key=lambda e: e.value if e.value is not None else -1.0)
    metrics |= metric_with_interval("compression.retained_accuracy", best)
    metrics["compression.weight_fraction"] = count_weights(methods["magnitude"](seeds[0])) / count_weights(model)
    e_svd, e_mag, sr = high_rank_noise_case(ps.noise_dim, seed)
    checks.append(
        Check(
            "svd_loses_on_high_rank_noise",
            bool(e_svd > e_mag),
            e_svd,
            e_mag,
            None,
            f"DEF-SPECTRAL failure case: sparse-spike {ps.noise_dim}x{ps.noise_dim} weight (stable rank "
            f"{sr:.1f}), matched count: SVD error^2 {e_svd:.4g} vs magnitude error^2 {e_mag:.4g}",
            kind="agreement",
            criterion="SVD truncation error^2 > magnitude-pruning error^2",
        )
    )
    # Which compresses the subject's own layers better at the matched count (reported, not asserted).
    rec_rows = []
    for ln, lin in linear_layers(model):
        w = lin.weight.detach().double()
        es = float(((dict(methods["svd"](0).named_modules())[ln].weight.detach().double() - w) ** 2).sum())
        em = float(((dict(linear_layers(methods["magnitude"](0)))[ln].weight.detach().double() - w) ** 2).sum())
        rec_rows.append([ln, ranks[ln], keep[ln], es, em, "svd" if es < em else "magnitude"])
    rec_rows.append(
        ["noise control", max(1, ps.noise_dim // 8), None, e_svd, e_mag, "svd" if e_svd < e_mag else "magnitude"]
    )
    tables = (
        Table(
            "matched_compression",
            f"{name}: compression at matched weight counts and retraining at matched compute",
            ["method", "weights kept", "loss jump", "accuracy right after", "retained accuracy", "ci low", "ci high"],
            rows,
        ),
        Table(
            "reconstruction",
            "Layer reconstruction error^2 at the matched count (incl. the high-rank-noise control)",
            ["layer", "SVD rank", "weights kept", "SVD error^2", "magnitude error^2", "smaller"],
            rec_rows,
        ),
    )
    return Part("pruning", estimates=tuple(ests), checks=tuple(checks), tables=tables, metrics=metrics)


def gradient_noise(model: nn.Module, loss_fn: Callable, data: tuple, batch: int) -> list[float]:
    """||g_B - g||^2 for the disjoint minibatches B of ``batch`` rows (g: the full-data gradient, in order)."""
    model = copy.deepcopy(model).eval()  # eval mode (as the curvature), on a copy
    params = [p for p in model.parameters() if p.requires_grad]
    x, y = data

    def grad(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        gs = torch.autograd.grad(loss_fn(model(xb), yb), params)
        return torch.cat([g.reshape(-1) for g in gs]).double()

    full = grad(x, y)
    n = (x.shape[0] // batch) * batch
    return [float(((grad(x[i : i + batch], y[i : i + batch]) - full) ** 2).sum()) for i in range(0, n, batch)]


def curvature_part(subject: CompressionSubject, ps: CurvatureSettings, *, seed: int, keep_fraction: float) -> Part:
    from multilens.curvature import hessian_eigenvalues, hessian_trace

    name, model = subject.models[0]
    x, y = subject.train
    data = (x[: ps.n_examples], y[: ps.n_examples])
    ranks = _budget_ranks(model, keep_fraction)
    variants = {
        "original": model,
        "svd": svd_truncate(model, rank=ranks),
        "magnitude": magnitude_prune(model, keep=matched_keep(model, ranks)),
    }
    ests, rows, metrics = [], [], {}
    for v, m in variants.items():
        eig = hessian_eigenvalues(m, subject.loss_fn, data, k=1, tol=ps.tol, seed=seed)
        tr = hessian_trace(m, subject.loss_fn, data, n_matvec=ps.n_matvec, seed=seed)
        lam = float(eig.eigenvalues[0])
        ests.append(
            Estimate(
                f"lambda_max.{v}",
                lam,
                method="Lanczos (multilens.curvature)",
                converged=eig.converged,
                n_iter=eig.n_iter,
                no_interval_reason="Lanczos eigenvalue; residual " + f"{float(np.max(eig.residuals)):.2g}",
            )
        )
        ests.append(
            Estimate(
                f"hessian_trace.{v}",
                float(tr.estimate),
                ci_low=tr.ci_low,
                ci_high=tr.ci_high,
                stderr=tr.stderr,
                method="Hutch++ (multilens.curvature)",
                n=int(tr.n_matvec),
            )
        )
        conds = [sp.condition_number for sp in layer_spectra(m)]
        gn = gradient_noise(m, subject.loss_fn, data, ps.noise_batch)
        gci = stats.mean_ci(gn, unit="minibatches")
        ests.append(
            gci.to_estimate(f"gradient_noise.{v}", note=f"E ||g_B - g||^2 over disjoint batches of {ps.noise_batch}")
        )
        rows.append(
            [
                v,
                lam,
                bool(eig.converged),
                float(tr.estimate),
                tr.ci_low,
                tr.ci_high,
                gci.estimate,
                [c if math.isfinite(c) else None for c in conds],
            ]
        )
        metrics[f"compression.lambda_max_{v}"] = lam
    table = Table(
        "curvature_after",
        f"{name}: curvature and per-layer condition numbers after compression (no retraining)",
        [
            "model",
            "lambda_max",
            "converged",
            "trace",
            "trace ci low",
            "trace ci high",
            "gradient noise",
            "layer condition numbers",
        ],
        rows,
    )
    return Part("curvature", estimates=tuple(ests), tables=(table,), metrics=metrics)


class LoRALinear(nn.Module):
    """W x + b + U V^T x with W, b frozen; U (out x r) starts at 0, V (in x r) ~ N(0, 1/in) (seeded)."""

    def __init__(self, base: nn.Linear, r: int, gen: torch.Generator) -> None:
        super().__init__()
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.u = nn.Parameter(torch.zeros(base.out_features, r))
        self.v = nn.Parameter(torch.randn(base.in_features, r, generator=gen) / math.sqrt(base.in_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.v) @ self.u.T


def _with_lora(model: nn.Module, r: int, seed: int) -> nn.Module:
    m = copy.deepcopy(model)
    for p in m.parameters():
        p.requires_grad_(False)
    gen = torch_generator(seed)
    for name, lin in linear_layers(m):
        low = LoRALinear(lin, min(r, min(lin.weight.shape)), gen)
        if not name:
            return low
        parent, _, child = name.rpartition(".")
        setattr(m.get_submodule(parent) if parent else m, child, low)
    return m


def _finetune(model: nn.Module, loss_fn: Callable, data: tuple, steps: int, lr: float, bs: int, seed: int) -> nn.Module:
    m = model.train()
    g = torch_generator(seed)
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=lr)
    x, y = data
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (bs,), generator=g)
        opt.zero_grad()
        loss_fn(m(x[idx]), y[idx]).backward()
        opt.step()
    return m.eval()


def lora_part(subject: CompressionSubject, ps: LoraSettings, *, seed: int, level: float) -> Part:
    if subject.shifted is None:
        raise ConfigError("the `lora` part needs a shifted task in the subject (`shifted=((x, y), (x_test, y_test))`).")
    name, model = subject.models[0]
    train, test = subject.shifted
    l_before, a_before = _loss_acc(model, subject.loss_fn, test)
    tails, excess, rows = [], [], []
    per_rank: dict[int, list[float]] = {r: [] for r in ps.ranks}
    full_losses = []
    for i in range(ps.n_seeds):
        s = part_seed(seed, LENS, f"lora.{i}")
        full = _finetune(copy.deepcopy(model), subject.loss_fn, train, ps.steps, ps.lr, ps.batch_size, s)
        lf, af = _loss_acc(full, subject.loss_fn, test)
        full_losses.append(lf)
        full_w = dict(linear_layers(full))
        sv = [
            np.linalg.svd((full_w[n].weight - lin.weight).detach().double().numpy(), compute_uv=False)
            for n, lin in linear_layers(model)
        ]
        for r in ps.ranks:
            lm = _finetune(_with_lora(model, r, s + r), subject.loss_fn, train, ps.steps, ps.lr, ps.batch_size, s)
            ll, al = _loss_acc(lm, subject.loss_fn, test)
            tail = float(np.mean([np.sum(v[r:] ** 2) / max(np.sum(v**2), 1e-300) for v in sv]))
            tails.append(tail)
            excess.append(ll - lf)
            per_rank[r].append(ll - lf)
            rows.append([i, r, tail, ll, lf, ll - lf, al, af])

    def rho(a: np.ndarray, b: np.ndarray) -> float:
        return float(sps.spearmanr(a, b).statistic) if np.ptp(a) > 0 and np.ptp(b) > 0 else math.nan

    ci = stats.bootstrap_ci(
        rho, np.asarray(tails), np.asarray(excess), n_boot=ps.n_boot, level=level, seed=seed, unit="(seed, rank) points"
    )
    est = ci.to_estimate("lora_spearman_tail_vs_excess")
    ok = bool(ci.ok and ci.low > ps.min_spearman)
    check = Check(
        "lora_excess_tracks_tail_energy",
        ok if ci.ok else None,
        ci.low if ci.ok else None,
        ps.min_spearman,
        None,
        f"B.19: Spearman(neglected tail energy of the full fine-tuning update, LoRA - full held-out loss) = "
        f"{ci.estimate:.3f}, interval {stats.interval_text(ci)} over {len(tails)} points"
        + (f" ({ci.n_dropped} non-finite resamples dropped)" if ci.n_dropped else ""),
        kind="agreement",
        criterion=f"lower end of the rank-correlation interval > {ps.min_spearman:g}",
    )
    ests = [
        est,
        _det("shifted_loss_before_finetuning", l_before),
        stats.mean_ci(full_losses, level).to_estimate("shifted_loss_full_finetuning"),
    ]
    ests += [stats.mean_ci(v, level).to_estimate(f"lora_excess_loss.rank{r}") for r, v in per_rank.items()]
    task = subject.info.get("shifted_task", "given")
    table = Table(
        "lora",
        f"{name}: LoRA rank sweep vs full fine-tuning on the shifted task ({task})",
        [
            "seed",
            "rank",
            "tail energy of full update",
            "LoRA loss",
            "full loss",
            "excess",
            "LoRA accuracy",
            "full accuracy",
        ],
        rows,
    )
    metrics = metric_with_interval("compression.lora_tail_spearman", est)
    metrics["compression.shifted_accuracy_before"] = a_before
    return Part("lora", estimates=tuple(ests), checks=(check,), tables=(table,), metrics=metrics)


def measure(
    subject: CompressionSubject, settings: Settings, *, seed: int, runtime: Runtime | None = None
) -> LensResult:
    t0 = time.perf_counter()
    inputs = dict(runtime.inputs) if runtime is not None else {}
    kf = settings.pruning.keep_fraction if settings.pruning is not None else PruningSettings().keep_fraction
    lr_max = (runtime.inputs if runtime is not None else {}).get("curvature.lr_max")
    parts, notes = run_parts(
        LENS,
        [
            ("spectra", settings.spectra, lambda ps, s: spectra_part(subject, ps, seed=s)),
            (
                "tail_energy",
                settings.tail_energy,
                lambda ps, s: tail_energy_part(subject, ps, seed=s, level=settings.level),
            ),
            (
                "pruning",
                settings.pruning,
                lambda ps, s: _with_lr_ratio(pruning_part(subject, ps, seed=s, level=settings.level), ps, lr_max),
            ),
            ("curvature", settings.curvature, lambda ps, s: curvature_part(subject, ps, seed=s, keep_fraction=kf)),
            ("lora", settings.lora, lambda ps, s: lora_part(subject, ps, seed=s, level=settings.level)),
            (
                "scaling_shift",
                settings.scaling_shift,
                lambda ps, s: scaling_shift_part(subject, ps, seed=s, level=settings.level),
            ),
            (
                "jump_bound",
                settings.jump_bound,
                lambda ps, s: jump_bound_part(subject, ps, seed=s, level=settings.level, inputs=inputs),
            ),
        ],
        seed,
    )
    if "main_model" in subject.info:
        notes.insert(0, f"subject: {subject.info.get('name')} (allocation.model_path)")
    return finish(LENS, parts, settings, seed, t0, notes=notes, data={"subject": dict(subject.info)})


def _with_lr_ratio(part: Part, ps: PruningSettings, lr_max: Any) -> Part:
    """The pruning part plus ``compression.retrain_lr_ratio`` = pruning.lr / curvature.lr_max, when handed on."""
    if lr_max is None or isinstance(lr_max, bool) or not math.isfinite(float(lr_max)) or float(lr_max) <= 0:
        return part
    ratio = ps.lr / float(lr_max)
    est = Estimate(
        "retrain_lr_ratio", ratio, note=f"pruning.lr = {ps.lr:g} over curvature.lr_max = {float(lr_max):.4g}",
        no_interval_reason="a setting over the handed-on threshold (its uncertainty is curvature.lambda_max's)",
    )  # fmt: skip
    note = (
        f"retraining after pruning uses Adam at pruning.lr = {ps.lr:g}; curvature.lr_max = 2 / lambda_max = "
        f"{float(lr_max):.4g} is the stability threshold of plain gradient descent on the main model's training loss "
        f"(Adam's step is preconditioned, so the ratio {ratio:.3g} is reported, not checked)"
    )
    return replace(part, estimates=(*part.estimates, est), metrics=dict(part.metrics) | {"compression.retrain_lr_ratio":
                   ratio}, notes=(*part.notes, note))  # fmt: skip
