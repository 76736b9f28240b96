"""Evasion attacks on a classifier: PGD (l-inf, l-2), FGSM and a gradient-free square attack.

PGD follows Madry et al. (2018): ascend the cross-entropy (or the margin loss max_{j != y} z_j -
z_y, ``loss="margin"``) from a random start inside the ball (or from x), project onto the
eps-ball and onto the valid input box after every step, and keep, per example, the best iterate
over all steps and restarts (the one with the largest margin loss; an example counts as fooled as
soon as one iterate is misclassified). The
step size follows a schedule: ``constant`` (alpha = ``step_size`` x eps) or ``cosine`` (decays to
zero over the steps). FGSM (Goodfellow et al. 2015) is one signed-gradient step of size eps from
x. The square attack (Andriushchenko et al. 2020) needs no gradient: it proposes random
square-window (or, for non-image inputs, random coordinate-block) sign changes at the corners of
the l-inf ball and keeps a proposal when it raises the margin loss; a model that PGD cannot fool
but the square attack can is masking its gradients.

Every function works on a deep copy in eval mode, never changes the caller's model, takes
``seed`` and draws only from a local ``torch.Generator``. ``input_range`` is the valid input box
(low, high) (floats or tensors broadcastable to x); ``None`` means no box.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from multilens.errors import ConfigError
from multilens.seeding import torch_generator

NORMS = ("linf", "l2")
SCHEDULES = ("constant", "cosine")
LOSSES = ("margin", "ce")


@dataclass(frozen=True)
class AttackResult:
    """Per-example outcome of an attack.

    ``x_adv`` is the worst point found (the input itself where the clean point is already
    misclassified and nothing worse was found); ``fooled`` marks examples whose ``x_adv`` is
    misclassified; ``robust`` = clean-correct and not fooled; ``margin`` is z_y - max_{j != y} z_j
    at ``x_adv`` (negative: misclassified).
    """

    x_adv: torch.Tensor
    fooled: torch.Tensor
    robust: torch.Tensor
    clean_correct: torch.Tensor
    margin: torch.Tensor
    n_grad: int  # gradient evaluations per example

    @property
    def robust_accuracy(self) -> float:
        return float(self.robust.float().mean())


def frozen_eval(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode with parameters that need no gradient (the caller's model is untouched)."""
    m = copy.deepcopy(model).eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def margins(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """z_y - max_{j != y} z_j per row."""
    zy = logits.gather(1, y[:, None])[:, 0]
    other = logits.clone()
    other.scatter_(1, y[:, None], -torch.inf)
    return zy - other.max(dim=1).values


def _box(input_range: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    if input_range is None:
        return None
    lo, hi = input_range
    lo = torch.as_tensor(lo, dtype=x.dtype).expand_as(x)
    hi = torch.as_tensor(hi, dtype=x.dtype).expand_as(x)
    if bool((lo >= hi).any()):
        raise ConfigError(f"`input_range` must have low < high everywhere; got {input_range!r}.")
    return lo, hi


def _flat_norm(d: torch.Tensor, norm: str) -> torch.Tensor:
    f = d.reshape(d.shape[0], -1)
    return f.abs().max(dim=1).values if norm == "linf" else f.norm(dim=1)


def project(delta: torch.Tensor, x: torch.Tensor, eps: float, norm: str, box: Any) -> torch.Tensor:
    """Onto the eps-ball, then into the box (the box step only shrinks coordinates toward x, so the
    result stays in the ball)."""
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        n = _flat_norm(delta, "l2").clamp_min(1e-30)
        scale = torch.clamp(eps / n, max=1.0).reshape(-1, *([1] * (delta.dim() - 1)))
        delta = delta * scale
    if box is not None:
        lo, hi = box
        delta = torch.max(torch.min(x + delta, hi), lo) - x
    return delta


def _random_start(x: torch.Tensor, eps: float, norm: str, g: torch.Generator) -> torch.Tensor:
    if norm == "linf":
        return (torch.rand(x.shape, generator=g, dtype=x.dtype) * 2 - 1) * eps
    d = torch.randn(x.shape, generator=g, dtype=x.dtype)
    d = d / _flat_norm(d, "l2").clamp_min(1e-30).reshape(-1, *([1] * (x.dim() - 1)))
    r = torch.rand((x.shape[0],), generator=g, dtype=x.dtype) ** (1.0 / max(x[0].numel(), 1))
    return d * (eps * r).reshape(-1, *([1] * (x.dim() - 1)))


def _ascent(grad: torch.Tensor, norm: str) -> torch.Tensor:
    if norm == "linf":
        return grad.sign()
    n = _flat_norm(grad, "l2").clamp_min(1e-30).reshape(-1, *([1] * (grad.dim() - 1)))
    return grad / n


def _validate(eps: float, norm: str, steps: int, restarts: int, step_size: float, schedule: str) -> None:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps >= 0 or not math.isfinite(eps):
        raise ConfigError(f"`eps` must be a finite number >= 0; got {eps!r}.")
    if norm not in NORMS:
        raise ConfigError(f"`norm` must be one of {', '.join(map(repr, NORMS))}; got {norm!r}.")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ConfigError(f"`steps` must be an int >= 0; got {steps!r}.")
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 1:
        raise ConfigError(f"`restarts` must be an int >= 1; got {restarts!r}.")
    if not step_size > 0:
        raise ConfigError(f"`step_size` must be > 0 (a fraction of eps); got {step_size!r}.")
    if schedule not in SCHEDULES:
        raise ConfigError(f"`schedule` must be one of {', '.join(map(repr, SCHEDULES))}; got {schedule!r}.")


def _finish(model: nn.Module, x: torch.Tensor, y: torch.Tensor, best: torch.Tensor, n_grad: int) -> AttackResult:
    with torch.no_grad():
        clean_ok = model(x).argmax(1) == y
        m = margins(model(best), y)
    fooled = m < 0
    # a clean-misclassified example is not robust whatever the attack found
    return AttackResult(best, fooled, clean_ok & ~fooled, clean_ok, m, n_grad)


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    norm: str = "linf",
    steps: int = 20,
    restarts: int = 1,
    step_size: float = 0.25,
    schedule: str = "constant",
    random_start: bool = True,
    input_range: Any = None,
    seed: int = 0,
    targeted: int = 0,
    loss: str = "ce",
    batch_size: int = 1024,
) -> AttackResult:
    """Projected gradient ascent on the margin loss (see the module docstring).

    ``step_size`` is a fraction of eps (alpha = step_size * eps); restart 0 starts at x when
    ``random_start`` is False, every other restart from a uniform point of the ball. ``targeted``
    adds that many restarts, the k-th ascending z_t - z_y for the k-th most likely wrong class t at
    x (as AutoAttack's APGD-T does): the untargeted margin loss only follows the currently
    highest wrong logit and can miss a class that is closer in the threat model. ``loss`` is what
    the untargeted restarts ascend: ``"margin"`` (max_{j != y} z_j - z_y, Carlini & Wagner 2017) or
    ``"ce"`` (cross-entropy, as Madry et al. and torchattacks); the kept iterate is always the one
    with the largest margin loss.
    """
    _validate(eps, norm, steps, restarts, step_size, schedule)
    if loss not in LOSSES:
        raise ConfigError(f"`loss` must be one of {', '.join(map(repr, LOSSES))}; got {loss!r}.")
    m = frozen_eval(model)
    x = x.detach()
    box = _box(input_range, x)
    g = torch_generator(seed)
    best = x.clone()
    with torch.no_grad():
        best_loss = -margins(m(x), y)
    n = x.shape[0]
    if isinstance(targeted, bool) or not isinstance(targeted, int) or targeted < 0:
        raise ConfigError(f"`targeted` must be an int >= 0; got {targeted!r}.")
    with torch.no_grad():
        z0 = m(x)
        z0.scatter_(1, y[:, None], -torch.inf)
        ranked = z0.argsort(dim=1, descending=True)  # wrong classes, most likely first
    targeted = min(targeted, z0.shape[1] - 1)
    for r in range(restarts + targeted):
        start = _random_start(x, eps, norm, g) if (random_start or r > 0) else torch.zeros_like(x)
        for i0 in range(0, n, batch_size):
            sl = slice(i0, i0 + batch_size)
            xb, yb = x[sl], y[sl]
            tb = ranked[sl, r - restarts] if r >= restarts else None
            bb = None if box is None else (box[0][sl], box[1][sl])
            delta = project(start[sl], xb, eps, norm, bb)
            for t in range(steps + 1):
                delta.requires_grad_(True)
                z = m(xb + delta)
                mloss = -margins(z, yb)
                if tb is not None:
                    obj = z.gather(1, tb[:, None])[:, 0] - z.gather(1, yb[:, None])[:, 0]
                else:
                    obj = mloss if loss == "margin" else nn.functional.cross_entropy(z, yb, reduction="none")
                with torch.no_grad():
                    better = mloss > best_loss[sl]
                    best[sl][better] = (xb + delta)[better].detach()
                    best_loss[sl] = torch.where(better, mloss.detach(), best_loss[sl])
                if t == steps:
                    break
                (grad,) = torch.autograd.grad(obj.sum(), delta)
                alpha = step_size * eps
                if schedule == "cosine":
                    alpha = alpha * 0.5 * (1 + math.cos(math.pi * t / steps)) * 2  # mean step ~ constant's
                with torch.no_grad():
                    delta = project(delta.detach() + alpha * _ascent(grad, norm), xb, eps, norm, bb)
    return _finish(m, x, y, best, (restarts + targeted) * steps)


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, input_range: Any = None) -> AttackResult:
    """One l-inf signed-gradient step of size eps on the margin loss, from x, into the box."""
    _validate(eps, "linf", 1, 1, 1.0, "constant")
    m = frozen_eval(model)
    x = x.detach()
    box = _box(input_range, x)
    d = torch.zeros_like(x, requires_grad=True)
    loss = -margins(m(x + d), y)
    (grad,) = torch.autograd.grad(loss.sum(), d)
    with torch.no_grad():
        x_adv = x + project(eps * grad.sign(), x, eps, "linf", box)
        keep = -margins(m(x_adv), y) > loss.detach()
        best = torch.where(keep.reshape(-1, *([1] * (x.dim() - 1))), x_adv, x)
    return _finish(m, x, y, best, 1)


