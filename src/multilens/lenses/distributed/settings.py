"""Settings of the distributed lens: processes, the default subject, and one nested table per part.

Every part is a frozen dataclass validated once at construction; a part set to None (``part =
false`` in TOML, ``--set part=false``) is not run. The part name is the settings field name:

* ``parity``: data-parallel modes on the subject against single-process SGD (float64);
* ``noise_floor``: SGD noise floor vs workers on an exactly solvable quadratic, and delayed noise;
* ``local_sgd``: local-SGD drift on non-IID least squares against the exact iterate;
* ``staleness``: delayed GD stability and rate against the companion-matrix spectrum;
* ``timing``: compute / idle / communication per step, the ring all-reduce model, speedup, the
  optimal worker count (model fitted on runs held out from the comparison) and a straggler;
* ``modes``: local SGD, stale and compressed training of the subject, time to a target loss;
* ``faults``: a worker that dies or hangs: detection, exit codes, no orphaned process;
* ``batch_floor``: the SGD loss floor of m workers at batch b against one process at batch m*b.

Profiles: ``smoke`` (tests: a few seconds per part), ``quick`` (the default) and ``full``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from multilens.errors import ConfigError
from multilens.validation import check_choice, check_int, check_positive

BACKENDS = ("auto", "gloo", "nccl")
DELAY_DISTRIBUTIONS = ("uniform", "geometric")
COMPRESSORS = ("topk", "randk")
FAULT_KINDS = ("exit", "hang")


def _ints(name: str, values: tuple[int, ...], minimum: int, *, nonempty: bool = True) -> None:
    if not isinstance(values, (tuple, list)):
        raise ConfigError(f"`{name}` must be a list of ints >= {minimum}; got {values!r}.")
    if nonempty and len(values) == 0:
        raise ConfigError(f"`{name}` must be a non-empty list of ints >= {minimum}; got [].")
    for i, v in enumerate(values):
        check_int(f"{name}[{i}]", v, minimum)
    if len(set(values)) != len(values):
        raise ConfigError(f"`{name}` must not repeat values; got {list(values)}.")


def _unit(name: str, value: float, *, open_low: bool = False, open_high: bool = False) -> None:
    ok_type = not isinstance(value, bool) and isinstance(value, (int, float))
    lo_ok = ok_type and (value > 0.0 if open_low else value >= 0.0)
    hi_ok = ok_type and (value < 1.0 if open_high else value <= 1.0)
    if not (lo_ok and hi_ok):
        lo, hi = "(" if open_low else "[", ")" if open_high else "]"
        raise ConfigError(f"`{name}` must be a number in {lo}0, 1{hi}; got {value!r}.")


def _step(name: str, value: float) -> None:
    check_positive(name, value)
    if value >= 2.0:
        raise ConfigError(f"`{name}` must be in (0, 2) so that gradient descent is stable (eta*L < 2); got {value}.")


def _divides(name: str, batch: int, workers: tuple[int, ...] | list[int]) -> None:
    for m in sorted(set(workers)):
        if batch % m != 0:
            raise ConfigError(f"`{name}` must be a multiple of every worker count ({m}); got {batch}.")


@dataclass(frozen=True)
class ParitySettings:
    """Gradient all-reduce, DDP, local SGD K=1, delay 0 and top-k ratio 1 vs single-process SGD."""

    workers: tuple[int, ...] = (2,)  # group sizes compared with one process (each >= 2)
    steps: int = 10
    batch: int = 64  # global batch, split evenly over the ranks
    lr: float = 0.2

    def __post_init__(self) -> None:
        _ints("parity.workers", self.workers, 2)
        check_int("parity.steps", self.steps, 1)
        check_int("parity.batch", self.batch, 1)
        _divides("parity.batch", self.batch, self.workers)
        check_positive("parity.lr", self.lr)


@dataclass(frozen=True)
class NoiseFloorSettings:
    """Synchronous averaged SGD with Gaussian gradient noise on a quadratic (the theorem's setting)."""

    workers: tuple[int, ...] = (1, 2, 4)
    dim: int = 20
    kappa: float = 5.0  # L / mu; L = 1, spectrum linspace(1/kappa, 1)
    eta_l: float = 0.5  # eta * L (the theorem needs <= 1)
    sigma2: float = 1.0  # per-worker total noise variance E||xi||^2
    init_dist: float = 10.0
    replicas: int = 32  # independent runs in lockstep; the intervals are over them
    steps: int = 600
    burn_in: int = 150
    delay_workers: int = 2  # group size of the delayed-noise variants (0: none)
    delay_taus: tuple[int, ...] = (1, 2)  # constant delays on the noisy quadratic
    delay_dist: str = "uniform"  # random delays on {0..delay_tau_max}
    delay_tau_max: int = 2  # 0: no random-delay variant
    delay_geometric_p: float = 0.5
    burn_in_tolerance: float = 0.01  # the exact transient left at burn_in must be below this fraction of the floor
    level: float = 0.95

    def __post_init__(self) -> None:
        _ints("noise_floor.workers", self.workers, 1)
        check_int("noise_floor.dim", self.dim, 2)
        check_positive("noise_floor.kappa", self.kappa)
        if self.kappa < 1.0:
            raise ConfigError(f"`noise_floor.kappa` must be a number >= 1 (it is L/mu); got {self.kappa}.")
        _step("noise_floor.eta_l", self.eta_l)
        check_positive("noise_floor.sigma2", self.sigma2)
        check_positive("noise_floor.init_dist", self.init_dist)
        check_int("noise_floor.replicas", self.replicas, 2)
        check_int("noise_floor.steps", self.steps, 2)
        check_int("noise_floor.burn_in", self.burn_in, 0)
        if self.burn_in >= self.steps - 1:
            raise ConfigError(
                f"`noise_floor.burn_in` must be an int < steps - 1 = {self.steps - 1}; got {self.burn_in}."
            )
        check_int("noise_floor.delay_workers", self.delay_workers, 0)
        _ints("noise_floor.delay_taus", self.delay_taus, 1, nonempty=False)
        check_choice("noise_floor.delay_dist", self.delay_dist, DELAY_DISTRIBUTIONS)
        check_int("noise_floor.delay_tau_max", self.delay_tau_max, 0)
        _unit("noise_floor.delay_geometric_p", self.delay_geometric_p, open_low=True)
        _unit("noise_floor.burn_in_tolerance", self.burn_in_tolerance, open_low=True, open_high=True)
        _unit("noise_floor.level", self.level, open_low=True, open_high=True)

    @property
    def with_delays(self) -> bool:
        return self.delay_workers >= 1 and (bool(self.delay_taus) or self.delay_tau_max > 0)


@dataclass(frozen=True)
class BatchFloorSettings:
    """m workers at batch b against one process at batch m*b: measured and exact loss floors (least squares)."""

    workers: int = 2  # m
    batch: int = 4  # b, per worker
    sampler: str = "global"  # "global": every rank samples all rows; "shards": its own n/m rows
    n_rows: int = 512
    dim: int = 8
    kappa: float = 4.0  # feature variances linspace(1/kappa, 1)
    noise: float = 0.5  # label noise std
    eta_l: float = 0.25  # eta * lambda_max(X^T X / n)
    replicas: int = 64
    steps: int = 1500
    burn_in: int = 300
    level: float = 0.95

    def __post_init__(self) -> None:
        check_int("batch_floor.workers", self.workers, 2)
        check_int("batch_floor.batch", self.batch, 1)
        check_choice("batch_floor.sampler", self.sampler, ("global", "shards"))
        check_int("batch_floor.dim", self.dim, 1)
        check_int("batch_floor.n_rows", self.n_rows, self.dim + 1)
        if self.n_rows % self.workers:
            raise ConfigError(
                f"`batch_floor.n_rows` must be a multiple of `batch_floor.workers` ({self.workers}); got {self.n_rows}."
            )
        check_positive("batch_floor.kappa", self.kappa)
        if self.kappa < 1.0:
            raise ConfigError(f"`batch_floor.kappa` must be a number >= 1; got {self.kappa}.")
        check_positive("batch_floor.noise", self.noise)
        _step("batch_floor.eta_l", self.eta_l)
        check_int("batch_floor.replicas", self.replicas, 2)
        check_int("batch_floor.steps", self.steps, 2)
        check_int("batch_floor.burn_in", self.burn_in, 0)
        if self.burn_in >= self.steps - 1:
            raise ConfigError(
                f"`batch_floor.burn_in` must be an int < steps - 1 = {self.steps - 1}; got {self.burn_in}."
            )
        _unit("batch_floor.level", self.level, open_low=True, open_high=True)


@dataclass(frozen=True)
class LocalSgdSettings:
    """Noise-free local GD on non-IID least-squares shards, every (heterogeneity, K)."""

    workers: int = 2
    dim: int = 20
    rows_per_worker: int = 128
    heterogeneity: tuple[float, ...] = (0.0, 0.5, 1.0)
    local_steps: tuple[int, ...] = (1, 2, 4, 8, 16)
    steps: int = 1440  # a multiple of every K
    eta_l: float = 0.5  # step size over the largest shard curvature

    def __post_init__(self) -> None:
        check_int("local_sgd.workers", self.workers, 1)
        check_int("local_sgd.dim", self.dim, 2)
        check_int("local_sgd.rows_per_worker", self.rows_per_worker, 1)
        if not isinstance(self.heterogeneity, (tuple, list)) or len(self.heterogeneity) == 0:
            raise ConfigError("`local_sgd.heterogeneity` must be a non-empty list of numbers in [0, 1]; got [].")
        for i, h in enumerate(self.heterogeneity):
            _unit(f"local_sgd.heterogeneity[{i}]", h)
        _ints("local_sgd.local_steps", self.local_steps, 1)
        check_int("local_sgd.steps", self.steps, 1)
        lcm = math.lcm(*self.local_steps)
        if self.steps % lcm != 0:
            raise ConfigError(
                f"`local_sgd.steps` must be a multiple of every K in local_steps (lcm {lcm}); got {self.steps}."
            )
        _step("local_sgd.eta_l", self.eta_l)


@dataclass(frozen=True)
class StalenessSettings:
    """Noise-free delayed GD on diagonal quadratics (mu = 1, L = kappa) at one step size."""

    workers: int = 2
    dim: int = 20
    taus: tuple[int, ...] = (0, 1, 2, 4, 8, 16)
    kappas: tuple[float, ...] = (2.0, 8.0, 32.0)
    eta_l: float = 0.9  # eta * max(kappas)
    steps: int = 300
    init_dist: float = 10.0
    rate_rel_tol: float = 0.1  # |measured - predicted ln-rate| <= rate_rel_tol*|predicted| + rate_abs_tol
    rate_abs_tol: float = 0.01

    def __post_init__(self) -> None:
        check_int("staleness.workers", self.workers, 1)
        check_int("staleness.dim", self.dim, 1)
        _ints("staleness.taus", self.taus, 0)
        if not isinstance(self.kappas, (tuple, list)) or len(self.kappas) == 0:
            raise ConfigError("`staleness.kappas` must be a non-empty list of numbers >= 1; got [].")
        for i, k in enumerate(self.kappas):
            if isinstance(k, bool) or not isinstance(k, (int, float)) or not k >= 1.0:
                raise ConfigError(f"`staleness.kappas[{i}]` must be a number >= 1; got {k!r}.")
        _step("staleness.eta_l", self.eta_l)
        check_int("staleness.steps", self.steps, 4)
        check_positive("staleness.init_dist", self.init_dist)
        check_positive("staleness.rate_rel_tol", self.rate_rel_tol)
        check_positive("staleness.rate_abs_tol", self.rate_abs_tol)


@dataclass(frozen=True)
class TimingSettings:
    """Step timing of synchronous training of the subject, the all-reduce size sweep, a straggler.

    Every worker count trains twice with different batch seeds: the ``fit`` run (``fit_steps``)
    fits the compute model, the held-out run (``steps``) is what the model is compared with.
    """

    workers: tuple[int, ...] = (1, 2, 4)
    global_batch: int = 1024
    lr: float = 0.2
    steps: int = 80  # held-out runs (compared with the model)
    fit_steps: int = 40  # fit runs (the compute model is fitted on these)
    warmup: int = 5  # first steps of each run not timed
    comm_sizes_bytes: tuple[int, ...] = (1024, 16384, 262144, 1048576)
    comm_reps: int = 20
    comm_quantile: float = 0.25  # the ring model is fitted to this quantile of each size's times
    step_time_rel_tol: float = 0.5  # predicted vs held-out step time, relative
    straggler_workers: int = 2  # 0: no straggler run
    straggler_sleep_s: float = 0.02
    straggler_steps: int = 20
    straggler_rel_tol: float = 0.5
    n_batches: int = 5  # batch means
    n_boot: int = 1000
    level: float = 0.95

    def __post_init__(self) -> None:
        _ints("timing.workers", self.workers, 1)
        check_int("timing.global_batch", self.global_batch, 1)
        _divides("timing.global_batch", self.global_batch, self.workers)
        if self.straggler_workers:
            _divides("timing.global_batch", self.global_batch, (self.straggler_workers,))
        check_positive("timing.lr", self.lr)
        check_int("timing.steps", self.steps, 2)
        check_int("timing.fit_steps", self.fit_steps, 2)
        check_int("timing.warmup", self.warmup, 0)
        if self.warmup >= min(self.steps, self.fit_steps) - 1:
            raise ConfigError(f"`timing.warmup` must be an int < min(steps, fit_steps) - 1; got {self.warmup}.")
        _ints("timing.comm_sizes_bytes", self.comm_sizes_bytes, 4)
        check_int("timing.comm_reps", self.comm_reps, 2)
        _unit("timing.comm_quantile", self.comm_quantile, open_low=True, open_high=True)
        check_positive("timing.step_time_rel_tol", self.step_time_rel_tol)
        check_int("timing.straggler_workers", self.straggler_workers, 0)
        if self.straggler_workers == 1:
            raise ConfigError("`timing.straggler_workers` must be 0 (no straggler run) or an int >= 2; got 1.")
        if isinstance(self.straggler_sleep_s, bool) or not isinstance(self.straggler_sleep_s, (int, float)):
            raise ConfigError(f"`timing.straggler_sleep_s` must be a number > 0; got {self.straggler_sleep_s!r}.")
        check_positive("timing.straggler_sleep_s", self.straggler_sleep_s)
        check_int("timing.straggler_steps", self.straggler_steps, 4)
        check_positive("timing.straggler_rel_tol", self.straggler_rel_tol)
        check_int("timing.n_batches", self.n_batches, 2)
        check_int("timing.n_boot", self.n_boot, 50)
        _unit("timing.level", self.level, open_low=True, open_high=True)


@dataclass(frozen=True)
class ModesSettings:
    """Training modes of the subject at one group size, on non-IID shards."""

    workers: int = 2
    global_batch: int = 1024
    lr: float = 0.2
    steps: int = 120
    eval_every: int = 8
    local_steps: tuple[int, ...] = (4, 16)  # local SGD K > 1
    stale_dist: str = "uniform"
    stale_tau_max: int = 2  # 0: no stale run
    stale_geometric_p: float = 0.5
    compression: tuple[str, ...] = ("topk", "randk")
    compression_ratio: float = 0.1
    heterogeneity: float = 0.5
    target_loss: float = 0.0  # 0: the loss the synchronous run reaches at half the steps

    def __post_init__(self) -> None:
        check_int("modes.workers", self.workers, 1)
        check_int("modes.global_batch", self.global_batch, 1)
        _divides("modes.global_batch", self.global_batch, (self.workers,))
        check_positive("modes.lr", self.lr)
        check_int("modes.steps", self.steps, 2)
        check_int("modes.eval_every", self.eval_every, 1)
        _ints("modes.local_steps", self.local_steps, 2, nonempty=False)
        check_choice("modes.stale_dist", self.stale_dist, DELAY_DISTRIBUTIONS)
        check_int("modes.stale_tau_max", self.stale_tau_max, 0)
        _unit("modes.stale_geometric_p", self.stale_geometric_p, open_low=True)
        if not isinstance(self.compression, (tuple, list)):
            raise ConfigError(f"`modes.compression` must be a list; got {self.compression!r}.")
        for i, c in enumerate(self.compression):
            check_choice(f"modes.compression[{i}]", c, COMPRESSORS)
        _unit("modes.compression_ratio", self.compression_ratio, open_low=True)
        _unit("modes.heterogeneity", self.heterogeneity)
        if isinstance(self.target_loss, bool) or not isinstance(self.target_loss, (int, float)) or self.target_loss < 0:
            raise ConfigError(f"`modes.target_loss` must be a number >= 0 (0 = automatic); got {self.target_loss!r}.")


@dataclass(frozen=True)
class FaultSettings:
    """One small launch per injected fault: the last rank dies (exit) or hangs at ``step``."""

    kinds: tuple[str, ...] = ("exit", "hang")
    workers: int = 2
    step: int = 5
    timeout_s: float = 3.0  # the training group's collective timeout (how fast a hang is detected)
    latency_slack_s: float = 2.0  # detection must come within timeout_s + this
    batch: int = 64
    lr: float = 0.2

    def __post_init__(self) -> None:
        if not isinstance(self.kinds, (tuple, list)) or not self.kinds:
            raise ConfigError(f"`faults.kinds` must be a non-empty list of exit, hang; got {self.kinds!r}.")
        for i, k in enumerate(self.kinds):
            check_choice(f"faults.kinds[{i}]", k, FAULT_KINDS)
        check_int("faults.workers", self.workers, 2)
        check_int("faults.step", self.step, 1)
        check_positive("faults.timeout_s", self.timeout_s)
        check_positive("faults.latency_slack_s", self.latency_slack_s)
        check_int("faults.batch", self.batch, 1)
        _divides("faults.batch", self.batch, (self.workers,))
        check_positive("faults.lr", self.lr)


@dataclass(frozen=True)
class Settings:
    """Processes, the default subject (an MLP on digits) and the parts; see ``for_profile``."""

    schema_version: int = 1
    # -- processes --------------------------------------------------------------------------
    backend: str = "auto"  # "auto": nccl when CUDA is present, else gloo
    n_cores: int = 0  # 0: the CPUs this process may run on (os.sched_getaffinity)
    collective_timeout_s: float = 120.0
    launch_timeout_s: float = 900.0
    # -- the default subject: an MLP on the scikit-learn digits --------------------------------
    widths: tuple[int, ...] = (128, 128)
    # -- parts (None: not run) -----------------------------------------------------------------
    parity: ParitySettings | None = ParitySettings()
    noise_floor: NoiseFloorSettings | None = NoiseFloorSettings()
    local_sgd: LocalSgdSettings | None = LocalSgdSettings()
    staleness: StalenessSettings | None = StalenessSettings()
    timing: TimingSettings | None = TimingSettings()
    modes: ModesSettings | None = ModesSettings()
    faults: FaultSettings | None = FaultSettings()
    batch_floor: BatchFloorSettings | None = BatchFloorSettings()

    def __post_init__(self) -> None:
        check_int("schema_version", self.schema_version, 1)
        check_choice("backend", self.backend, BACKENDS)
        check_int("n_cores", self.n_cores, 0)
        check_positive("collective_timeout_s", self.collective_timeout_s)
        check_positive("launch_timeout_s", self.launch_timeout_s)
        if not isinstance(self.widths, (tuple, list)):
            raise ConfigError(f"`widths` must be a list of ints >= 1; got {self.widths!r}.")
        for i, w in enumerate(self.widths):
            check_int(f"widths[{i}]", w, 1)

    @classmethod
    def for_profile(cls, profile: str) -> Settings:
        """ "smoke" (tests: a few seconds per part), "quick" (the default) or "full"."""
        if profile == "quick":
            return cls()
        if profile == "smoke":
            return cls(
                widths=(16,),
                parity=ParitySettings(workers=(2,), steps=4, batch=32),
                noise_floor=NoiseFloorSettings(
                    workers=(1, 2), dim=8, replicas=16, steps=240, burn_in=80, delay_taus=(1,), delay_tau_max=2
                ),
                local_sgd=LocalSgdSettings(
                    dim=8, rows_per_worker=32, heterogeneity=(0.0, 1.0), local_steps=(1, 2, 4), steps=960, eta_l=0.9
                ),
                staleness=StalenessSettings(dim=8, taus=(0, 1, 2, 4), kappas=(2.0, 8.0), steps=120),
                # One group size and no straggler: the smoke run's check verdicts must not depend on how busy
                # the machine is (the model-vs-held-out comparisons run in the quick and full profiles).
                timing=TimingSettings(
                    workers=(2,),
                    global_batch=64,
                    steps=16,
                    fit_steps=12,
                    warmup=2,
                    comm_sizes_bytes=(1024, 262144, 1048576),
                    comm_reps=6,
                    straggler_workers=0,
                    straggler_steps=6,
                    n_boot=200,
                ),
                modes=ModesSettings(global_batch=64, steps=16, eval_every=4, local_steps=(4,), compression=("topk",)),
                faults=FaultSettings(kinds=("exit",), step=3, batch=32),
                batch_floor=BatchFloorSettings(replicas=16, steps=500, burn_in=150),
            )
        if profile == "full":
            base = cls()
            return replace(
                base,
                noise_floor=replace(base.noise_floor, workers=(1, 2, 3, 4), replicas=64, steps=2000, burn_in=300),
                local_sgd=replace(
                    base.local_sgd,
                    heterogeneity=(0.0, 0.25, 0.5, 0.75, 1.0),
                    local_steps=(1, 2, 4, 8, 16, 32),
                    steps=2880,
                ),
                staleness=replace(
                    base.staleness,
                    taus=(0, 1, 2, 3, 4, 6, 8, 12, 16, 24),
                    kappas=(2.0, 4.0, 8.0, 16.0, 32.0),
                    steps=600,
                ),
                parity=replace(base.parity, workers=(2, 3, 4), batch=96),
                timing=replace(
                    base.timing,
                    workers=(1, 2, 3, 4),
                    global_batch=1344,  # divisible by 1, 2, 3, 4 and <= 1347 digits training rows
                    steps=400,
                    fit_steps=200,
                    comm_sizes_bytes=(1024, 16384, 262144, 1048576, 4194304),
                    comm_reps=40,
                    straggler_steps=40,
                    n_boot=2000,
                ),
                modes=replace(
                    base.modes, workers=4, global_batch=1344, steps=400, eval_every=10, local_steps=(2, 4, 8, 16)
                ),
            )
        raise ConfigError(f"`profile` must be one of smoke, quick, full; got {profile!r}.")
