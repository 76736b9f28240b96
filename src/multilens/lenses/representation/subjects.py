"""Subjects of the representation lens: arrays, a user's model + embed module, and the bundled tasks.

A :class:`RepresentationSubject` holds representation matrices (rows = examples) for a training
and a held-out split, their labels, optional domain labels of the training rows, optional inputs
(for the PCA and random-projection controls), optional checkpoints over training with the
optimizer events that mark them, and optional self-supervised runs (:class:`SslRun`). A user
builds one from arrays directly or from a model with :meth:`RepresentationSubject.from_model`,
which records the output of the ``embed`` module with a forward hook (the model is not modified).

Bundled subjects (seeded, no global RNG):

* :func:`train_digits_mlp`: an MLP on scikit-learn digits trained by SGD with momentum, a linear
  warm-up and step decays of the learning rate; the representation is the penultimate activation;
  checkpoints are recorded at fixed steps and the warm-up end and each decay are events;
* :func:`train_ssl`: a small encoder on augmented digits (crop, shift, noise) under one of three
  objectives: ``align`` (mean squared distance between two views' embeddings only), ``vicreg``
  (alignment + the variance and covariance terms of Bardes, Ponce & LeCun 2022, weights 25/25/1),
  ``stopgrad`` (a predictor on one branch and stop-gradient on the other, negative cosine, as
  SimSiam, Chen & He 2021).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from multilens.data.augment import augment, random_shift
from multilens.data.digits import load_digits_split
from multilens.seeding import derive_seed, torch_generator


@dataclass(frozen=True)
class Checkpoint:
    """Embeddings of a fixed evaluation set at one training step, with the learning rate then."""

    step: int
    z: np.ndarray
    lr: float
    y: np.ndarray | None = None  # labels of the evaluation rows (enables a probe per checkpoint)


@dataclass(frozen=True)
class SslRun:
    """One self-supervised encoder: its objective, batch size, loss curve and embeddings."""

    objective: str
    batch_size: int
    align_init: float  # alignment term E||z1 - z2||^2 on held-out view pairs before training
    align_final: float  # the same after training
    loss_curve: tuple[float, ...]
    z_train: np.ndarray
    z_test: np.ndarray
    z_init_train: np.ndarray  # the same encoder's embeddings of the training inputs before training
    steps: int = 0
    seed: int = 0
    # per epoch: held-out alignment E||z(v1) - z(v2)||^2 and the covariance eigenvalues of the training
    # embeddings divided by the mean eigenvalue at initialisation (the retained-rank scale)
    align_curve: tuple[float, ...] = ()
    spectrum_curve: tuple[np.ndarray, ...] = ()


@dataclass(frozen=True)
class RepresentationSubject:
    z_train: np.ndarray
    y_train: np.ndarray
    z_test: np.ndarray
    y_test: np.ndarray
    domains_train: np.ndarray | None = None
    x_train: np.ndarray | None = None
    x_test: np.ndarray | None = None
    checkpoints: tuple[Checkpoint, ...] = ()
    events: tuple[tuple[int, str], ...] = ()
    ssl: tuple[SslRun, ...] = ()
    name: str = "user arrays"

    def __post_init__(self) -> None:
        for a, b in (("z_train", "y_train"), ("z_test", "y_test")):
            za, yb = np.asarray(getattr(self, a)), np.asarray(getattr(self, b))
            if za.ndim != 2 or yb.ndim != 1 or za.shape[0] != yb.shape[0]:
                raise ValueError(f"`{a}` must be (n, d) and `{b}` (n,); got {za.shape} and {yb.shape}.")
        if np.asarray(self.z_train).shape[1] != np.asarray(self.z_test).shape[1]:
            raise ValueError("`z_train` and `z_test` must have the same number of columns.")
        if self.domains_train is not None and np.asarray(self.domains_train).shape != np.asarray(self.y_train).shape:
            raise ValueError("`domains_train` must have one entry per row of `z_train`.")

    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        embed: nn.Module,
        x_train: torch.Tensor,
        y_train: torch.Tensor,
        x_test: torch.Tensor,
        y_test: torch.Tensor,
        *,
        domains_train: np.ndarray | None = None,
        name: str = "user model",
    ) -> RepresentationSubject:
        """Record ``embed``'s output (flattened per example) while ``model`` runs on the data."""
        return cls(
            embed_with(model, embed, x_train),
            np.asarray(y_train),
            embed_with(model, embed, x_test),
            np.asarray(y_test),
            domains_train=domains_train,
            x_train=np.asarray(x_train, dtype=np.float64).reshape(len(x_train), -1),
            x_test=np.asarray(x_test, dtype=np.float64).reshape(len(x_test), -1),
            name=name,
        )


