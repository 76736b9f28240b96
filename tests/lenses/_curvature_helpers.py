"""Small models, data and exact dense Hessians (torch.func.hessian, float64) for the curvature tests.

torch.func.hessian is forward-over-reverse; torch's forward AD emits a DeprecationWarning from
its own internals (``torch.jit.script``) the first time it loads. Test modules that call
:func:`dense_hessian` carry ``TORCH_FWD_AD_FILTER`` so that warning (not ours) is not an error.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, hessian

from multilens.models import MLPSpec, build_mlp
from multilens.seeding import torch_generator

TORCH_FWD_AD_FILTER = "ignore:`torch.jit.script` is deprecated:DeprecationWarning"


def tiny_classifier(
    activation: str = "tanh", d_in: int = 6, width: int = 10, d_out: int = 3, seed: int = 0
) -> nn.Module:
    return build_mlp(MLPSpec(d_in, (width,), d_out, activation), seed=seed)


def tiny_data(n: int = 40, d_in: int = 6, n_classes: int = 3, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch_generator(seed)
    x = torch.randn(n, d_in, generator=g)
    y = torch.randint(0, n_classes, (n,), generator=g)
    return x, y


def flat_params(model: nn.Module, names: list[str] | None = None) -> tuple[list[str], torch.Tensor]:
    named = dict(model.named_parameters())
    names = names or [n for n, p in model.named_parameters() if p.requires_grad]
    return names, torch.cat([named[n].detach().double().reshape(-1) for n in names])


def dense_hessian(
    model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, names: list[str] | None = None
) -> np.ndarray:
    """The exact Hessian of loss_fn(model(x), y) w.r.t. the named parameters, by torch.func.hessian."""
    names, theta = flat_params(model, names)
    named = dict(model.named_parameters())
    shapes = [named[n].shape for n in names]
    sizes = [named[n].numel() for n in names]
    fixed = {n: p.detach().double() for n, p in model.named_parameters() if n not in names}
    xd = x.double()
    yd = y.double() if y.is_floating_point() else y

    def f(t: torch.Tensor) -> torch.Tensor:
        ps = {n: c.view(s) for n, c, s in zip(names, torch.split(t, sizes), shapes)}
        model.eval()
        return loss_fn(functional_call(model, {**fixed, **ps}, (xd,)), yd)

    return hessian(f)(theta).detach().numpy()


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """Bit-exact copies of every parameter, buffer and .grad, plus the training flags."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    state["__flags__"] = torch.tensor([m.training for m in model.modules()])
    for n, p in model.named_parameters():
        state[f"__grad__{n}"] = torch.tensor([]) if p.grad is None else p.grad.detach().clone()
    return state


def assert_unchanged(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = snapshot(model)
    assert set(after) == set(before)
    for k in before:
        assert torch.equal(before[k], after[k]), f"{k} changed"
