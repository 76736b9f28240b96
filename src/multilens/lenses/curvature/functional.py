"""A model as a pure function of one flat parameter vector: the loss over fixed batches, no mutation.

Everything in the curvature lens evaluates a caller's model at parameters it chooses (a Hessian
product at the trained point, the loss on a slice, an ascent step of a sharpness search). Doing
that by writing into ``model.parameters()`` is how PyHessian and loss-landscapes end up leaving
a caller's model changed. Here the model is only ever *called* through
:func:`torch.func.functional_call` with tensors this module owns; the caller's parameters and
buffers are never written, and the train/eval flags are set only for the duration of a call and
then restored exactly.

The objective is the Hessian's: the mean loss over all the data given, ``sum_b (n_b / N) *
loss_fn(model(x_b), y_b)`` where ``loss_fn`` returns the mean over its batch, so batches of
different sizes are weighted by their size.

``data`` may be a whole ``torch.utils.data.DataLoader``: with ``stream=True`` its batches are
not held in memory but re-read, in the loader's (sequential) order, on every pass, so the
operator is the Hessian of the training loss over the dataset with the memory of one batch. A
shuffling loader is refused in streaming mode: the mean does not depend on the order, but a
shuffled order changes the rounding on each pass and draws from torch's global RNG.
Everything runs on the model's device (its first parameter's), CUDA when the model is there.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from multilens.errors import ConfigError, DataError

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Mode = Literal["eval", "train"]
ParamSpec = str | Sequence[str] | None


def _check_batch(i: int, b: Any) -> Batch:
    if not (isinstance(b, (tuple, list)) and len(b) == 2 and all(isinstance(t, torch.Tensor) for t in b)):
        raise DataError(f"`data[{i}]` must be an (x, y) pair of tensors; got {type(b).__name__}.")
    x, y = b
    if x.ndim == 0 or x.shape[0] == 0:
        raise DataError(f"`data[{i}]` has no examples; every batch needs at least one.")
    if y.ndim == 0 or y.shape[0] != x.shape[0]:
        raise DataError(f"`data[{i}]`: y has {tuple(y.shape)} but x has {x.shape[0]} rows; they must match.")
    return x, y


def as_batches(data: Any) -> list[Batch]:
    """``data`` as a list of (x, y) tensor pairs: one pair, or any iterable of pairs."""
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        batches = [data]
    else:
        try:
            batches = list(data)
        except TypeError:
            raise DataError(
                f"`data` must be an (x, y) pair of tensors or an iterable of them; got {type(data).__name__}."
            ) from None
    if not batches:
        raise DataError("`data` is empty; pass at least one (x, y) batch with one example.")
    return [_check_batch(i, b) for i, b in enumerate(batches)]


class StreamedBatches:
    """A re-iterable view of a DataLoader (or any re-iterable of batches): read anew on every pass.

    Each pass is checked to yield the same number of batches of the same sizes as the first, so
    the weights ``n_b / N`` stay those of the data; ``progress(i, n)`` is called after each batch.
    """

    def __init__(self, data: Any, cast: Callable[[Batch], Batch], progress: Callable[[int, int], None] | None) -> None:
        sampler = getattr(data, "sampler", None)
        if sampler is not None and not isinstance(sampler, torch.utils.data.SequentialSampler):
            raise ConfigError(
                "`data` is a DataLoader that does not read in sequential order (shuffle=True or a custom "
                "sampler); for stream=True pass one with shuffle=False: the mean loss does not depend on the "
                "order, and a shuffled order changes the rounding on each pass and draws from torch's global RNG."
            )
        if iter(data) is data:
            raise ConfigError("`data` is a one-shot iterator; stream=True needs a re-iterable (e.g. a DataLoader).")
        self.data = data
        self.cast = cast
        self.progress = progress
        self.sizes: list[int] = []
        for i, b in enumerate(data):
            x, _ = _check_batch(i, b)
            self.sizes.append(int(x.shape[0]))
        if not self.sizes:
            raise DataError("`data` is empty; pass at least one (x, y) batch with one example.")

    def __len__(self) -> int:
        return len(self.sizes)

    def __iter__(self) -> Iterator[Batch]:
        n = 0
        for i, b in enumerate(self.data):
            x, y = _check_batch(i, b)
            if i >= len(self.sizes) or int(x.shape[0]) != self.sizes[i]:
                raise DataError("`data` yielded different batches on a second pass; pass a deterministic loader.")
            n += 1
            yield self.cast((x, y))
            if self.progress is not None:
                self.progress(n, len(self.sizes))
        if n != len(self.sizes):
            raise DataError("`data` yielded fewer batches on a second pass; pass a deterministic loader.")


def select_parameters(model: nn.Module, params: ParamSpec = None) -> list[str]:
    """Names of the parameters to differentiate, in ``model.named_parameters()`` order.

    ``params``: None for every parameter that requires grad; a name ("0.weight") or a module
    prefix ("0" selects "0.weight" and "0.bias"); or a sequence of those.
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"`model` must be a torch.nn.Module; got {type(model).__name__}.")
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        raise ConfigError("`model` has no parameter that requires grad; set requires_grad=True on the ones to study.")
    if params is None:
        return trainable
    wanted = [params] if isinstance(params, str) else list(params)
    if not wanted:
        raise ConfigError("`params` is empty; pass None for all parameters or at least one name.")
    chosen: set[str] = set()
    for w in wanted:
        if not isinstance(w, str):
            raise ConfigError(f"`params` entries must be parameter names or module prefixes; got {w!r}.")
        hit = [n for n in trainable if n == w or n.startswith(w + ".")]
        if not hit:
            raise ConfigError(
                f"`params` entry {w!r} matches no parameter that requires grad; valid names: {', '.join(trainable)}."
            )
        chosen.update(hit)
    return [n for n in trainable if n in chosen]


