"""What the spectral-bias lens measures: a 1-D regression target, and (for the MLP part) a model builder.

:class:`Subject` holds ``x``, ``n`` equispaced 1-D inputs (any range: they are mapped to [0, 1),
one period, so the FFT of the residual resolves frequencies 1 .. n/2 - 1 in cycles over the
span) and the target values ``y``. ``frequencies`` names the FFT bins whose fitting times are
measured (None: the target's largest components, at most four). ``model_builder(d_in, seed)``
returns a fresh ``nn.Sequential`` of ``nn.Linear`` layers (with bias) separated by one kind of
activation (ReLU, Tanh or GELU) and ending in one output; it is called for the plain MLP (d_in = 1)
and for the Fourier-feature MLP (d_in = 2 ff_features). None builds the settings' MLP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from torch import nn

ModelBuilder = Callable[[int, int], nn.Sequential]
MAX_AUTO_FREQUENCIES = 4


@dataclass(frozen=True, eq=False)
class Subject:
    x: np.ndarray
    y: np.ndarray
    frequencies: tuple[int, ...] | None = None
    model_builder: ModelBuilder | None = None
    description: str = "user arrays"

    def __post_init__(self) -> None:
        x = np.asarray(self.x, np.float64)
        y = np.asarray(self.y, np.float64)
        if x.ndim != 1 or y.shape != x.shape:
            raise ValueError(f"`x` and `y` must be 1-d arrays of one length; got shapes {x.shape} and {y.shape}.")
        if x.size < 8:
            raise ValueError(f"`x` must have at least 8 points; got {x.size}.")
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
            raise ValueError("`x` and `y` must be finite.")
        step = np.diff(x)
        if not (step[0] > 0 and np.allclose(step, step[0], rtol=1e-6, atol=0.0)):
            raise ValueError("`x` must be increasing and equispaced (the FFT reads the samples as one period).")
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)
        n = x.size
        if self.frequencies is None:
            mag = np.abs(np.fft.rfft(y))
            mag[0] = 0.0
            mag[n // 2 :] = 0.0  # below Nyquist only
            if mag.max() <= 0:
                raise ValueError("`y` has no component below the Nyquist frequency: nothing to fit.")
            top = [int(k) for k in np.argsort(mag)[::-1][:MAX_AUTO_FREQUENCIES] if mag[k] >= 0.05 * mag.max()]
            object.__setattr__(self, "frequencies", tuple(sorted(top)))
        else:
            fs = tuple(int(f) for f in self.frequencies)
            for i, f in enumerate(fs):
                if not 1 <= f < n / 2:
                    raise ValueError(f"`frequencies[{i}]` must be in [1, n/2) = [1, {n / 2:g}); got {f}.")
            if not fs or len(set(fs)) != len(fs):
                raise ValueError(f"`frequencies` must be distinct and non-empty; got {fs}.")
            mag = np.abs(np.fft.rfft(y))
            for f in fs:
                if mag[f] <= 1e-9 * max(float(mag.max()), 1e-300):
                    raise ValueError(f"the target has no component at frequency {f}: its fitting time is undefined.")
            object.__setattr__(self, "frequencies", fs)

    @property
    def unit_x(self) -> np.ndarray:
        """The inputs mapped to [0, 1): (x - x_0) / (n h)."""
        h = self.x[1] - self.x[0]
        return (self.x - self.x[0]) / (self.x.size * h)
