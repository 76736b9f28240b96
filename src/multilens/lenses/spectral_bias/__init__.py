"""Spectral-bias lens: exact kernel gradient flow, per-frequency fitting of an MLP and the NTK's
prediction of it, and Fourier features as the what-if (seed theorem at line 162; worked example 3;
exercises B.9, C.7).

Subject (:class:`Subject`): a 1-D regression target, ``x`` (equispaced inputs, any range: mapped
to [0, 1), one period) and ``y`` (values), the ``frequencies`` to follow (None: the target's
largest components) and, for the MLP part, a ``model_builder(d_in, seed) -> nn.Sequential``
(None: the settings' ``mlp.width``/``depth``/``activation``). The bundled subject
(:func:`default_subject`) is sum_k a_k sin(2 pi f_k x) on ``n_points`` grid points of [0, 1).

Parts: ``kernel_flow`` and ``mlp`` (settings tables of the same names).

    >>> from multilens.lenses import spectral_bias as sb
    >>> r = sb.measure(sb.Subject(x, y), sb.Settings.for_profile("smoke"), seed=0)
"""

from __future__ import annotations

import time

from multilens.lenses.contract import Runtime, finish, run_parts
from multilens.lenses.spectral_bias import mlp_fourier as _mf
from multilens.lenses.spectral_bias.lens import LENS, kernel_flow_part, mlp_part
from multilens.lenses.spectral_bias.settings import KernelFlowSettings, MLPSettings, Settings
from multilens.lenses.spectral_bias.subject import Subject
from multilens.results import LensResult

__all__ = ["KernelFlowSettings", "MLPSettings", "Settings", "Subject", "default_subject", "measure"]


def default_subject(settings: Settings, *, seed: int, runtime: Runtime | None = None) -> Subject:
    """The bundled target: sum_k amplitudes[k] sin(2 pi frequencies[k] x) on the grid (nothing drawn)."""
    del seed, runtime
    x = _mf.grid(settings.n_points)
    y = _mf.fourier_target(x, settings.frequencies, settings.amplitudes)
    return Subject(x, y, tuple(settings.frequencies), description="bundled: a sum of sines on a grid of [0, 1)")


def measure(subject: Subject, settings: Settings, *, seed: int, runtime: Runtime | None = None) -> LensResult:
    """Run the kernel-flow and MLP parts that are on, on ``subject``."""
    del runtime
    t0 = time.perf_counter()
    k, lvl, thr = settings.n_seeds, settings.ci_level, settings.fit_threshold
    parts, notes = run_parts(
        LENS,
        [
            ("kernel_flow", settings.kernel_flow, lambda ps, s: kernel_flow_part(subject, ps, k, lvl, thr, seed=s)),
            ("mlp", settings.mlp, lambda ps, s: mlp_part(subject, ps, k, lvl, thr, seed=s)),
        ],
        seed,
    )
    data = {
        "subject": subject.description,
        "n_points": int(subject.x.size),
        "frequencies": list(subject.frequencies or ()),
        "fit_threshold": thr,
    }
    return finish(LENS, parts, settings, seed, t0, notes=notes, data=data)
