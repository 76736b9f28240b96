"""Teacher-student regression: a fixed random teacher network labels fresh Gaussian inputs.

x ~ N(0, I_d); y = teacher(x) + noise_std * eps. The teacher is a one-hidden-layer tanh network
with weights drawn from ``teacher_seed`` and output weights decaying as k**-decay; its output is
scaled to unit variance so losses are comparable across widths. The Bayes risk under squared loss
is exactly ``noise_std**2``, which gives every scaling fit a known floor to compare its estimated
L_inf against.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from multilens.seeding import torch_generator
from multilens.validation import check_int


@dataclass(frozen=True)
class TeacherStudentTask:
    d_in: int = 16
    teacher_width: int = 256
    noise_std: float = 0.1
    teacher_seed: int = 0
    decay: float = 1.0  # teacher output weight of unit k is proportional to k**-decay
    input_scale: float = 1.0  # teacher pre-activations are input_scale * w.x with |w| ~ 1: larger is more nonlinear

    def __post_init__(self) -> None:
        check_int("d_in", self.d_in, 1)
        check_int("teacher_width", self.teacher_width, 1)
        if not self.noise_std >= 0.0:
            from multilens.errors import ConfigError

            raise ConfigError(f"`noise_std` must be >= 0; got {self.noise_std}.")

    @property
    def bayes_risk(self) -> float:
        return float(self.noise_std) ** 2

    def _teacher(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        g = torch_generator(self.teacher_seed)
        w1 = self.input_scale * torch.randn(self.d_in, self.teacher_width, generator=g) / np.sqrt(self.d_in)
        # Power-law decaying output weights with random signs: a student of width w can capture
        # roughly the w strongest teacher units, which makes the approximation error fall as a
        # power law in width (the classic mechanism behind parameter scaling laws).
        k = torch.arange(1, self.teacher_width + 1, dtype=torch.float32)
        signs = torch.where(torch.rand(self.teacher_width, generator=g) < 0.5, -1.0, 1.0)
        w2 = (signs * k.pow(-float(self.decay))).unsqueeze(1)
        # Normalize the teacher's output to unit variance on a large fixed reference sample.
        xr = torch.randn(8192, self.d_in, generator=g)
        scale = float((torch.tanh(xr @ w1) @ w2).std())
        return w1, w2, scale

    def sample(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` fresh (x, y) pairs; x: (n, d_in) float32, y: (n, 1) float32."""
        check_int("n", n, 1)
        w1, w2, scale = self._teacher()
        g = torch_generator(seed)
        x = torch.randn(n, self.d_in, generator=g)
        y = (torch.tanh(x @ w1) @ w2) / scale
        y = y + self.noise_std * torch.randn(n, 1, generator=g)
        return x, y

    def checksum(self) -> str:
        x, y = self.sample(64, seed=0)
        return hashlib.sha256(x.numpy().tobytes() + y.numpy().tobytes()).hexdigest()
