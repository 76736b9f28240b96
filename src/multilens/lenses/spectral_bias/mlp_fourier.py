"""Spectral bias of a real MLP: per-frequency fitting times and the NTK's prediction of them.

Worked example 3 / exercise C.7: an MLP is trained by full-batch gradient descent on
f*(x) = sin(2 pi x) + 0.2 sin(20 pi x) sampled on a uniform grid of [0, 1). Over training the
residual r_t = f_t - f* is Fourier transformed (np.fft.rfft) and the error at each target
frequency k, e_k(t) = |R_t[k]| / |F*[k]|, gives a fitting time: the first step with
e_k <= threshold (0.1 = "90% explained").

Prediction: the empirical neural tangent kernel at initialisation Theta = J J^T (J the Jacobian
of the n outputs with respect to all parameters, from torch.func.jacrev) linearises training;
for the loss mean((f - y)^2) the residual follows r_t = U (I - eta Lambda)^t U^T r_0 with
(Lambda, U) the eigenpairs of 2 Theta / n (Jacot et al. 2018; Lee et al. 2019). That predicts
each frequency's fitting time and, mode by mode, the order in which the residual's projections
on the NTK eigenvectors shrink; the measured order is compared by Spearman rank correlation.

What-if (Tancik et al. 2020): Gaussian Fourier features x -> [sin(2 pi B x), cos(2 pi B x)],
B ~ N(0, sigma^2), as the network's input flatten the NTK spectrum, so the high frequency is
fitted far sooner.

The S seeds of one architecture are built with multilens.models.build_mlp (seeded, no global RNG)
and trained in lockstep as one batched MLP (stacked weights, torch.baddbmm), which computes
exactly the same function as each nn.Sequential; step sizes are eta_s = lr_fraction /
lambda_max(2 Theta_s / n) for each network, the same fraction of each one's stability limit.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn
from torch.func import functional_call, jacrev, vmap

from multilens.errors import ConfigError, ConvergenceWarning
from multilens.models import MLPSpec, build_mlp
from multilens.seeding import SeedLike, as_generator
from multilens.theory.spectral_bias import linearized_residual, mode_fit_step
from multilens.validation import check_int

_ACT = {"relu": torch.relu, "tanh": torch.tanh, "gelu": nn.functional.gelu}
PREDICTION_HORIZON = 1e9  # predicted fitting steps are searched up to here; beyond it they are inf


def grid(n: int) -> np.ndarray:
    """n equispaced points of [0, 1) (no endpoint, so the FFT sees exactly periodic samples)."""
    check_int("n", n, 4)
    return np.arange(n) / n


def fourier_target(x: np.ndarray, frequencies: tuple[int, ...], amplitudes: tuple[float, ...]) -> np.ndarray:
    """sum_k a_k sin(2 pi f_k x)."""
    return sum(a * np.sin(2.0 * np.pi * f * x) for f, a in zip(frequencies, amplitudes))


def plain_inputs(x: np.ndarray) -> np.ndarray:
    """The raw coordinate, centred to [-1, 1): shape (n, 1)."""
    return (2.0 * x - 1.0)[:, None]


def fourier_feature_inputs(x: np.ndarray, n_features: int, sigma: float, seed: SeedLike) -> np.ndarray:
    """[sin(2 pi B x), cos(2 pi B x)] with B ~ N(0, sigma^2) (n_features draws): shape (n, 2m)."""
    b = as_generator(seed).normal(0.0, sigma, n_features)
    arg = 2.0 * np.pi * np.outer(x, b)  # (n, m)
    return np.concatenate([np.sin(arg), np.cos(arg)], axis=1)


# ----------------------------------------------------------------------------------------------
# A batch of MLPs with stacked weights


@dataclass
class BatchedMLP:
    """S MLPs of one architecture: weights (S, fan_in, fan_out), biases (S, 1, fan_out)."""

    weights: list[torch.Tensor]
    biases: list[torch.Tensor]
    activation: str

    @classmethod
    def from_models(cls, models: list[nn.Sequential], activation: str, dtype: torch.dtype) -> BatchedMLP:
        lins = [[m for m in model if isinstance(m, nn.Linear)] for model in models]
        weights = [torch.stack([ls[i].weight.detach().T for ls in lins]).to(dtype) for i in range(len(lins[0]))]
        biases = [torch.stack([ls[i].bias.detach()[None, :] for ls in lins]).to(dtype) for i in range(len(lins[0]))]
        return cls(
            [w.clone().requires_grad_(True) for w in weights],
            [b.clone().requires_grad_(True) for b in biases],
            activation,
        )

    @property
    def parameters(self) -> list[torch.Tensor]:
        return [*self.weights, *self.biases]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x (S, n, d_in) -> outputs (S, n)."""
        h = x
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)  # (S, n, fan_out)
            if i < last:
                h = _ACT[self.activation](h)
        return h[..., 0]


