"""Multi-layer perceptrons with seeded initialization and exact parameter/FLOP counts.

Initialization follows torch.nn.Linear's default (Kaiming-uniform weights with a=sqrt(5), i.e.
U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases) but draws from a local
torch.Generator, so building a model never touches the global RNG.

FLOP counts: a dense layer costs 2*fan_in*fan_out multiply-adds plus fan_out bias adds per
example; activations are counted as one FLOP per unit. Training compute in scaling studies uses
the standard approximation C = 6*N*D (forward 2N, backward 4N per example; Kaplan et al. 2020).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from multilens.errors import ConfigError
from multilens.seeding import torch_generator
from multilens.validation import check_int

Activation = Literal["relu", "tanh", "gelu"]
_ACT = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


@dataclass(frozen=True)
class MLPSpec:
    d_in: int
    widths: tuple[int, ...]
    d_out: int
    activation: Activation = "relu"
    bias: bool = True

    def __post_init__(self) -> None:
        check_int("d_in", self.d_in, 1)
        check_int("d_out", self.d_out, 1)
        for i, w in enumerate(self.widths):
            check_int(f"widths[{i}]", w, 1)
        if self.activation not in _ACT:
            raise ConfigError(f"`activation` must be one of {sorted(_ACT)}; got {self.activation!r}.")

    @property
    def layer_dims(self) -> list[tuple[int, int]]:
        dims = [self.d_in, *self.widths, self.d_out]
        return list(zip(dims[:-1], dims[1:]))


def n_params(spec: MLPSpec) -> int:
    """Exact number of trainable parameters."""
    return sum(i * o + (o if spec.bias else 0) for i, o in spec.layer_dims)


def forward_flops(spec: MLPSpec) -> int:
    """Exact forward FLOPs per example (multiply-adds count 2, bias adds and activations 1)."""
    dims = spec.layer_dims
    flops = sum(2 * i * o + (o if spec.bias else 0) for i, o in dims)
    flops += sum(o for _, o in dims[:-1])  # one activation per hidden unit
    return flops


def build_mlp(spec: MLPSpec, seed: int) -> nn.Sequential:
    """A freshly initialized MLP; the same spec and seed give bit-identical weights."""
    g = torch_generator(seed)
    layers: list[nn.Module] = []
    for k, (i, o) in enumerate(spec.layer_dims):
        # Built on the meta device so nn.Linear's own init does not draw from the global RNG.
        lin = nn.Linear(i, o, bias=spec.bias, device="meta").to_empty(device="cpu")
        bound = 1.0 / math.sqrt(i)
        with torch.no_grad():
            lin.weight.uniform_(-bound, bound, generator=g)
            if spec.bias:
                lin.bias.uniform_(-bound, bound, generator=g)
        layers.append(lin)
        if k < len(spec.layer_dims) - 1:
            layers.append(_ACT[spec.activation]())
    return nn.Sequential(*layers)
