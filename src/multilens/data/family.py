"""The protocol's shared data family (C.18): one teacher-student classification task with fixed splits.

Scaling, double descent and stability are compared on one data family with one split so their
conclusions can be set side by side at all (C.18); the compute-optimal model the scaling phase
recommends is trained on it and handed to the later phases as their main subject.

The family. Inputs are uniform on the box ``[-1, 1]^d`` (a valid input box, so attacks and
certificates have a domain). A fixed random teacher, a one-hidden-layer tanh network drawn from
``teacher_seed`` with output weights decaying as k**-decay (the mechanism behind parameter scaling
laws, as in :mod:`multilens.data.teacher_student`), gives class logits ``f(x)``; the label is
*sampled*, ``y ~ Categorical(softmax(f(x)))``. The labels are therefore noisy with a known
conditional law, and the Bayes risks are known:

* cross-entropy: ``E[H(softmax(f(x)))]`` (the floor any scaling fit of the CE loss must respect);
* 0-1 error: ``E[1 - max_k softmax(f(x))_k]``.

Both are expectations over x, computed by Monte Carlo on ``n_bayes`` fresh inputs, with a 95%
interval (:meth:`FamilySpec.bayes_risk`).

Splits. ``train(n, seed)`` draws n fresh training examples from the stream of that seed (the
first n of a longer draw equal a shorter draw, so budgets nest); ``val()`` and ``test()`` are fixed
sets whose seeds depend only on ``split_seed``, the same for every phase and every run seed.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from multilens.seeding import derive_seed, torch_generator
from multilens.validation import check_int, check_positive

_CHUNK = 4096  # examples are drawn in fixed chunks so a draw of n is a prefix of a draw of m > n


@dataclass(frozen=True)
class FamilySpec:
    """The shared data family: a teacher-student classification task and its fixed splits."""

    d_in: int = 16
    n_classes: int = 2
    teacher_width: int = 256
    teacher_decay: float = 0.5  # slow decay: many teacher units matter, so loss keeps falling with width
    logit_scale: float = 4.0  # teacher logits are scaled to this std: larger = less label noise
    input_scale: float = 3.0  # std of the teacher's pre-activations: larger = a more nonlinear teacher
    teacher_seed: int = 0
    split_seed: int = 0
    n_val: int = 2048
    n_test: int = 4096
    n_bayes: int = 1 << 17

    def __post_init__(self) -> None:
        check_int("family.d_in", self.d_in, 1)
        check_int("family.n_classes", self.n_classes, 2)
        check_int("family.teacher_width", self.teacher_width, 1)
        check_positive("family.logit_scale", self.logit_scale)
        check_positive("family.input_scale", self.input_scale)
        check_int("family.n_val", self.n_val, 16)
        check_int("family.n_test", self.n_test, 16)
        check_int("family.n_bayes", self.n_bayes, 1024)

    # ---- the teacher ---------------------------------------------------------------------------
    def _teacher(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        g = torch_generator(derive_seed(self.teacher_seed, "family-teacher"))
        # Uniform inputs on [-1, 1] have variance 1/3: scale so pre-activations have unit variance.
        w1 = torch.randn(self.d_in, self.teacher_width, generator=g) * (self.input_scale * math.sqrt(3.0 / self.d_in))
        k = torch.arange(1, self.teacher_width + 1, dtype=torch.float32)
        w2 = torch.randn(self.teacher_width, self.n_classes, generator=g) * k.pow(-float(self.teacher_decay))[:, None]
        xr = torch.rand(8192, self.d_in, generator=g) * 2 - 1
        scale = float((torch.tanh(xr @ w1) @ w2).std())
        return w1, w2, self.logit_scale / scale

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The teacher's class logits f(x) (the labels are sampled from softmax(f(x)))."""
        w1, w2, s = self._teacher()
        return (torch.tanh(x.float() @ w1) @ w2) * s

    # ---- draws ---------------------------------------------------------------------------------
    def _draw(self, n: int, stream: int) -> tuple[torch.Tensor, torch.Tensor]:
        check_int("n", n, 1)
        w1, w2, s = self._teacher()
        xs, ys = [], []
        for c in range(math.ceil(n / _CHUNK)):
            g = torch_generator(derive_seed(stream, "family-chunk", c))
            x = torch.rand(_CHUNK, self.d_in, generator=g) * 2 - 1
            p = torch.softmax((torch.tanh(x @ w1) @ w2) * s, dim=1)
            y = torch.multinomial(p, 1, generator=g).squeeze(1)
            xs.append(x)
            ys.append(y)
        return torch.cat(xs)[:n].contiguous(), torch.cat(ys)[:n].contiguous()

    def train(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n fresh training examples of run seed ``seed``: x (n, d_in) float32, y (n,) int64."""
        return self._draw(n, derive_seed(self.split_seed, "family-train", seed))

    def val(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The fixed validation split (the same for every phase and run seed)."""
        return self._draw(self.n_val, derive_seed(self.split_seed, "family-val"))

    def test(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The fixed test split (the same for every phase and run seed)."""
        return self._draw(self.n_test, derive_seed(self.split_seed, "family-test"))

    def binary(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """n training examples as float64 features and labels in {-1, +1} (class 0 -> -1, others -> +1)."""
        x, y = self.train(n, seed)
        return x.double().numpy(), np.where(y.numpy() == 0, -1.0, 1.0)

    # ---- known answers -------------------------------------------------------------------------
    def bayes_risk(self) -> dict[str, Any]:
        """Monte Carlo Bayes risks of the family with 95% intervals (normal, n_bayes draws).

        Returns ``{"ce": (mean, lo, hi), "error": (mean, lo, hi), "n": n_bayes}``: the expected
        entropy of the label given x (cross-entropy floor) and the expected 1 - max_k p(k | x).
        """
        g = torch_generator(derive_seed(self.split_seed, "family-bayes"))
        x = torch.rand(self.n_bayes, self.d_in, generator=g) * 2 - 1
        p = torch.softmax(self.logits(x).double(), dim=1)
        ent = -(p * torch.log(p.clamp_min(1e-300))).sum(1).numpy()
        err = (1.0 - p.max(1).values).numpy()
        out: dict[str, Any] = {"n": self.n_bayes}
        for name, v in (("ce", ent), ("error", err)):
            m, se = float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v)))
            out[name] = (m, m - 1.959964 * se, m + 1.959964 * se)
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FamilySpec:
        return cls(**d)

    def checksum(self) -> str:
        """sha256 of a small draw of every split: changes when the generator changes."""
        h = hashlib.sha256()
        for x, y in (self.train(64, 0), self._draw(64, derive_seed(self.split_seed, "family-val"))):
            h.update(x.numpy().tobytes() + y.numpy().tobytes())
        return h.hexdigest()
