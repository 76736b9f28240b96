"""Your own model as a subject: :class:`Subject`, and the guarantee that measuring changes nothing.

A :class:`Subject` bundles what the model-facing lenses need from a user: the trained
``nn.Module``, its loss, training and held-out data (a ``DataLoader`` or ``(x, y)`` tensors), and
optionally the module whose output is the representation (``embed``), the valid input box
(``input_range``) and a ``forward_fn`` for models whose forward does not return logits directly
(dict outputs, extra arguments).

:func:`untouched` is the context every measurement on a user's model runs in: lenses work on a
deep copy, and the global torch/NumPy/Python RNG states (which iterating a shuffling
``DataLoader`` consumes) are restored on exit, so training with and without multilens gives
bit-identical weights.
"""

from __future__ import annotations

import contextlib
import copy
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from multilens.errors import ConfigError

ForwardFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]


@dataclass(frozen=True, eq=False)
class Subject:
    """A user's model and data, as the model-facing lenses take them.

    ``train``/``holdout`` are a ``torch.utils.data.DataLoader`` yielding ``(x, y)`` batches, or an
    ``(x, y)`` pair of tensors. ``embed`` names a submodule (``dict(model.named_modules())``)
    whose output is the representation. ``input_range`` is the valid input box ``(low, high)``.
    ``forward_fn(model, x)`` returns logits when ``model(x)`` does not.
    """

    model: nn.Module
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    train: Any = None
    holdout: Any = None
    embed: str | None = None
    input_range: tuple[float, float] | None = None
    forward_fn: ForwardFn | None = None
    name: str = "model"

    def __post_init__(self) -> None:
        if not isinstance(self.model, nn.Module):
            raise ConfigError(f"`model` must be a torch.nn.Module; got {type(self.model).__name__}.")
        if not callable(self.loss_fn):
            raise ConfigError("`loss_fn` must be callable as loss_fn(outputs, targets) -> scalar tensor.")
        if self.train is None and self.holdout is None:
            raise ConfigError("a Subject needs data: pass `train=` and/or `holdout=` (a DataLoader or (x, y)).")
        if self.embed is not None and self.embed not in dict(self.model.named_modules()):
            raise ConfigError(
                f"`embed` = {self.embed!r} is not a submodule of the model; use one of the names in "
                "dict(model.named_modules())."
            )
        if self.input_range is not None:
            lo, hi = self.input_range
            if not float(lo) < float(hi):
                raise ConfigError(f"`input_range` must be (low, high) with low < high; got {self.input_range!r}.")

    @property
    def device(self) -> torch.device:
        p = next(self.model.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        p = next(self.model.parameters(), None)
        return p.dtype if p is not None else torch.float32

    def copy_model(self) -> nn.Module:
        """A deep copy of the model: lenses measure the copy, never the user's module."""
        return copy.deepcopy(self.model)

    def outputs(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return self.forward_fn(model, x) if self.forward_fn is not None else model(x)

    def measurable_model(self) -> nn.Module:
        """A deep copy whose ``forward(x)`` returns logits (``forward_fn`` applied when given)."""
        m = self.copy_model()
        return _Forward(m, self.forward_fn) if self.forward_fn is not None else m


class _Forward(nn.Module):
    """Wraps a model whose forward does not return logits: ``forward(x) = forward_fn(inner, x)``."""

    def __init__(self, inner: nn.Module, fn: ForwardFn) -> None:
        super().__init__()
        self.inner = inner
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.inner, x)


def loader_generators(data: Any) -> list[torch.Generator]:
    """The torch.Generators a DataLoader draws from when iterated (its own, its samplers')."""
    gens = []
    for obj in (data, getattr(data, "sampler", None), getattr(getattr(data, "batch_sampler", None), "sampler", None)):
        g = getattr(obj, "generator", None)
        if isinstance(g, torch.Generator) and all(g is not h for h in gens):
            gens.append(g)
    return gens


def tensors_of(data: Any, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """All ``(x, y)`` of a DataLoader (in its order) or a tensor pair, concatenated; at most ``limit`` rows.

    Iterating a shuffling DataLoader advances the generators it owns; their states are restored
    afterwards, so the user's next epoch sees the same order as without this call.
    """
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        x, y = data
        return (x[:limit], y[:limit]) if limit else (x, y)
    gens = loader_generators(data)
    states = [g.get_state() for g in gens]
    try:
        return _concat_batches(data, limit)
    finally:
        for g, st in zip(gens, states):
            g.set_state(st)


def _concat_batches(data: Any, limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys, n = [], [], 0
    for batch in data:
        if not (isinstance(batch, (tuple, list)) and len(batch) >= 2):
            raise ConfigError("the DataLoader must yield (x, y) batches; wrap a dict-yielding loader to yield (x, y).")
        xs.append(batch[0])
        ys.append(batch[1])
        n += int(batch[0].shape[0])
        if limit and n >= limit:
            break
    if not xs:
        raise ConfigError("the data is empty: the DataLoader yielded no batch.")
    x, y = torch.cat(xs), torch.cat(ys)
    return (x[:limit], y[:limit]) if limit else (x, y)


@dataclass(frozen=True)
class RngState:
    torch_cpu: torch.Tensor
    torch_cuda: list[torch.Tensor] | None
    numpy: Any
    python: Any


def rng_state() -> RngState:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    return RngState(torch.get_rng_state(), cuda, np.random.get_state(), random.getstate())


def set_rng_state(s: RngState) -> None:
    torch.set_rng_state(s.torch_cpu)
    if s.torch_cuda is not None:
        torch.cuda.set_rng_state_all(s.torch_cuda)
    np.random.set_state(s.numpy)
    random.setstate(s.python)


def model_fingerprint(model: nn.Module) -> dict[str, Any]:
    """Everything a measurement must leave as it was: parameters, buffers, grads, training flags."""
    return {
        "params": {k: v.detach().clone() for k, v in model.named_parameters()},
        "grads": {k: (None if v.grad is None else v.grad.detach().clone()) for k, v in model.named_parameters()},
        "buffers": {k: v.detach().clone() for k, v in model.named_buffers()},
        "training": {k: m.training for k, m in model.named_modules()},
        "requires_grad": {k: v.requires_grad for k, v in model.named_parameters()},
    }


def same_fingerprint(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def eq(x: Any, y: Any) -> bool:
        if x is None or y is None:
            return x is y
        return x.dtype == y.dtype and x.shape == y.shape and bool(torch.equal(x, y))

    return (
        a["training"] == b["training"]
        and a["requires_grad"] == b["requires_grad"]
        and all(eq(a[g][k], b[g][k]) for g in ("params", "grads", "buffers") for k in a[g])
        and all(set(a[g]) == set(b[g]) for g in ("params", "grads", "buffers"))
    )


@contextlib.contextmanager
def untouched(model: nn.Module | None = None, *, verify: bool = True) -> Iterator[None]:
    """Restore the global RNG states on exit; with ``verify``, raise if ``model`` was changed."""
    state = rng_state()
    before = model_fingerprint(model) if (model is not None and verify) else None
    try:
        yield
    finally:
        set_rng_state(state)
    if before is not None and not same_fingerprint(before, model_fingerprint(model)):
        raise RuntimeError("multilens changed the user's model during a measurement; this is a bug, please report it.")