@torch.no_grad()
def embed_with(model: nn.Module, embed: nn.Module, x: torch.Tensor, batch: int = 2048) -> np.ndarray:
    """Outputs of the submodule ``embed`` during ``model(x)`` in eval mode, as float64 (n, d)."""
    got: list[torch.Tensor] = []
    handle = embed.register_forward_hook(lambda _m, _i, out: got.append(out.detach().reshape(out.shape[0], -1)))
    was_training = model.training
    try:
        model.eval()
        for i in range(0, int(x.shape[0]), batch):
            model(x[i : i + batch])
    finally:
        handle.remove()
        model.train(was_training)
    if not got:
        raise ValueError("`embed` was not called during model(x); pass a submodule of `model`.")
    return torch.cat(got).double().numpy()


def _init_linear(layer: nn.Linear, g: torch.Generator) -> None:
    bound = 1.0 / math.sqrt(layer.in_features)
    with torch.no_grad():
        layer.weight.copy_(torch.empty_like(layer.weight).uniform_(-bound, bound, generator=g))
        layer.bias.copy_(torch.empty_like(layer.bias).uniform_(-bound, bound, generator=g))


def mlp(dims: tuple[int, ...], g: torch.Generator, *, final_act: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        lin = nn.Linear(a, b)
        _init_linear(lin, g)
        layers.append(lin)
        if i < len(dims) - 2 or final_act:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def schedule(step: int, total: int, lr: float, warmup: int, decays: tuple[float, ...], gamma: float) -> float:
    """Linear warm-up over ``warmup`` steps, then x ``gamma`` at each fraction in ``decays`` of training."""
    if step < warmup:
        return lr * (step + 1) / warmup
    k = sum(step >= int(f * total) for f in decays)
    return lr * gamma**k


def train_digits_mlp(
    *,
    seed: int,
    width: int = 128,
    embed_dim: int = 64,
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 0.05,
    warmup_fraction: float = 0.1,
    decays: tuple[float, ...] = (0.5, 0.75),
    gamma: float = 0.2,
    n_checkpoints: int = 10,
) -> RepresentationSubject:
    """Digits MLP 64 -> width -> embed_dim -> 10 (ReLU); the representation is the embed_dim layer."""
    split = load_digits_split(seed)
    g = torch_generator(derive_seed(seed, "representation", "mlp"))
    body = mlp((split.d_in, width, embed_dim), g, final_act=True)
    head = mlp((embed_dim, split.n_classes), g)
    model = nn.Sequential(body, head)
    x, y = split.x_train, split.y_train
    n = int(x.shape[0])
    per_epoch = math.ceil(n / batch_size)
    total = per_epoch * epochs
    warmup = max(1, int(warmup_fraction * total))
    events = [(warmup, "warm-up end")] + [(int(f * total), f"LR decay x{gamma:g}") for f in decays]
    ck_steps = sorted({int(round(s)) for s in np.linspace(0, total, n_checkpoints + 1)})
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    checkpoints: list[Checkpoint] = []
    x_eval = split.x_test
    y_eval = split.y_test.numpy()
    step = 0
    cur_lr = schedule(0, total, lr, warmup, decays, gamma)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for b in range(per_epoch):
            if step in ck_steps:
                checkpoints.append(Checkpoint(step, embed_with(model, body, x_eval), cur_lr, y_eval))
            idx = perm[b * batch_size : (b + 1) * batch_size]
            cur_lr = schedule(step, total, lr, warmup, decays, gamma)
            for grp in opt.param_groups:
                grp["lr"] = cur_lr
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
            step += 1
    checkpoints.append(Checkpoint(step, embed_with(model, body, x_eval), cur_lr, y_eval))
    # Two domains in the training rows: half the examples are seen shifted by up to one pixel.
    gd = torch_generator(derive_seed(seed, "representation", "domains"))
    dom = (torch.rand(n, generator=gd) < 0.5).numpy().astype(np.int64)
    x_dom = x.clone()
    sel = torch.as_tensor(dom == 1)
    x_dom[sel] = random_shift(x[sel], 1, gd)
    return RepresentationSubject(
        embed_with(model, body, x_dom),
        y.numpy(),
        embed_with(model, body, split.x_test),
        split.y_test.numpy(),
        domains_train=dom,
        x_train=x_dom.double().numpy(),
        x_test=split.x_test.double().numpy(),
        checkpoints=tuple(checkpoints),
        events=tuple(events),
        name="digits MLP, penultimate layer",
    )


def vicreg_terms(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """VICReg variance hinge mean(relu(1 - std_j)) and covariance sum_{i != j} C_ij^2 / d."""
    zc = z - z.mean(dim=0)
    std = torch.sqrt(zc.var(dim=0) + 1e-4)
    var = torch.relu(1.0 - std).mean()
    c = zc.T @ zc / max(z.shape[0] - 1, 1)
    off = c - torch.diag(torch.diag(c))
    return var, (off**2).sum() / z.shape[1]


def train_ssl(
    objective: str,
    *,
    seed: int,
    batch_size: int = 128,
    epochs: int = 30,
    width: int = 128,
    embed_dim: int = 32,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    max_steps: int | None = None,
    data_seed: int | None = None,
) -> SslRun:
    """One SSL encoder 64 -> width -> embed_dim on augmented digits (labels never used in training).

    Training runs ``epochs`` epochs, or exactly ``max_steps`` optimizer steps when given (used to
    compare batch sizes at a matched number of steps). ``data_seed`` (default ``seed``) picks the
    digits split, so encoders of several seeds can share one split and one probe.
    """
    from multilens.lenses.representation.spectra import covariance_eigenvalues

    split = load_digits_split(seed if data_seed is None else data_seed)
    g = torch_generator(derive_seed(seed, "representation", "ssl", objective, batch_size))
    enc = mlp((split.d_in, width, embed_dim), g)
    params = list(enc.parameters())
    pred = None
    if objective == "stopgrad":
        pred = mlp((embed_dim, width, embed_dim), g)
        params += list(pred.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    x = split.x_train
    n = int(x.shape[0])
    gv = torch_generator(derive_seed(seed, "representation", "ssl-eval-views"))
    v1, v2 = augment(split.x_test, gv), augment(split.x_test, gv)

    @torch.no_grad()
    def align_eval() -> float:
        enc.eval()
        out = float(((enc(v1) - enc(v2)) ** 2).sum(dim=1).mean())
        enc.train()
        return out

    a0 = align_eval()
    z_init = embed_with(enc, enc, x)
    scale = max(float(np.mean(covariance_eigenvalues(z_init))), 1e-300)
    curve: list[float] = []
    align_curve: list[float] = []
    spec_curve: list[np.ndarray] = []
    bs = min(batch_size, n)
    per_epoch = n // bs
    total = max_steps if max_steps is not None else per_epoch * epochs
    step = 0
    while step < total:
        perm = torch.randperm(n, generator=g)
        tot, cnt = 0.0, 0
        for b in range(per_epoch):
            if step >= total:
                break
            step += 1
            xb = x[perm[b * bs : (b + 1) * bs]]
            z1, z2 = enc(augment(xb, g)), enc(augment(xb, g))
            if objective == "align":
                loss = ((z1 - z2) ** 2).sum(dim=1).mean()
            elif objective == "vicreg":
                va1, co1 = vicreg_terms(z1)
                va2, co2 = vicreg_terms(z2)
                loss = 25.0 * ((z1 - z2) ** 2).mean() + 25.0 * (va1 + va2) + (co1 + co2)
            elif objective == "stopgrad":
                cos = nn.functional.cosine_similarity
                loss = -0.5 * (cos(pred(z1), z2.detach()).mean() + cos(pred(z2), z1.detach()).mean())
            else:
                raise ValueError(f"`objective` must be align, vicreg or stopgrad; got {objective!r}.")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += float(loss.detach())
            cnt += 1
        curve.append(tot / max(cnt, 1))
        align_curve.append(align_eval())
        spec_curve.append(covariance_eigenvalues(embed_with(enc, enc, x)) / scale)
    return SslRun(
        objective,
        bs,
        a0,
        align_eval(),
        tuple(curve),
        embed_with(enc, enc, split.x_train),
        embed_with(enc, enc, split.x_test),
        z_init,
        step,
        seed,
        tuple(align_curve),
        tuple(spec_curve),
    )