def square_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    queries: int = 300,
    p_init: float = 0.1,
    image_shape: tuple[int, ...] | None = None,
    input_range: Any = None,
    seed: int = 0,
) -> AttackResult:
    """Gradient-free l-inf random search (Andriushchenko et al. 2020, Algorithm 1, simplified).

    Starts from vertical stripes of +-eps; each query resamples +-eps on one random square window
    (``image_shape`` = (C, H, W) or (H, W) of the flattened input) or, without an image shape, on
    a random block of a fraction p of the coordinates, p halving at the paper's schedule, and
    keeps the proposal where the margin loss rises. Only forward passes are used.
    """
    _validate(eps, "linf", 1, 1, 1.0, "constant")
    m = frozen_eval(model)
    x = x.detach()
    box = _box(input_range, x)
    g = torch_generator(seed)
    n = x.shape[0]
    flat = x.reshape(n, -1)
    d = flat.shape[1]
    if image_shape is not None:
        shp = (1, *image_shape) if len(image_shape) == 2 else tuple(image_shape)
        if math.prod(shp) != d:
            raise ConfigError(f"`image_shape` {image_shape} has {math.prod(shp)} entries; the inputs have {d}.")
    else:
        shp = (1, 1, d)
    c, h, w = shp
    sign = torch.where(torch.rand((n, c, 1, w), generator=g) < 0.5, -1.0, 1.0).to(x.dtype).expand(n, c, h, w)
    delta = project((eps * sign).reshape(x.shape), x, eps, "linf", box)
    with torch.no_grad():
        loss = -margins(m(x + delta), y)
        best, best_loss = x.clone(), -margins(m(x), y)
        upd = loss > best_loss
        best[upd], best_loss[upd] = (x + delta)[upd], loss[upd]
        for q in range(queries):
            frac = p_init * 0.5 ** sum(q >= t for t in (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000))
            if image_shape is not None:
                s = max(1, int(round(math.sqrt(frac * h * w))))
                s = min(s, h, w)
                r0 = int(torch.randint(0, h - s + 1, (1,), generator=g))
                c0 = int(torch.randint(0, w - s + 1, (1,), generator=g))
                new = delta.reshape(n, c, h, w).clone()
                vals = torch.where(torch.rand((n, c, 1, 1), generator=g) < 0.5, -eps, eps).to(x.dtype)
                new[:, :, r0 : r0 + s, c0 : c0 + s] = vals
            else:
                k = max(1, int(round(frac * d)))
                idx = torch.randperm(d, generator=g)[:k]
                new = delta.reshape(n, d).clone()
                new[:, idx] = torch.where(torch.rand((n, k), generator=g) < 0.5, -eps, eps).to(x.dtype)
            new = project(new.reshape(x.shape), x, eps, "linf", box)
            cand = -margins(m(x + new), y)
            acc = cand > loss
            delta[acc] = new[acc]
            loss = torch.where(acc, cand, loss)
            upd = loss > best_loss
            best[upd], best_loss[upd] = (x + delta)[upd], loss[upd]
    return _finish(m, x, y, best, 0)