_ACT_MODULES = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.GELU: "gelu"}


def activation_of(model: nn.Module) -> str:
    """The activation of an nn.Sequential of nn.Linear layers (with bias) separated by one kind of
    activation module and ending in one output; ValueError for any other structure."""
    msg = (
        "`model_builder` must return an nn.Sequential of nn.Linear layers (with bias) separated by one kind of "
        "activation (nn.ReLU, nn.Tanh or nn.GELU) and ending in one output"
    )
    layers = list(model) if isinstance(model, nn.Sequential) else []
    if not layers or len(layers) % 2 == 0:
        raise ValueError(msg + f"; got {type(model).__name__} with {len(layers)} layers.")
    lins, acts = layers[0::2], layers[1::2]
    if not all(isinstance(m, nn.Linear) and m.bias is not None for m in lins) or lins[-1].out_features != 1:
        raise ValueError(msg + ".")
    kinds = {_ACT_MODULES.get(type(a)) for a in acts}
    if None in kinds or len(kinds) > 1:
        raise ValueError(msg + f"; got activations {sorted(type(a).__name__ for a in acts)}.")
    return kinds.pop() if kinds else "relu"  # a single Linear layer has no activation


def empirical_ntk(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """Theta = J J^T (n, n) in float64, J the Jacobian of the outputs w.r.t. every parameter."""
    m = copy.deepcopy(model).double()
    params = {k: v.detach() for k, v in m.named_parameters()}

    def f(p: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
        return functional_call(m, p, (xi[None, :],)).reshape(())

    jac = vmap(jacrev(f), in_dims=(None, 0))(params, x.double())  # name -> (n, *shape)
    n = x.shape[0]
    j = torch.cat([jac[k].reshape(n, -1) for k in params], dim=1)  # (n, P)
    return (j @ j.T).numpy()


# ----------------------------------------------------------------------------------------------
# One architecture, S seeds


@dataclass(frozen=True)
class ArchitectureRun:
    """Measured and NTK-predicted fitting of one architecture over S seeds."""

    kind: str  # "plain" or "fourier"
    steps: int
    eta: np.ndarray  # (S,)
    lam_top: np.ndarray  # (S, 8) largest eigenvalues of 2 Theta / n
    err: np.ndarray  # (S, T+1, K) measured e_k(t)
    err_pred: np.ndarray  # (S, T+1, K) linearised prediction
    tau: np.ndarray  # (S, K) measured fitting steps (inf = not within the budget)
    tau_pred: np.ndarray  # (S, K) predicted fitting steps (may exceed the budget; inf = never)
    mode_tau: np.ndarray  # (S, M) measured fitting steps of the selected NTK modes
    mode_tau_pred: np.ndarray  # (S, M)
    mode_lam: np.ndarray  # (S, M)
    spearman: np.ndarray  # (S,) rank correlation of mode fitting steps (NaN if undefined)
    diverged: np.ndarray  # (S,) bool
    n_params: int


def first_crossing(curve: np.ndarray, threshold: float) -> float:
    """First index with curve <= threshold, or inf."""
    hit = np.flatnonzero(curve <= threshold)
    return float(hit[0]) if hit.size else math.inf


def predicted_error(
    u: np.ndarray, lam: np.ndarray, r0: np.ndarray, eta: float, ks: list[int], fstar_hat: np.ndarray, steps: np.ndarray
) -> np.ndarray:
    """Linearised e_k(t) at the given steps: |FFT(U (I - eta Lambda)^t U^T r0)[k]| / |F*[k]|, shape (T, K)."""
    r = linearized_residual(u, lam, r0, eta, steps)  # (T, n)
    return np.abs(np.fft.rfft(r, axis=1)[:, ks]) / np.abs(fstar_hat)[None, :]


def predicted_fit_step(
    u: np.ndarray,
    lam: np.ndarray,
    r0: np.ndarray,
    eta: float,
    ks: list[int],
    fstar_hat: np.ndarray,
    budget: int,
    threshold: float,
    horizon: float = PREDICTION_HORIZON,
) -> np.ndarray:
    """Predicted first step with e_k <= threshold: exact to the step up to ``budget``, then on a
    fine log grid (~0.1% spacing) up to ``horizon``; inf if never within it."""
    dense = np.arange(budget + 1, dtype=np.float64)
    far = np.unique(np.round(np.geomspace(budget + 1, horizon, 10_000)))
    t = np.r_[dense, far]
    e = predicted_error(u, lam, r0, eta, ks, fstar_hat, t)  # (len(t), K)
    first = [first_crossing(e[:, i], threshold) for i in range(len(ks))]
    return np.array([t[int(k)] if math.isfinite(k) else math.inf for k in first])


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    if np.unique(a).size < 2 or np.unique(b).size < 2:
        return math.nan  # a constant ranking has no correlation (and scipy would warn)
    return float(spearmanr(a, b).statistic)


def run_architecture(
    kind: str,
    x: np.ndarray,
    fstar: np.ndarray,
    frequencies: tuple[int, ...],
    seeds: list[int],
    width: int,
    depth: int,
    activation: str,
    lr_fraction: float,
    steps: int,
    threshold: float,
    n_modes: int,
    ff_features: int,
    ff_sigma: float,
    builder: Callable[[int, int], nn.Sequential] | None = None,
) -> ArchitectureRun:
    """Build, linearise (NTK) and train S networks of one input type; measure and predict fitting.

    ``builder(d_in, seed)`` builds each network (None: ``build_mlp`` with width, depth, activation).
    """
    if kind not in ("plain", "fourier"):
        raise ConfigError(f"`kind` must be 'plain' or 'fourier'; got {kind!r}.")
    check_int("steps", steps, 1)
    n = x.size
    ks = list(frequencies)
    fstar_hat = np.fft.rfft(fstar)[ks]
    inputs = [
        plain_inputs(x) if kind == "plain" else fourier_feature_inputs(x, ff_features, ff_sigma, s) for s in seeds
    ]
    if builder is None:
        spec = MLPSpec(inputs[0].shape[1], (width,) * depth, 1, activation)  # type: ignore[arg-type]
        models = [build_mlp(spec, s) for s in seeds]
    else:
        models = [builder(inputs[0].shape[1], s) for s in seeds]
        activation = activation_of(models[0])
        for m in models[1:]:
            if activation_of(m) != activation or [p.shape for p in m.parameters()] != [
                p.shape for p in models[0].parameters()
            ]:
                raise ValueError("`model_builder` must build the same architecture for every seed.")
    # NTK at initialisation, per network, in float64.
    eta, lams, us = [], [], []
    for model, inp in zip(models, inputs):
        theta = empirical_ntk(model, torch.as_tensor(inp, dtype=torch.float64))
        lam, u = np.linalg.eigh(2.0 * theta / n)
        order = np.argsort(lam)[::-1]
        lam, u = np.clip(lam[order], 0.0, None), u[:, order]
        lams.append(lam)
        us.append(u)
        eta.append(lr_fraction / float(lam[0]))
    # Train all seeds in lockstep (float32), recording the residual on the grid at every step.
    net = BatchedMLP.from_models(models, activation, torch.float32)
    xb = torch.as_tensor(np.stack(inputs), dtype=torch.float32)  # (S, n, d_in)
    yb = torch.as_tensor(fstar, dtype=torch.float32)
    lr = torch.as_tensor(eta, dtype=torch.float32)
    resid = np.empty((steps + 1, len(seeds), n), dtype=np.float64)
    diverged = np.zeros(len(seeds), dtype=bool)
    for t in range(steps + 1):
        out = net(xb)
        r = out - yb  # (S, n)
        resid[t] = r.detach().numpy()
        if not np.all(np.isfinite(resid[t])):
            diverged |= ~np.all(np.isfinite(resid[t]), axis=1)
            resid[t + 1 :] = np.nan
            break
        if t == steps:
            break
        loss = (r * r).mean(dim=1).sum()  # seeds are independent: the sum separates their gradients
        grads = torch.autograd.grad(loss, net.parameters)
        with torch.no_grad():
            for p, g in zip(net.parameters, grads):
                p -= lr.view(-1, *([1] * (p.dim() - 1))) * g
    if diverged.any():
        warnings.warn(
            f"{kind} MLP diverged for {int(diverged.sum())} seed(s); their fitting times are not measured",
            ConvergenceWarning,
            stacklevel=2,
        )
    spec_r = np.fft.rfft(resid, axis=2)[:, :, ks]  # (T+1, S, K)
    err = np.transpose(np.abs(spec_r) / np.abs(fstar_hat)[None, None, :], (1, 0, 2))  # (S, T+1, K)
    tsteps = np.arange(steps + 1, dtype=np.float64)
    err_pred = np.stack(
        [predicted_error(us[i], lams[i], resid[0, i], eta[i], ks, fstar_hat, tsteps) for i in range(len(seeds))]
    )
    tau = np.array([[first_crossing(err[i, :, j], threshold) for j in range(len(ks))] for i in range(len(seeds))])
    tau[diverged] = math.nan
    tau_pred = np.stack(
        [
            predicted_fit_step(us[i], lams[i], resid[0, i], eta[i], ks, fstar_hat, steps, threshold)
            for i in range(len(seeds))
        ]
    )
    # NTK modes carrying the most initial residual: measured vs predicted fitting order.
    m_tau, m_pred, m_lam, rho = [], [], [], []
    for i in range(len(seeds)):
        c0 = us[i].T @ resid[0, i]
        sel = np.argsort(np.abs(c0))[::-1][:n_modes]
        proj = np.abs(resid[:, i, :] @ us[i][:, sel])  # (T+1, M)
        meas = np.array([first_crossing(proj[:, j], threshold * abs(c0[s])) for j, s in enumerate(sel)])
        pred = mode_fit_step(lams[i][sel], eta[i], threshold)
        cap = steps + 1.0  # censored at the budget: both rankings treat "> T" as one tie
        m_tau.append(meas)
        m_pred.append(pred)
        m_lam.append(lams[i][sel])
        rho.append(math.nan if diverged[i] else rank_correlation(np.minimum(meas, cap), np.minimum(pred, cap)))
    return ArchitectureRun(
        kind,
        steps,
        np.array(eta),
        np.stack([lam[:8] for lam in lams]),
        err,
        err_pred,
        tau,
        tau_pred,
        np.stack(m_tau),
        np.stack(m_pred),
        np.stack(m_lam),
        np.array(rho),
        diverged,
        int(sum(p.numel() for p in models[0].parameters())),
    )


def batched_matches_models(models: list[nn.Sequential], activation: str, x: np.ndarray) -> float:
    """Largest |batched(x) - model(x)| over the seeds (float64): the batched net is the same function."""
    net = BatchedMLP.from_models(models, activation, torch.float64)
    xb = torch.as_tensor(np.stack([x] * len(models)), dtype=torch.float64)
    with torch.no_grad():
        out = net(xb)
        ref = torch.stack([copy.deepcopy(m).double()(xb[0])[:, 0] for m in models])
    return float((out - ref).abs().max())
