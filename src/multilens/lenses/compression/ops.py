"""Compression operators on a model's ``nn.Linear`` layers: SVD truncation, magnitude and random pruning.

Every operator returns a NEW model (a deep copy); the input is never modified. SVD truncation
replaces a layer ``W`` (out x in) by :class:`LowRankLinear` ``U_r diag(s_r) V_r^T`` held as two
factors (``r (in + out)`` weights), so retraining keeps the rank. Pruning zeroes weights and
records the mask as a buffer ``prune_mask`` so retraining can keep them at zero
(:func:`apply_masks`). Layers other than ``nn.Linear`` are left alone and named in ``skipped``.

Eckart-Young (Eckart & Young 1936): the best rank-r approximation of W in Frobenius norm is the
truncated SVD, with squared error sum_{j>r} sigma_j^2 (the tail energy).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from multilens.errors import ConfigError
from multilens.seeding import torch_generator


class LowRankLinear(nn.Module):
    """y = x V U^T + b: a rank-r linear layer (``u``: out x r, ``v``: in x r)."""

    def __init__(self, u: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.u = nn.Parameter(u.detach().clone())
        self.v = nn.Parameter(v.detach().clone())
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())
        self.in_features, self.out_features, self.rank = v.shape[0], u.shape[0], u.shape[1]

    @property
    def weight(self) -> torch.Tensor:
        return self.u @ self.v.T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = (x @ self.v) @ self.u.T
        return y if self.bias is None else y + self.bias


@dataclass(frozen=True)
class LayerSpectrum:
    name: str
    shape: tuple[int, int]
    singular_values: np.ndarray  # descending

    @property
    def energy(self) -> float:
        return float(np.sum(self.singular_values**2))

    @property
    def stable_rank(self) -> float:
        """||W||_F^2 / ||W||_2^2."""
        s = self.singular_values
        return float(np.sum(s**2) / s[0] ** 2) if s[0] > 0 else 0.0

    @property
    def condition_number(self) -> float:
        s = self.singular_values
        return float(s[0] / s[-1]) if s[-1] > 0 else math.inf

    def tail_energy(self, r: int) -> float:
        """sum_{j>r} sigma_j^2."""
        return float(np.sum(self.singular_values[r:] ** 2))

    def rank_for_energy(self, energy: float) -> int:
        """The smallest r keeping at least ``energy`` of sum sigma_j^2."""
        c = np.cumsum(self.singular_values**2) / max(self.energy, 1e-300)
        return int(min(len(c), np.searchsorted(c, energy - 1e-12) + 1))


def linear_layers(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]


def skipped_layers(model: nn.Module) -> list[str]:
    """Names of parametrized leaf modules the operators leave alone."""
    out = []
    for n, m in model.named_modules():
        own = list(m.parameters(recurse=False))
        if own and not isinstance(m, (nn.Linear, LowRankLinear)):
            out.append(n)
    return out


def layer_spectra(model: nn.Module) -> list[LayerSpectrum]:
    """Per-layer singular values (float64) of every nn.Linear weight and of every LowRankLinear's U V^T
    (its first ``rank`` singular values: the rest are zero by construction)."""
    out = []
    for n, m in model.named_modules():
        if isinstance(m, (nn.Linear, LowRankLinear)):
            w = m.weight.detach().to(torch.float64).cpu().numpy()
            s = np.linalg.svd(w, compute_uv=False)
            out.append(LayerSpectrum(n, tuple(w.shape), s[: m.rank] if isinstance(m, LowRankLinear) else s))
    return out


def count_weights(model: nn.Module) -> int:
    """Stored non-zero weight-matrix entries: LowRankLinear counts r (in + out); pruned layers their mask."""
    total = 0
    for m in model.modules():
        if isinstance(m, LowRankLinear):
            total += m.u.numel() + m.v.numel()
        elif isinstance(m, nn.Linear):
            mask = getattr(m, "prune_mask", None)
            total += int(mask.sum()) if mask is not None else m.weight.numel()
    return total


def _set(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _ranks(spectra: list[LayerSpectrum], rank: int | dict | None, energy: float | None) -> dict[str, int]:
    if (rank is None) == (energy is None):
        raise ConfigError("svd_truncate needs exactly one of `rank=` (int or {layer: int}) or `energy=` (0 < e <= 1).")
    out = {}
    for s in spectra:
        full = min(s.shape)
        if energy is not None:
            if not 0.0 < float(energy) <= 1.0:
                raise ConfigError(f"`energy` must be a number in (0, 1]; got {energy!r}.")
            out[s.name] = s.rank_for_energy(float(energy))
        else:
            r = rank.get(s.name, full) if isinstance(rank, dict) else rank
            if isinstance(r, bool) or not isinstance(r, int) or r < 1:
                raise ConfigError(f"`rank` must be an int >= 1 (or a dict of them); got {r!r} for layer {s.name!r}.")
            out[s.name] = min(r, full)
    return out


def svd_truncate(model: nn.Module, rank: int | dict[str, int] | None = None, energy: float | None = None) -> nn.Module:
    """A new model whose nn.Linear layers are truncated SVDs (rank ``rank`` or the rank keeping ``energy``)."""
    new = copy.deepcopy(model)
    ranks = _ranks(layer_spectra(model), rank, energy)
    for name, lin in linear_layers(new):
        w = lin.weight.detach().to(torch.float64)
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
        r = ranks[name]
        root = s[:r].sqrt()
        dt = lin.weight.dtype
        low = LowRankLinear((u[:, :r] * root).to(dt), (vh[:r].T * root).to(dt), lin.bias)
        if not name:  # the model is itself one nn.Linear
            return low
        _set(new, name, low)
    return new


def _keep_counts(model: nn.Module, amount: float | None, keep: dict[str, int] | None) -> dict[str, int]:
    if (amount is None) == (keep is None):
        raise ConfigError(
            "pruning needs exactly one of `amount=` (fraction removed, 0 <= a < 1) or `keep=` {layer: n}."
        )
    out = {}
    for n, lin in linear_layers(model):
        size = lin.weight.numel()
        if amount is not None:
            if not 0.0 <= float(amount) < 1.0:
                raise ConfigError(f"`amount` must be a number in [0, 1); got {amount!r}.")
            out[n] = max(1, int(round(size * (1.0 - float(amount)))))
        else:
            k = keep.get(n, size)
            if isinstance(k, bool) or not isinstance(k, int) or k < 1:
                raise ConfigError(f"`keep` must map layers to ints >= 1; got {k!r} for layer {n!r}.")
            out[n] = min(k, size)
    return out


def _prune(model: nn.Module, keep: dict[str, int], scores: dict[str, torch.Tensor]) -> nn.Module:
    new = copy.deepcopy(model)
    for n, lin in linear_layers(new):
        sc = scores[n].flatten()
        idx = torch.argsort(sc, descending=True, stable=True)[: keep[n]]
        mask = torch.zeros_like(sc, dtype=torch.bool)
        mask[idx] = True
        mask = mask.view_as(lin.weight)
        with torch.no_grad():
            lin.weight.mul_(mask)
        lin.register_buffer("prune_mask", mask)
    return new


def magnitude_prune(model: nn.Module, amount: float | None = None, keep: dict[str, int] | None = None) -> nn.Module:
    """A new model keeping, per nn.Linear, the largest-|w| weights (``amount`` removed, or ``keep[layer]`` kept)."""
    return _prune(
        model, _keep_counts(model, amount, keep), {n: m.weight.detach().abs() for n, m in linear_layers(model)}
    )


def random_prune(
    model: nn.Module, amount: float | None = None, keep: dict[str, int] | None = None, *, seed: int = 0
) -> nn.Module:
    """A new model keeping a uniformly random subset of each nn.Linear's weights (seeded)."""
    g = torch_generator(seed)
    scores = {n: torch.rand(m.weight.shape, generator=g) for n, m in linear_layers(model)}
    return _prune(model, _keep_counts(model, amount, keep), scores)


def matched_keep(model: nn.Module, rank: int | dict[str, int]) -> dict[str, int]:
    """Per layer, the number of weights a rank-r factorization stores, r (in + out), capped at the layer size."""
    out = {}
    for n, lin in linear_layers(model):
        r = rank.get(n) if isinstance(rank, dict) else rank
        r = min(int(r), min(lin.weight.shape))
        out[n] = min(lin.weight.numel(), r * sum(lin.weight.shape))
    return out


def apply_masks(model: nn.Module) -> None:
    """Re-zero pruned weights in place (after an optimizer step on a pruned model we own)."""
    with torch.no_grad():
        for m in model.modules():
            mask = getattr(m, "prune_mask", None)
            if mask is not None and isinstance(m, nn.Linear):
                m.weight.mul_(mask)
