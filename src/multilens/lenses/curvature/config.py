"""Configuration of the curvature lens: one frozen dataclass, three profiles, strict validation.

Every field is a plain int, float, str, bool or tuple of those so that
``multilens lens curvature --set key=value`` can override it through
:func:`multilens.config.from_dict`. Profiles: "smoke" (seconds, for tests), "quick" (the default
of ``multilens run``, about a minute on 2 cores) and "full" (thorough).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from multilens.errors import ConfigError

_ACTIVATIONS = ("relu", "tanh", "gelu")
_DIRECTIONS = ("random", "eigen", "eigen+random")
_SCHEDULES = ("constant", "step", "cosine")


@dataclass(frozen=True)
class CurvatureConfig:
    schema_version: int = 1
    # --- the checkpoint under study: an MLP classifier on the digits (cross-entropy) ---------
    widths: tuple[int, ...] = (32,)
    activation: str = "relu"
    n_train: int = 0  # 0: the whole training split
    optimizer: str = "adam"
    lr: float = 3e-3
    epochs: int = 30
    batch_size: int = 64
    # --- the Hessian of the mean training loss ------------------------------------------------
    hessian_examples: int = 0  # the first N training examples (0: all of them)
    hessian_batch_size: int = 2048  # one batch holds the whole digits training split: its graph is reused
    k: int = 3
    tol: float = 1e-8
    max_iter: int = 300
    trace_matvecs: int = 99
    level: float = 0.95
    density_vectors: int = 4
    density_iters: int = 60
    density_sigma_rel: float = 0.01
    dense_check_max_dim: int = 3000  # compare with the dense Hessian when there are at most this many parameters
    per_layer: bool = True
    layer_trace_matvecs: int = 60
    # --- the geometry gate's margin -----------------------------------------------------------
    margin_quantile: float = 0.1
    margin_bootstrap: int = 200
    # --- sharpness ----------------------------------------------------------------------------
    rhos: tuple[float, ...] = (0.01, 0.05, 0.1)
    asam_rhos: tuple[float, ...] = (0.01, 0.05)
    sharpness_steps: int = 25
    # --- invariance ---------------------------------------------------------------------------
    invariance: bool = True
    rescale_factors: tuple[float, ...] = (0.5, 4.0)
    invariance_trace_matvecs: int = 30
    invariance_rho: float = 0.05
    invariance_rho_adaptive: float = 0.05
    input_noise: float = 0.1
    layernorm_epochs: int = 5
    # --- landscape slices ---------------------------------------------------------------------
    slice_points_1d: int = 41
    slice_points_2d: int = 21
    slice_radius: float = 1.0
    slice_directions: str = "eigen+random"
    slice_mode: str = "eval"
    fit_radius: float = 1e-5  # small enough that no ReLU kink falls inside the window (see the lens notes)
    fit_points: int = 21
    curvature_radii: tuple[float, ...] = (1e-2, 1e-3, 1e-4, 1e-5)  # slice curvature vs window size
    # --- along training (full-batch GD, squared loss) -----------------------------------------
    along_training: bool = True
    at_schedules: tuple[str, ...] = ("constant", "step", "cosine")
    at_n_train: int = 512
    at_lr: float = 2.5
    at_steps: int = 300
    at_checkpoints: int = 6
    at_k: int = 2
    at_tol: float = 1e-6
    at_trace_matvecs: int = 30
    at_step_gamma: float = 0.3
    eos_tolerance: float = 0.1
    # --- preconditioning on constructed quadratics --------------------------------------------
    preconditioning: bool = True
    pc_dim: int = 100
    pc_kappas: tuple[float, ...] = (10.0, 100.0, 1000.0)
    pc_kappa_m: float = 10.0
    pc_scale_ranges: tuple[float, ...] = (1.0, 10.0, 100.0)
    pc_tol: float = 1e-6

    def __post_init__(self) -> None:
        ints_ge = {
            "epochs": 1,
            "batch_size": 1,
            "hessian_batch_size": 1,
            "k": 1,
            "max_iter": 2,
            "trace_matvecs": 4,
            "density_vectors": 2,
            "density_iters": 2,
            "dense_check_max_dim": 0,
            "layer_trace_matvecs": 4,
            "margin_bootstrap": 10,
            "sharpness_steps": 1,
            "invariance_trace_matvecs": 4,
            "layernorm_epochs": 1,
            "fit_points": 7,
            "at_n_train": 2,
            "at_steps": 1,
            "at_checkpoints": 1,
            "at_k": 1,
            "at_trace_matvecs": 4,
            "pc_dim": 2,
            "n_train": 0,
            "hessian_examples": 0,
        }
        for name, lo in ints_ge.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ConfigError(f"`{name}` must be an int >= {lo}; got {v!r}.")
        positive = (
            "lr",
            "tol",
            "density_sigma_rel",
            "invariance_rho",
            "invariance_rho_adaptive",
            "input_noise",
            "slice_radius",
            "fit_radius",
            "at_lr",
            "at_tol",
            "at_step_gamma",
            "eos_tolerance",
            "pc_tol",
        )
        for name in positive:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ConfigError(f"`{name}` must be a finite number > 0; got {v!r}.")
        for name in ("slice_points_1d", "slice_points_2d"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 3 or v % 2 == 0:
                raise ConfigError(f"`{name}` must be an odd int >= 3 (the trained point is the centre); got {v!r}.")
        if self.fit_points % 2 == 0:
            raise ConfigError(f"`fit_points` must be odd (the trained point is the centre); got {self.fit_points}.")
        if not self.widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in self.widths):
            raise ConfigError(f"`widths` must be a non-empty list of ints >= 1; got {self.widths!r}.")
        if self.activation not in _ACTIVATIONS:
            raise ConfigError(f"`activation` must be one of {', '.join(_ACTIVATIONS)}; got {self.activation!r}.")
        if self.optimizer not in ("sgd", "adam"):
            raise ConfigError(f"`optimizer` must be 'sgd' or 'adam'; got {self.optimizer!r}.")
        if not 0.0 < self.level < 1.0:
            raise ConfigError(f"`level` must be in (0, 1); got {self.level!r}.")
        if not 0.0 < self.margin_quantile < 1.0:
            raise ConfigError(f"`margin_quantile` must be in (0, 1); got {self.margin_quantile!r}.")
        if self.slice_directions not in _DIRECTIONS:
            raise ConfigError(
                f"`slice_directions` must be one of {', '.join(_DIRECTIONS)}; got {self.slice_directions!r}."
            )
        if self.slice_directions == "eigen" and self.k < 2:
            raise ConfigError("`slice_directions` = 'eigen' needs `k` >= 2 eigenvectors; raise `k`.")
        if self.slice_mode not in ("eval", "train"):
            raise ConfigError(f"`slice_mode` must be 'eval' or 'train'; got {self.slice_mode!r}.")
        for name in ("rhos", "asam_rhos", "rescale_factors", "pc_kappas", "pc_scale_ranges", "curvature_radii"):
            vals = getattr(self, name)
            if not vals or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 for v in vals):
                raise ConfigError(f"`{name}` must be a non-empty list of numbers > 0; got {vals!r}.")
        if any(v < 1 for v in self.pc_kappas) or any(v < 1 for v in self.pc_scale_ranges) or self.pc_kappa_m < 1:
            raise ConfigError(
                "`pc_kappas`, `pc_scale_ranges` and `pc_kappa_m` must be >= 1 (condition numbers, ranges)."
            )
        if any(c == 1.0 for c in self.rescale_factors):
            raise ConfigError("`rescale_factors` must not contain 1 (the identity transform tests nothing).")
        if not self.at_schedules or any(s not in _SCHEDULES for s in self.at_schedules):
            raise ConfigError(
                f"`at_schedules` must be a non-empty list of {', '.join(_SCHEDULES)}; got {self.at_schedules!r}."
            )
        if not self.pc_tol < 1.0:
            raise ConfigError(f"`pc_tol` must be in (0, 1); got {self.pc_tol!r}.")
        if self.max_iter < self.k:
            raise ConfigError(f"`max_iter` must be >= `k` ({self.k}); got {self.max_iter}.")

    @classmethod
    def for_profile(cls, profile: str) -> CurvatureConfig:
        if profile == "quick":
            return cls()
        if profile == "smoke":
            return dataclasses.replace(
                cls(),
                widths=(16,),
                epochs=4,
                hessian_examples=128,
                hessian_batch_size=128,
                k=2,
                trace_matvecs=30,
                density_vectors=2,
                density_iters=30,
                layer_trace_matvecs=12,
                margin_bootstrap=50,
                rhos=(0.05,),
                asam_rhos=(0.05,),
                sharpness_steps=3,
                rescale_factors=(2.0,),
                invariance_trace_matvecs=12,
                layernorm_epochs=2,
                slice_points_1d=11,
                slice_points_2d=7,
                fit_points=11,
                at_schedules=("constant", "cosine"),
                at_n_train=128,
                at_steps=40,
                at_checkpoints=2,
                at_k=1,
                at_trace_matvecs=12,
                pc_dim=30,
                pc_kappas=(10.0, 100.0),
                pc_scale_ranges=(1.0, 10.0),
            )
        if profile == "full":
            return dataclasses.replace(
                cls(),
                widths=(64,),
                epochs=60,
                k=5,
                trace_matvecs=300,
                density_vectors=8,
                density_iters=100,
                dense_check_max_dim=5000,
                layer_trace_matvecs=150,
                margin_bootstrap=1000,
                rhos=(0.005, 0.01, 0.05, 0.1, 0.2),
                asam_rhos=(0.01, 0.05, 0.1),
                sharpness_steps=60,
                rescale_factors=(0.25, 0.5, 2.0, 4.0, 10.0),
                invariance_trace_matvecs=99,
                layernorm_epochs=20,
                slice_points_1d=61,
                slice_points_2d=41,
                at_n_train=1024,
                at_steps=1500,
                at_checkpoints=15,
                at_k=3,
                at_trace_matvecs=60,
                pc_dim=200,
                pc_kappas=(10.0, 100.0, 1000.0, 10000.0),
                pc_scale_ranges=(1.0, 3.0, 10.0, 30.0, 100.0),
            )
        raise ConfigError(f"`profile` must be 'smoke', 'quick' or 'full'; got {profile!r}.")