@contextlib.contextmanager
def module_mode(model: nn.Module, mode: Mode) -> Iterator[None]:
    """Set train/eval for the duration of a call, then restore every submodule's own flag."""
    if mode not in ("eval", "train"):
        raise ConfigError(f"`mode` must be 'eval' or 'train'; got {mode!r}.")
    flags = [(m, m.training) for m in model.modules()]
    model.train(mode == "train")
    try:
        yield
    finally:
        for m, f in flags:
            m.training = f


def check_dtype(dtype: Any) -> torch.dtype:
    if dtype not in (torch.float64, torch.float32):
        raise ConfigError(f"`dtype` must be torch.float64 or torch.float32; got {dtype!r}.")
    return dtype


class FlatModel:
    """``model`` + ``loss_fn`` + batches as functions of a flat parameter vector (float ``dtype``).

    ``theta0`` is a copy of the selected parameters at construction, flattened in the order of
    ``names``; parameters not selected and buffers are copied once and held fixed.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        data: Any,
        *,
        params: ParamSpec = None,
        dtype: torch.dtype | None = torch.float64,
        mode: Mode = "eval",
        stream: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        if not callable(loss_fn):
            raise ConfigError(f"`loss_fn` must be a callable loss_fn(output, y) -> scalar; got {loss_fn!r}.")
        if mode not in ("eval", "train"):
            raise ConfigError(f"`mode` must be 'eval' or 'train'; got {mode!r}.")
        self.model = model
        self.loss_fn = loss_fn
        self.names = select_parameters(model, params)
        named = dict(model.named_parameters())
        first = named[self.names[0]]
        # dtype None: the model's own precision (float32 products for a float32 model).
        self.dtype = check_dtype(first.dtype if dtype is None else dtype)
        self.device = first.device
        self.mode: Mode = mode
        self.shapes = [tuple(named[n].shape) for n in self.names]
        self.numels = [int(named[n].numel()) for n in self.names]
        self.dim = int(sum(self.numels))
        self.slices: dict[str, slice] = {}
        start = 0
        for n, k in zip(self.names, self.numels):
            self.slices[n] = slice(start, start + k)
            start += k
        dev = self.device
        cast = lambda t: t.detach().to(dev, self.dtype).clone() if t.is_floating_point() else t.detach().to(dev).clone()  # noqa: E731
        self.fixed = {n: cast(p) for n, p in model.named_parameters() if n not in self.slices}
        self.fixed.update({n: cast(b) for n, b in model.named_buffers()})
        self.theta0 = torch.cat([named[n].detach().reshape(-1).to(dev, self.dtype) for n in self.names]).clone()

        def cast_batch(b: Batch) -> Batch:
            x, y = b
            return (
                x.to(dev, self.dtype) if x.is_floating_point() else x.to(dev),
                y.to(dev, self.dtype) if y.is_floating_point() else y.to(dev),
            )

        self.streamed = bool(stream)
        self.batches: Sequence[Batch]
        if stream:
            self.batches = StreamedBatches(data, cast_batch, progress)
            sizes = np.array(self.batches.sizes, dtype=np.float64)
        else:
            self.batches = [cast_batch(b) for b in as_batches(data)]
            sizes = np.array([int(x.shape[0]) for x, _ in self.batches], dtype=np.float64)
        self.n_examples = int(sizes.sum())
        self.weights = [float(s / sizes.sum()) for s in sizes]
        value = self.loss(self.theta0)
        if not math.isfinite(value):
            raise DataError(
                f"`loss_fn` returned a non-finite loss ({value}) on `data` at the model's parameters; "
                "check the data for NaN/inf and the model for overflow."
            )
        self.loss0 = value

    # --- parameter layout -------------------------------------------------------------------
    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Flat (dim,) vector -> {name: tensor of the parameter's shape} (views, no copies)."""
        parts = torch.split(flat, self.numels)
        return {n: p.view(s) for n, p, s in zip(self.names, parts, self.shapes)}

    def flatten(self, tensors: Sequence[torch.Tensor | None]) -> torch.Tensor:
        return torch.cat(
            [
                (t if t is not None else torch.zeros(k, dtype=self.dtype, device=self.device)).reshape(-1)
                for t, k in zip(tensors, self.numels)
            ]
        )

    def to_tensor(self, v: np.ndarray | torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(v, dtype=self.dtype, device=self.device)
        if t.shape != (self.dim,):
            raise ConfigError(f"`v` must have shape ({self.dim},); got {tuple(t.shape)}.")
        return t

    # --- evaluations --------------------------------------------------------------------------
    def forward(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        with module_mode(self.model, self.mode):
            return functional_call(self.model, {**self.fixed, **self.unflatten(theta)}, (x,))

    def leaves(self) -> list[torch.Tensor]:
        """One autograd leaf per selected parameter, each a view of ``theta0`` (no copy)."""
        return [t.detach().requires_grad_(True) for t in self.unflatten(self.theta0).values()]

    def batch_loss_params(self, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The batch loss at per-parameter tensors ``params`` (names as ``names``)."""
        with module_mode(self.model, self.mode):
            out = functional_call(self.model, {**self.fixed, **params}, (x,))
        return self._check_loss(self.loss_fn(out, y))

    def batch_loss(self, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._check_loss(self.loss_fn(self.forward(theta, x), y))

    @staticmethod
    def _check_loss(loss: Any) -> torch.Tensor:
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise ConfigError(f"`loss_fn` must return a scalar (mean) loss tensor; got {shape}.")
        return loss

    def loss(self, theta: torch.Tensor | np.ndarray | None = None) -> float:
        """Mean loss over all batches at ``theta`` (default: the model's own parameters)."""
        t = self.theta0 if theta is None else self.to_tensor(theta)
        with torch.no_grad():
            return float(sum(w * self.batch_loss(t, x, y) for (x, y), w in zip(self.batches, self.weights)))

    def loss_and_grad(self, theta: torch.Tensor | np.ndarray | None = None) -> tuple[float, np.ndarray]:
        """Mean loss and its gradient (float64 NumPy) at ``theta``."""
        t = (self.theta0 if theta is None else self.to_tensor(theta)).detach().clone().requires_grad_(True)
        total = 0.0
        grad = torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        for (x, y), w in zip(self.batches, self.weights):
            loss = self.batch_loss(t, x, y)
            (g,) = torch.autograd.grad(loss, t)
            grad += w * g
            total += w * float(loss.detach())
        return total, grad.cpu().numpy().astype(np.float64)

    def outputs(self, theta: torch.Tensor | np.ndarray | None, x: torch.Tensor) -> torch.Tensor:
        t = self.theta0 if theta is None else self.to_tensor(theta)
        with torch.no_grad():
            return self.forward(t, x.to(self.device, self.dtype) if x.is_floating_point() else x.to(self.device))

    def theta0_numpy(self) -> np.ndarray:
        return self.theta0.cpu().numpy().astype(np.float64).copy()


def parameter_groups(model: nn.Module) -> list[tuple[str, list[str]]]:
    """Modules that own parameters directly (e.g. each Linear), with their trainable names."""
    groups = []
    for mod_name, mod in model.named_modules():
        own = [f"{mod_name}.{n}" if mod_name else n for n, p in mod.named_parameters(recurse=False) if p.requires_grad]
        if own:
            groups.append((mod_name or "(root)", own))
    return groups


def iter_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> Iterable[Batch]:
    """Consecutive (x, y) batches of at most ``batch_size`` rows (the last may be smaller)."""
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, int(x.shape[0]), batch_size)]