def budget_violation(x: torch.Tensor, x_adv: torch.Tensor, eps: float, norm: str, input_range: Any) -> float:
    """The largest amount by which x_adv leaves the eps-ball or the box (0 when it respects both)."""
    over_ball = float((_flat_norm(x_adv - x, norm) - eps).clamp_min(0).max()) if x.shape[0] else 0.0
    box = _box(input_range, x)
    over_box = 0.0
    if box is not None and x.shape[0]:
        over_box = float(torch.max((box[0] - x_adv).clamp_min(0).max(), (x_adv - box[1]).clamp_min(0).max()))
    return max(over_ball, over_box)


def exact_linear_robust(
    weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str,
    input_range: Any = None,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Exact worst-case margin and robustness of a linear classifier z = W x + b (float64).

    For the pair (y, j) the margin a_j . x + c_j, a_j = w_y - w_j, falls by at most
    max_{delta in U} -a_j . delta over the threat set U. Without a box this is eps ||a_j||_q, q
    the dual norm (q = 1 for l-inf, q = 2 for l-2); with a box and l-inf, U is itself a box and
    the maximum is separable: sum_i max(-a_ji lo_i, -a_ji hi_i) with lo_i = max(-eps, low - x_i),
    hi_i = min(eps, high - x_i). An example is robust iff every pair keeps a positive worst-case
    margin (exact for any number of classes: the union of half-spaces is reached pair by pair).
    Returns (worst-case margin min_j, robust mask).
    """
    if norm == "l2" and input_range is not None:
        raise ConfigError(
            "the exact l-2 worst case inside a box is a QP; pass `input_range=None` for the l-2 reference."
        )
    W, b = weight.double(), bias.double()
    xf = x.reshape(x.shape[0], -1).double()
    a = W[y][:, None, :] - W[None, :, :]  # (n, k, d): a_j = w_y - w_j
    c = b[y][:, None] - b[None, :]
    marg = (a * xf[:, None, :]).sum(-1) + c  # (n, k)
    if input_range is None:
        shift = eps * (a.abs().sum(-1) if norm == "linf" else a.norm(dim=-1))
    else:
        lo_b, hi_b = _box(input_range, xf)
        lo = torch.clamp(lo_b - xf, min=-eps)
        hi = torch.clamp(hi_b - xf, max=eps)
        shift = torch.maximum(-a * lo[:, None, :], -a * hi[:, None, :]).sum(-1)
    worst = marg - shift
    worst.scatter_(1, y[:, None], torch.inf)
    wm = worst.min(dim=1).values
    return wm, wm > 0
