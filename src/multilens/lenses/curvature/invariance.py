"""Function-preserving reparameterizations, and which curvature metrics they change.

Two families (chapter A.2, A.16, B.16, C.16; Dinh et al., "Sharp minima can generalize for deep
nets", ICML 2017):

* ReLU rescaling: ReLU is positively homogeneous, so multiplying a hidden layer's weights and
  bias by ``c > 0`` and the next layer's weights by ``1/c`` leaves the network's function
  unchanged, while the Hessian blocks scale by ``1/c^2`` and ``c^2``
  (``H_phi = J^{-T} H_theta J^{-1}``, A.2).
* Normalization scale invariance: a linear layer followed by a normalization layer (here
  LayerNorm) computes the same function when its weights and bias are multiplied by ``c > 0``
  (exactly so when the normalization's ``eps`` is 0; we build it with ``eps = 1e-12``, which
  bounds the relative deviation by about ``1e-12 / Var``), while the gradient scales by ``1/c``
  and the Hessian block by ``1/c^2``.

Each transform is verified numerically (maximum absolute output difference on the data, in
float64) before any metric is compared. Parameter-space metrics (top eigenvalue, trace, trace
over parameter norm, SAM sharpness, output change under a parameter perturbation) may change;
function-space ones (loss, output sensitivity to input noise) and ASAM's adaptive sharpness
with ``eta = 0`` (Kwon et al. 2021, Theorem 2) may not. The verdict per metric is computed: a
deterministic metric "changes" when its relative change exceeds ``rel_tol``; a stochastic one
(the trace) when the change exceeds ``z`` combined standard errors.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from multilens.errors import ConfigError
from multilens.lenses.curvature.functional import FlatModel, LossFn, Mode
from multilens.lenses.curvature.hvp import CurvatureOperator
from multilens.lenses.curvature.sharpness import ascent_sharpness
from multilens.linalg import hutchpp, lanczos
from multilens.seeding import as_generator, derive_seed, torch_generator
from multilens.validation import check_int

HOMOGENEOUS = (nn.ReLU, nn.LeakyReLU, nn.Identity)


def rescale_relu_layers(model: nn.Module, first: str, second: str, c: float) -> nn.Module:
    """A float64 copy of ``model`` with ``first`` (weight, bias) times ``c`` and ``second.weight`` times ``1/c``.

    Function-preserving when everything between the two linear layers is positively homogeneous
    (ReLU) and ``c > 0``; both are checked for an ``nn.Sequential``.
    """
    if not (isinstance(c, (int, float)) and math.isfinite(c) and c > 0):
        raise ConfigError(f"`c` must be a finite number > 0; got {c!r}.")
    mods = dict(model.named_modules())
    for name in (first, second):
        if not isinstance(mods.get(name), nn.Linear):
            raise ConfigError(
                f"`{'first' if name == first else 'second'}` must name an nn.Linear in the model; got {name!r}."
            )
    if isinstance(model, nn.Sequential):
        i, j = int(first), int(second)
        between = list(model)[i + 1 : j]
        if j <= i or not all(isinstance(m, HOMOGENEOUS) for m in between):
            raise ConfigError(
                f"`first`/`second` ({first!r}, {second!r}) must be linear layers separated only by ReLU; "
                "rescaling is not function-preserving otherwise."
            )
    out = copy.deepcopy(model).double()  # in float64, so any c > 0 preserves the function to rounding
    m = dict(out.named_modules())
    with torch.no_grad():
        m[first].weight.mul_(c)
        if m[first].bias is not None:
            m[first].bias.mul_(c)
        m[second].weight.div_(c)
    return out


def rescale_before_norm(model: nn.Module, linear: str, c: float) -> nn.Module:
    """A float64 copy of ``model`` with the linear layer ``linear`` (feeding a normalization) times ``c``."""
    if not (isinstance(c, (int, float)) and math.isfinite(c) and c > 0):
        raise ConfigError(f"`c` must be a finite number > 0; got {c!r}.")
    mods = dict(model.named_modules())
    if not isinstance(mods.get(linear), nn.Linear):
        raise ConfigError(f"`linear` must name an nn.Linear in the model; got {linear!r}.")
    out = copy.deepcopy(model).double()
    m = dict(out.named_modules())
    with torch.no_grad():
        m[linear].weight.mul_(c)
        if m[linear].bias is not None:
            m[linear].bias.mul_(c)
    return out


def build_layernorm_mlp(d_in: int, width: int, d_out: int, seed: int) -> nn.Sequential:
    """Linear -> LayerNorm(eps=1e-12) -> ReLU -> Linear, initialized from a local generator.

    The first layer's scale is irrelevant to the function (the normalization removes it), which
    is the invariance this model exists to exhibit.
    """
    check_int("d_in", d_in, 1)
    check_int("width", width, 2)
    check_int("d_out", d_out, 1)
    g = torch_generator(seed)
    l1 = nn.Linear(d_in, width, device="meta").to_empty(device="cpu")
    l2 = nn.Linear(width, d_out, device="meta").to_empty(device="cpu")
    with torch.no_grad():
        for lin, fan_in in ((l1, d_in), (l2, width)):
            b = 1.0 / math.sqrt(fan_in)
            lin.weight.uniform_(-b, b, generator=g)
            lin.bias.uniform_(-b, b, generator=g)
    norm = nn.LayerNorm(width, eps=1e-12)  # ones/zeros init: deterministic, no RNG
    return nn.Sequential(l1, norm, nn.ReLU(), l2)


def max_output_difference(a: nn.Module, b: nn.Module, x: torch.Tensor) -> tuple[float, float]:
    """(max |f_a(x) - f_b(x)|, max |f_a(x)|) in float64 eval mode, without touching either model."""
    fa = FlatModel(a, lambda o, y: o.sum() * 0.0, (x, torch.zeros(x.shape[0])), dtype=torch.float64)
    fb = FlatModel(b, lambda o, y: o.sum() * 0.0, (x, torch.zeros(x.shape[0])), dtype=torch.float64)
    oa, ob = fa.outputs(None, x), fb.outputs(None, x)
    return float((oa - ob).abs().max()), float(oa.abs().max())


@dataclass(frozen=True)
class MetricValue:
    value: float
    stderr: float | None = None  # None: deterministic up to solver tolerance


def measure_metrics(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    x_eval: torch.Tensor,
    *,
    rho: float,
    rho_adaptive: float,
    sharpness_steps: int,
    trace_matvecs: int,
    input_noise: float,
    seed: int,
    mode: Mode = "eval",
) -> dict[str, MetricValue]:
    """Every metric of the invariance table at one parameterization (float64 throughout).

    The random draws (probe vectors, input noise, parameter perturbations) come from ``seed``,
    identically for every parameterization, so a function-space metric's difference is rounding.
    """
    flat = FlatModel(model, loss_fn, data, dtype=torch.float64, mode=mode)
    op = CurvatureOperator(flat, "hessian")
    eig = lanczos(
        op, op.dim, 1, "LA", tol=1e-10, seed=derive_seed(seed, "eig"), return_eigenvectors=False, deflation_check=False
    )
    tr = hutchpp(op, op.dim, trace_matvecs, seed=derive_seed(seed, "trace"))
    theta = flat.theta0_numpy()
    pnorm = float(np.linalg.norm(theta))
    sam = ascent_sharpness(flat, rho, adaptive=False, n_steps=sharpness_steps, seed=derive_seed(seed, "sam"))
    asam = ascent_sharpness(
        flat, rho_adaptive, adaptive=True, eta=0.0, n_steps=sharpness_steps, seed=derive_seed(seed, "asam")
    )
    x = x_eval.to(torch.float64)
    g = torch_generator(derive_seed(seed, "input-noise"))
    noise = input_noise * torch.randn(x.shape, generator=g, dtype=torch.float64)
    f0 = flat.outputs(None, x)
    in_sens = float((flat.outputs(None, x + noise) - f0).norm(dim=1).mean())
    rng = as_generator(derive_seed(seed, "param-noise"))
    par = []
    for _ in range(4):
        d = rng.standard_normal(theta.shape)
        d *= rho / np.linalg.norm(d)
        par.append(float((flat.outputs(theta + d, x) - f0).norm(dim=1).mean()))
    return {
        "train loss": MetricValue(flat.loss0),
        "top Hessian eigenvalue": MetricValue(float(eig.eigenvalues[0])),
        "Hessian trace": MetricValue(tr.estimate, tr.stderr),
        "trace / ||theta||": MetricValue(tr.estimate / pnorm, tr.stderr / pnorm),
        f"SAM sharpness (rho={rho:g})": MetricValue(sam.value),
        f"ASAM sharpness (rho={rho_adaptive:g}, eta=0)": MetricValue(asam.value),
        "output change, input noise": MetricValue(in_sens),
        f"output change, parameter noise (rho={rho:g})": MetricValue(float(np.mean(par))),
    }


# The theory's expectation for each metric under a function-preserving reparameterization.
THEORY = {
    "train loss": "invariant",
    "top Hessian eigenvalue": "may change",
    "Hessian trace": "may change",
    "trace / ||theta||": "may change",
    "SAM": "may change",
    "ASAM": "invariant",
    "output change, input noise": "invariant",
    "output change, parameter noise": "may change",
}


def theory_for(metric: str) -> str:
    for key, verdict in THEORY.items():
        if metric.startswith(key):
            return verdict
    return "may change"


@dataclass(frozen=True)
class InvarianceRow:
    family: str
    c: float
    metric: str
    original: float
    transformed: float
    rel_change: float
    verdict: str  # "changes" or "invariant"
    theory: str  # "invariant" or "may change"

    @property
    def consistent(self) -> bool:
        return self.theory == "may change" or self.verdict == "invariant"


@dataclass(frozen=True)
class TransformCheck:
    family: str
    c: float
    max_output_diff: float
    output_scale: float


def compare(
    base: dict[str, MetricValue], other: dict[str, MetricValue], family: str, c: float, rel_tol: float, z: float
) -> list[InvarianceRow]:
    rows = []
    for name, a in base.items():
        b = other[name]
        diff = abs(b.value - a.value)
        rel = diff / max(abs(a.value), 1e-300)
        if a.stderr is not None and b.stderr is not None:
            changes = diff > z * math.sqrt(a.stderr**2 + b.stderr**2)
        else:
            changes = rel > rel_tol
        rows.append(
            InvarianceRow(
                family, c, name, a.value, b.value, rel, "changes" if changes else "invariant", theory_for(name)
            )
        )
    return rows


def invariance_study(
    model: nn.Module,
    transforms: list[tuple[str, float, Callable[[], nn.Module]]],
    loss_fn: LossFn,
    data: Any,
    x_eval: torch.Tensor,
    *,
    rho: float,
    rho_adaptive: float,
    sharpness_steps: int,
    trace_matvecs: int,
    input_noise: float,
    seed: int,
    rel_tol: float = 1e-6,
    z: float = 3.0,
) -> tuple[list[TransformCheck], list[InvarianceRow]]:
    """Verify each transform preserves the outputs, then compare every metric with the original."""
    kw = dict(
        rho=rho,
        rho_adaptive=rho_adaptive,
        sharpness_steps=sharpness_steps,
        trace_matvecs=trace_matvecs,
        input_noise=input_noise,
        seed=seed,
    )
    base = measure_metrics(model, loss_fn, data, x_eval, **kw)
    checks, rows = [], []
    for family, c, build in transforms:
        other = build()
        diff, scale = max_output_difference(model, other, x_eval)
        checks.append(TransformCheck(family, c, diff, scale))
        rows.extend(compare(base, measure_metrics(other, loss_fn, data, x_eval, **kw), family, c, rel_tol, z))
    return checks, rows
