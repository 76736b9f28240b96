"""Configuration of the distributed lens: worker counts, the quadratic, the MLP runs, faults.

One frozen dataclass, validated once at construction; every field is a simple type so the CLI
can override it with ``--set key=value`` (``multilens.config.from_dict``). The three profiles
trade thoroughness for time on a 2-core machine: ``smoke`` (tests, seconds), ``quick`` (the
default of ``multilens run``, about a minute) and ``full``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from multilens.errors import ConfigError
from multilens.validation import check_int, check_positive

BACKENDS = ("auto", "gloo", "nccl")
DELAY_DISTRIBUTIONS = ("uniform", "geometric")
COMPRESSORS = ("topk", "randk")
FAULT_KINDS = ("exit", "hang")
DIGITS_TRAIN_ROWS = 1347  # 1797 digits minus the 25% stratified test split (multilens.data.digits)


def _check_int_tuple(name: str, values: tuple[int, ...], minimum: int, *, nonempty: bool = True) -> None:
    if nonempty and len(values) == 0:
        raise ConfigError(f"`{name}` must be a non-empty list of ints >= {minimum}; got [].")
    for i, v in enumerate(values):
        check_int(f"{name}[{i}]", v, minimum)
    if len(set(values)) != len(values):
        raise ConfigError(f"`{name}` must not repeat values; got {list(values)}.")


def _check_unit(name: str, value: float, *, open_low: bool = False, open_high: bool = False) -> None:
    lo_ok = value > 0.0 if open_low else value >= 0.0
    hi_ok = value < 1.0 if open_high else value <= 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (lo_ok and hi_ok):
        lo, hi = "(" if open_low else "[", ")" if open_high else "]"
        raise ConfigError(f"`{name}` must be a number in {lo}0, 1{hi}; got {value!r}.")


@dataclass(frozen=True)
class DistributedConfig:
    """Everything the distributed lens runs; see ``for_profile`` for the three presets."""

    schema_version: int = 1
    # -- processes --------------------------------------------------------------------------
    workers: tuple[int, ...] = (1, 2, 4)  # data-parallel group sizes measured
    modes_workers: int = 2  # group size for local SGD, staleness, compression and straggler runs
    backend: str = "auto"  # "auto": nccl when CUDA is present, else gloo
    n_cores: int = 0  # 0: the CPUs this process may run on (os.sched_getaffinity)
    collective_timeout_s: float = 120.0  # torch.distributed timeout of the main launch
    launch_timeout_s: float = 900.0  # wall-clock deadline of one launch; then every process is killed
    # -- strongly convex quadratic (the convergence theorem) -----------------------------------
    dim: int = 20
    kappa: float = 5.0  # L / mu of the quadratic; L = 1
    eta_l: float = 0.5  # step size eta = eta_l / L (the theorem needs eta <= 1/L)
    sigma2: float = 1.0  # per-worker gradient-noise variance E||xi||^2 (isotropic Gaussian)
    init_dist: float = 10.0  # ||theta_0 - theta*||
    replicas: int = 32  # independent runs batched in one all-reduce; the CI is over them
    quad_steps: int = 600
    burn_in: int = 150  # steps discarded before averaging the noise floor
    # -- local SGD drift on non-IID least squares ----------------------------------------------
    local_steps: tuple[int, ...] = (1, 2, 4, 8, 16)
    heterogeneity: tuple[float, ...] = (0.0, 0.5, 1.0)
    drift_steps: int = 1440  # a multiple of every K; long enough for local GD to reach its fixed point
    rows_per_worker: int = 128
    # -- staleness -----------------------------------------------------------------------------
    stale_taus: tuple[int, ...] = (0, 1, 2, 4, 8, 16)  # constant delays (noise-free stability study)
    stale_kappas: tuple[float, ...] = (2.0, 8.0, 32.0)  # condition numbers; mu = 1, eta = 1/max kappa
    stale_eta_l: float = 0.9  # eta * max(stale_kappas): the stiffest problem runs at eta*L = 0.9
    stale_steps: int = 300
    stale_dist: str = "uniform"  # distribution of random delays
    stale_tau_max: int = 2  # bound of random delays (bounded staleness)
    stale_geometric_p: float = 0.5  # success probability when stale_dist = "geometric"
    # -- MLP on digits (parity, throughput, modes) ---------------------------------------------
    mlp_widths: tuple[int, ...] = (128, 128)
    global_batch: int = 1024  # of 1347 digits training rows: enough compute per step to weigh against communication
    lr: float = 0.2
    train_steps: int = 120
    eval_every: int = 8
    parity_steps: int = 10
    parity_batch: int = 64
    mlp_local_steps: tuple[int, ...] = (4, 16)
    compression: tuple[str, ...] = ("topk", "randk")
    compression_ratio: float = 0.1
    mlp_heterogeneity: float = 0.5
    target_loss: float = 0.0  # 0: the loss synchronous SGD reaches at half the step budget
    # -- communication sweep -------------------------------------------------------------------
    comm_sizes_bytes: tuple[int, ...] = (1024, 16384, 262144, 1048576)
    comm_reps: int = 20
    comm_quantile: float = 0.25  # the model is fitted to this quantile of each size's times (see timing.fit_ring_model)
    # -- faults --------------------------------------------------------------------------------
    fault_kinds: tuple[str, ...] = ("exit", "hang")
    fault_workers: int = 2
    fault_step: int = 5
    fault_timeout_s: float = 3.0
    straggler_sleep_s: float = 0.02
    straggler_steps: int = 20
    # -- statistics ----------------------------------------------------------------------------
    n_boot: int = 1000
    level: float = 0.95

    def __post_init__(self) -> None:
        check_int("schema_version", self.schema_version, 1)
        _check_int_tuple("workers", self.workers, 1)
        check_int("modes_workers", self.modes_workers, 1)
        if self.modes_workers > max(self.workers):
            raise ConfigError(
                f"`modes_workers` must be an int <= max(workers) = {max(self.workers)}; got {self.modes_workers}."
            )
        if self.backend not in BACKENDS:
            raise ConfigError(f"`backend` must be one of {', '.join(BACKENDS)}; got {self.backend!r}.")
        check_int("n_cores", self.n_cores, 0)
        check_positive("collective_timeout_s", self.collective_timeout_s)
        check_positive("launch_timeout_s", self.launch_timeout_s)
        check_int("dim", self.dim, 2)
        check_positive("kappa", self.kappa)
        if self.kappa < 1.0:
            raise ConfigError(f"`kappa` must be a number >= 1 (it is L/mu); got {self.kappa}.")
        check_positive("eta_l", self.eta_l)
        if self.eta_l >= 2.0:
            raise ConfigError(f"`eta_l` must be in (0, 2) so that SGD is stable (eta*L < 2); got {self.eta_l}.")
        check_positive("sigma2", self.sigma2)
        check_positive("init_dist", self.init_dist)
        check_int("replicas", self.replicas, 2)
        check_int("quad_steps", self.quad_steps, 2)
        check_int("burn_in", self.burn_in, 0)
        if self.burn_in >= self.quad_steps - 1:
            raise ConfigError(f"`burn_in` must be an int < quad_steps - 1 = {self.quad_steps - 1}; got {self.burn_in}.")
        _check_int_tuple("local_steps", self.local_steps, 1)
        if len(self.heterogeneity) == 0:
            raise ConfigError("`heterogeneity` must be a non-empty list of numbers in [0, 1]; got [].")
        for i, h in enumerate(self.heterogeneity):
            _check_unit(f"heterogeneity[{i}]", h)
        check_int("drift_steps", self.drift_steps, 1)
        lcm = math.lcm(*self.local_steps)
        if self.drift_steps % lcm != 0:
            raise ConfigError(
                f"`drift_steps` must be a multiple of every K in local_steps (lcm {lcm}); got {self.drift_steps}."
            )
        check_int("rows_per_worker", self.rows_per_worker, 1)
        _check_int_tuple("stale_taus", self.stale_taus, 0)
        if len(self.stale_kappas) == 0:
            raise ConfigError("`stale_kappas` must be a non-empty list of numbers >= 1; got [].")
        for i, k in enumerate(self.stale_kappas):
            if isinstance(k, bool) or not isinstance(k, (int, float)) or not k >= 1.0:
                raise ConfigError(f"`stale_kappas[{i}]` must be a number >= 1; got {k!r}.")
        check_positive("stale_eta_l", self.stale_eta_l)
        if self.stale_eta_l >= 2.0:
            raise ConfigError(
                f"`stale_eta_l` must be in (0, 2) so that undelayed GD is stable; got {self.stale_eta_l}."
            )
        check_int("stale_steps", self.stale_steps, 4)
        if self.stale_dist not in DELAY_DISTRIBUTIONS:
            raise ConfigError(f"`stale_dist` must be one of {', '.join(DELAY_DISTRIBUTIONS)}; got {self.stale_dist!r}.")
        check_int("stale_tau_max", self.stale_tau_max, 0)
        _check_unit("stale_geometric_p", self.stale_geometric_p, open_low=True)
        for i, w in enumerate(self.mlp_widths):
            check_int(f"mlp_widths[{i}]", w, 1)
        check_int("global_batch", self.global_batch, 1)
        if self.global_batch > DIGITS_TRAIN_ROWS:
            raise ConfigError(
                f"`global_batch` must be an int <= {DIGITS_TRAIN_ROWS} (the digits training rows); got {self.global_batch}."
            )
        check_int("parity_batch", self.parity_batch, 1)
        for m in sorted(set(self.workers) | {self.modes_workers}):
            if self.global_batch % m != 0:
                raise ConfigError(
                    f"`global_batch` must be a multiple of every worker count ({m}); got {self.global_batch}."
                )
            if self.parity_batch % m != 0:
                raise ConfigError(
                    f"`parity_batch` must be a multiple of every worker count ({m}); got {self.parity_batch}."
                )
        check_positive("lr", self.lr)
        check_int("train_steps", self.train_steps, 2)
        check_int("eval_every", self.eval_every, 1)
        check_int("parity_steps", self.parity_steps, 1)
        _check_int_tuple("mlp_local_steps", self.mlp_local_steps, 1, nonempty=False)
        for i, c in enumerate(self.compression):
            if c not in COMPRESSORS:
                raise ConfigError(f"`compression[{i}]` must be one of {', '.join(COMPRESSORS)}; got {c!r}.")
        _check_unit("compression_ratio", self.compression_ratio, open_low=True)
        _check_unit("mlp_heterogeneity", self.mlp_heterogeneity)
        if isinstance(self.target_loss, bool) or not isinstance(self.target_loss, (int, float)) or self.target_loss < 0:
            raise ConfigError(f"`target_loss` must be a number >= 0 (0 = automatic); got {self.target_loss!r}.")
        _check_int_tuple("comm_sizes_bytes", self.comm_sizes_bytes, 4)
        check_int("comm_reps", self.comm_reps, 2)
        _check_unit("comm_quantile", self.comm_quantile, open_low=True, open_high=True)
        for i, f in enumerate(self.fault_kinds):
            if f not in FAULT_KINDS:
                raise ConfigError(f"`fault_kinds[{i}]` must be one of {', '.join(FAULT_KINDS)}; got {f!r}.")
        check_int("fault_workers", self.fault_workers, 2)
        check_int("fault_step", self.fault_step, 1)
        check_positive("fault_timeout_s", self.fault_timeout_s)
        if self.straggler_sleep_s < 0 or isinstance(self.straggler_sleep_s, bool):
            raise ConfigError(f"`straggler_sleep_s` must be a number >= 0; got {self.straggler_sleep_s!r}.")
        check_int("straggler_steps", self.straggler_steps, 2)
        check_int("n_boot", self.n_boot, 50)
        _check_unit("level", self.level, open_low=True, open_high=True)

    @property
    def eta(self) -> float:
        """Step size of the quadratic runs (L = 1)."""
        return self.eta_l

    @classmethod
    def for_profile(cls, profile: str) -> DistributedConfig:
        """Preset for "smoke" (tests: seconds), "quick" (default, ~1 min) or "full" (thorough)."""
        if profile == "quick":
            return cls()
        if profile == "smoke":
            return replace(
                cls(),
                workers=(1, 2),
                modes_workers=2,
                dim=10,
                replicas=16,
                quad_steps=300,
                burn_in=100,
                local_steps=(1, 2, 4),
                heterogeneity=(0.0, 1.0),
                drift_steps=960,
                rows_per_worker=64,
                stale_taus=(0, 1, 2, 4),
                stale_kappas=(2.0, 8.0),
                stale_steps=120,
                mlp_widths=(32,),
                global_batch=64,
                train_steps=24,
                eval_every=4,
                parity_steps=5,
                parity_batch=32,
                mlp_local_steps=(4,),
                compression=("topk",),
                comm_sizes_bytes=(1024, 65536, 262144),
                comm_reps=8,
                fault_kinds=("exit",),
                straggler_steps=6,
                n_boot=200,
            )
        if profile == "full":
            return replace(
                cls(),
                workers=(1, 2, 3, 4),
                modes_workers=4,
                replicas=64,
                quad_steps=2000,
                burn_in=300,
                local_steps=(1, 2, 4, 8, 16, 32),
                heterogeneity=(0.0, 0.25, 0.5, 0.75, 1.0),
                drift_steps=2880,
                stale_taus=(0, 1, 2, 3, 4, 6, 8, 12, 16, 24),
                stale_kappas=(2.0, 4.0, 8.0, 16.0, 32.0),
                stale_steps=600,
                global_batch=1344,  # divisible by 1, 2, 3, 4 and <= 1347 training rows
                parity_batch=96,
                train_steps=400,
                eval_every=10,
                mlp_local_steps=(2, 4, 8, 16),
                comm_sizes_bytes=(1024, 16384, 262144, 1048576, 4194304),
                comm_reps=40,
                straggler_steps=40,
                n_boot=2000,
            )
        raise ConfigError(f"`profile` must be one of smoke, quick, full; got {profile!r}.")
