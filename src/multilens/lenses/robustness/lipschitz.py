"""Lipschitz constants (l-2 to l-2) of a feed-forward classifier, per stage and end to end.

Upper bound (Szegedy et al. 2014; Virmaux & Scaman 2018 for its looseness): a stage that is a
chain of layers h -> phi(W h + b) is Lipschitz with constant at most the product of its layers'
constants. An affine layer's constant is its spectral norm ||W||_2, computed here by power
iteration on W^T W through :func:`multilens.linalg.power_iteration` (model-free: it sees only the
matvec v -> W^T W v; for nn.Conv2d the matvec is a convolution and its transpose). Activations:
ReLU, LeakyReLU(slope <= 1), Tanh, Hardtanh are 1-Lipschitz; Sigmoid is 1/4-Lipschitz; GELU's
constant is max_x |d/dx x Phi(x)| = 1.1289 (evaluated numerically here). Normalisation: BatchNorm
in eval mode is the diagonal affine map gamma (x - mu)/sqrt(var + eps) + beta, constant
max |gamma / sqrt(var + eps)| (exact); LayerNorm is not globally Lipschitz (its constant blows
up as the variance of its input goes to 0), so a model with LayerNorm gets no upper bound.
Dropout and Identity are the identity in eval mode; Flatten is an isometry.

Lower bound: any pair (h, h') gives ||f(h) - f(h')|| / ||h - h'|| <= L, and at a point of
differentiability ||J_f(h)||_2 <= L. The lens maximises both over the stage's real inputs (the
held-out data pushed through the earlier stages) by gradient ascent on the finite-difference ratio
from the examples with the largest Jacobian norms, so lower <= upper must hold on every stage.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from multilens.errors import ConfigError
from multilens.linalg import power_iteration
from multilens.seeding import torch_generator

ONE_LIPSCHITZ = (nn.ReLU, nn.Tanh, nn.Hardtanh, nn.Identity, nn.Dropout, nn.Flatten, nn.ReLU6)


def _gelu_constant() -> float:
    t = torch.linspace(-6, 6, 200001, dtype=torch.float64)
    d = torch.distributions.Normal(0.0, 1.0)
    return float((d.cdf(t) + t * torch.exp(d.log_prob(t))).abs().max())


@dataclass(frozen=True)
class LayerBound:
    index: int
    kind: str
    constant: float
    how: str
    converged: bool | None = None
    n_iter: int | None = None
    dense: float | None = None  # the dense SVD's value, where computed


def layers_of(model: nn.Module) -> list[nn.Module]:
    """The chain of leaf layers of a feed-forward model (nn.Sequential, possibly nested)."""
    if isinstance(model, nn.Sequential):
        out: list[nn.Module] = []
        for m in model:
            out += layers_of(m)
        return out
    if len(list(model.children())) == 0:
        return [model]
    raise ConfigError(
        f"the Lipschitz bounds need a feed-forward nn.Sequential; {type(model).__name__} has submodules whose order "
        "of application is unknown. Pass an nn.Sequential (nested Sequentials are fine)."
    )


def layer_constant(
    layer: nn.Module, index: int, in_shape: tuple[int, ...], *, seed: int, tol: float, max_iter: int, dense_max: int
) -> LayerBound:
    """The l-2 Lipschitz constant of one layer (an upper bound for the nonlinear ones, exact for the others)."""
    name = type(layer).__name__
    if isinstance(layer, nn.Linear):
        w = layer.weight.detach().double()
        dim = w.shape[1]

        def mv(v: np.ndarray) -> np.ndarray:
            t = torch.from_numpy(v)
            return (w.T @ (w @ t)).numpy()

    elif isinstance(layer, nn.Conv2d):
        w = layer.weight.detach().double()
        kw = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=layer.groups)
        shape = (1, *in_shape)
        dim = int(math.prod(in_shape))
        out_shape = nn.functional.conv2d(torch.zeros(shape, dtype=torch.float64), w, **kw).shape

        def mv(v: np.ndarray) -> np.ndarray:
            t = torch.from_numpy(v).reshape(shape)
            o = nn.functional.conv2d(t, w, **kw)
            pad = [
                shape[2 + i] - ((out_shape[2 + i] - 1) * layer.stride[i] - 2 * layer.padding[i]
                                + layer.dilation[i] * (w.shape[2 + i] - 1) + 1)
                for i in range(2)
            ]  # fmt: skip
            back = nn.functional.conv_transpose2d(o, w, output_padding=tuple(pad), **kw)
            return back.reshape(-1).numpy()

    elif isinstance(layer, ONE_LIPSCHITZ):
        return LayerBound(index, name, 1.0, "1-Lipschitz (exact for the identity-like layers)")
    elif isinstance(layer, nn.LeakyReLU):
        s = abs(layer.negative_slope)
        return LayerBound(index, name, max(1.0, s), "max(1, |negative slope|)")
    elif isinstance(layer, nn.Sigmoid):
        return LayerBound(index, name, 0.25, "sigmoid' <= 1/4")
    elif isinstance(layer, nn.GELU):
        return LayerBound(index, name, _gelu_constant(), "max |GELU'| (numerical, on a grid of 200001 points)")
    elif isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
        if layer.running_var is None:
            raise ConfigError("BatchNorm without running statistics has no fixed eval-mode map; no Lipschitz bound.")
        scale = 1.0 / torch.sqrt(layer.running_var.double() + layer.eps)
        if layer.weight is not None:
            scale = scale * layer.weight.detach().double()
        return LayerBound(index, name, float(scale.abs().max()), "eval-mode BatchNorm: max |gamma / sqrt(var + eps)|")
    else:
        raise ConfigError(
            f"layer {index} ({name}) has no Lipschitz bound in multilens (supported: Linear, Conv2d, ReLU, LeakyReLU, "
            "Tanh, Sigmoid, GELU, BatchNorm (eval), Dropout, Flatten, Identity; LayerNorm is not globally Lipschitz)."
        )
    res = power_iteration(mv, dim, 1, tol=tol, max_iter=max_iter, seed=seed, return_eigenvectors=False)
    sigma = math.sqrt(max(float(res.eigenvalues[0]), 0.0))
    dense = None
    if isinstance(layer, nn.Linear) and dim * w.shape[0] <= dense_max:
        dense = float(torch.linalg.matrix_norm(w, 2))
    return LayerBound(index, name, sigma, "spectral norm by power iteration on W^T W", bool(res.converged),
                      int(res.n_iter), dense)  # fmt: skip


def split_stages(layers: list[nn.Module], n_stages: int) -> list[list[int]]:
    """Contiguous groups of layer indices, one per stage, each ending after an affine layer's activations.

    The affine layers (Linear, Conv2d) are split as evenly as possible into ``n_stages`` groups; a
    group takes its affine layers plus the element-wise layers that follow them. With fewer affine
    layers than stages, the remaining stages are empty (the identity: L = 1 exactly).
    """
    affine = [i for i, m in enumerate(layers) if isinstance(m, (nn.Linear, nn.Conv2d))]
    if not affine:
        return [list(range(len(layers)))] + [[] for _ in range(n_stages - 1)]
    groups = np.array_split(np.arange(len(affine)), n_stages)
    stages: list[list[int]] = []
    start = 0
    for k, grp in enumerate(groups):
        if len(grp) == 0:
            stages.append([])
            continue
        last_affine = affine[int(grp[-1])]
        end = affine[int(grp[-1]) + 1] if int(grp[-1]) + 1 < len(affine) else len(layers)
        if k == n_stages - 1 or all(len(g) == 0 for g in groups[k + 1 :]):
            end = len(layers)
        stages.append(list(range(start, max(end, last_affine + 1))))
        start = end
    return stages


def jacobian_norms(f: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """||J_f(h_i)||_2 for each row (float64, exact: the full Jacobian's largest singular value)."""
    from torch.func import jacrev, vmap

    jac = vmap(jacrev(lambda v: f(v[None])[0]))(h)  # (n, out..., in...)
    n = h.shape[0]
    jm = jac.reshape(n, -1, int(math.prod(h.shape[1:])))
    return torch.linalg.matrix_norm(jm.detach(), 2)


def ratio_ascent(
    f: nn.Module, h: torch.Tensor, *, radius: float, steps: int, seed: int, lr: float = 0.1
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Maximise ||f(h + d) - f(h)|| / ||d|| over d by normalised gradient ascent from a random d.

    Returns (ratios per row, h, h + d): every ratio is a certified lower bound on the Lipschitz
    constant of f (it is one of the quotients whose supremum L is).
    """
    g = torch_generator(seed)
    d = torch.randn(h.shape, generator=g, dtype=h.dtype)
    d = radius * d / d.reshape(d.shape[0], -1).norm(dim=1).reshape(-1, *([1] * (h.dim() - 1)))
    best = torch.zeros(h.shape[0], dtype=h.dtype)
    best_d = d.clone()
    for _ in range(steps + 1):
        d.requires_grad_(True)
        num = (f(h + d) - f(h)).reshape(h.shape[0], -1).norm(dim=1)
        den = d.reshape(d.shape[0], -1).norm(dim=1)
        ratio = num / den
        with torch.no_grad():
            upd = ratio > best
            best = torch.where(upd, ratio.detach(), best)
            best_d[upd] = d.detach()[upd]
        (gr,) = torch.autograd.grad(ratio.sum(), d)
        with torch.no_grad():
            gn = gr.reshape(gr.shape[0], -1).norm(dim=1).clamp_min(1e-30).reshape(-1, *([1] * (h.dim() - 1)))
            d = d.detach() + lr * radius * gr / gn
            dn = d.reshape(d.shape[0], -1).norm(dim=1).clamp_min(1e-30).reshape(-1, *([1] * (h.dim() - 1)))
            d = d * torch.clamp(radius / dn, max=1.0)  # keep the pair local: ||d|| <= radius
    return best, h, h + best_d


@dataclass(frozen=True)
class StageBounds:
    """Upper and lower l-2 Lipschitz bounds of one stage (a contiguous group of layers)."""

    index: int
    layers: tuple[int, ...]
    layer_kinds: tuple[str, ...]
    upper: float
    lower: float
    lower_jacobian: float
    lower_ratio: float
    affine: bool  # no nonlinearity: lower must equal upper
    n_inputs: int

    @property
    def ratio(self) -> float:
        return self.lower / self.upper if self.upper > 0 else float("nan")


@dataclass(frozen=True)
class LipschitzReport:
    stages: tuple[StageBounds, ...]
    end_to_end: StageBounds
    layer_bounds: tuple[LayerBound, ...]

    @property
    def upper(self) -> float:
        return math.prod(s.upper for s in self.stages)


class _Chain(nn.Module):
    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for m in self.layers:
            h = m(h)
        return h


def _stage_lower(
    f: nn.Module, h: torch.Tensor, *, examples: int, steps: int, radius: float, seed: int
) -> tuple[float, float]:
    jn = jacobian_norms(f, h)
    top = jn.argsort(descending=True)[: min(examples, h.shape[0])]
    scale = float(h.reshape(h.shape[0], -1).norm(dim=1).median().clamp_min(1e-12))
    ratios, _, _ = ratio_ascent(f, h[top], radius=radius * scale, steps=steps, seed=seed)
    return float(jn.max()), float(ratios.max())


def lipschitz_bounds(
    model: nn.Module,
    x: torch.Tensor,
    *,
    n_stages: int = 3,
    seed: int = 0,
    tol: float = 1e-10,
    max_iter: int = 2000,
    ascent_examples: int = 32,
    ascent_steps: int = 30,
    ascent_radius: float = 0.05,
    dense_max: int = 4_000_000,
) -> LipschitzReport:
    """Per-stage and end-to-end l-2 Lipschitz upper and lower bounds of a feed-forward model on inputs x.

    The computation runs in float64 on a deep copy in eval mode; x are real inputs (held-out data)
    whose images under the earlier stages are the stage's inputs for the lower bound.
    """
    from multilens.seeding import derive_seed

    m = copy.deepcopy(model).double().eval()
    for p in m.parameters():
        p.requires_grad_(False)
    layers = layers_of(m)
    h = x.detach().double()
    shapes = []
    with torch.no_grad():
        for layer in layers:
            shapes.append(tuple(h.shape[1:]))
            h = layer(h)
    lbs = tuple(
        layer_constant(layer, i, shapes[i], seed=derive_seed(seed, "power", i), tol=tol, max_iter=max_iter,
                       dense_max=dense_max)
        for i, layer in enumerate(layers)
    )  # fmt: skip
    groups = split_stages(layers, n_stages)
    stages = []
    h = x.detach().double()
    nonlinear = (nn.Linear, nn.Conv2d, nn.Flatten, nn.Identity, nn.Dropout)
    for si, grp in enumerate(groups):
        kinds = tuple(type(layers[i]).__name__ for i in grp)
        if not grp:
            stages.append(StageBounds(si, (), (), 1.0, 1.0, 1.0, 1.0, True, int(h.shape[0])))
            continue
        f = _Chain([layers[i] for i in grp])
        up = math.prod(lbs[i].constant for i in grp)
        lj, lr = _stage_lower(f, h, examples=ascent_examples, steps=ascent_steps, radius=ascent_radius,
                              seed=derive_seed(seed, "stage", si))  # fmt: skip
        affine = all(isinstance(layers[i], nonlinear) for i in grp)
        stages.append(StageBounds(si, tuple(grp), kinds, up, max(lj, lr), lj, lr, affine, int(h.shape[0])))
        with torch.no_grad():
            h = f(h)
    f_all = _Chain(layers)
    lj, lr = _stage_lower(f_all, x.detach().double(), examples=ascent_examples, steps=ascent_steps,
                          radius=ascent_radius, seed=derive_seed(seed, "end_to_end"))  # fmt: skip
    up = math.prod(s.upper for s in stages)
    affine = all(s.affine for s in stages)
    e2e = StageBounds(-1, tuple(range(len(layers))), tuple(type(layer).__name__ for layer in layers), up,
                      max(lj, lr), lj, lr, affine, int(x.shape[0]))  # fmt: skip
    return LipschitzReport(tuple(stages), e2e, lbs)
