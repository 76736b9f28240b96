"""Settings of the representation lens: the bundled subjects' fields and one table per part."""

from __future__ import annotations

from dataclasses import dataclass, replace

from multilens.errors import ConfigError
from multilens.validation import check_int, check_open_unit, check_positive


@dataclass(frozen=True)
class SpectrumSettings:
    top_k: int = 5
    n_boot: int = 200
    n_null: int = 30

    def __post_init__(self) -> None:
        check_int("spectrum.top_k", self.top_k, 1)
        check_int("spectrum.n_boot", self.n_boot, 2)
        check_int("spectrum.n_null", self.n_null, 2)


@dataclass(frozen=True)
class GroupsSettings:
    n_boot: int = 50
    subspace_k: int = 3  # dimension of each class subspace for principal angles
    max_groups: int = 10

    def __post_init__(self) -> None:
        check_int("groups.n_boot", self.n_boot, 2)
        check_int("groups.subspace_k", self.subspace_k, 1)
        check_int("groups.max_groups", self.max_groups, 2)


@dataclass(frozen=True)
class DownstreamSettings:
    knn_k: int = 5
    probe_c: float = 1.0
    chance_margin: float = 0.1  # probe accuracy must exceed chance by this much
    complete_rank: float = 1.5  # RankMe at or below this: complete (rank ~1) collapse
    dimensional_fraction: float = 0.1  # PR / nominal at or below this: dimensional collapse

    def __post_init__(self) -> None:
        check_int("downstream.knn_k", self.knn_k, 1)
        check_positive("downstream.probe_c", self.probe_c)
        check_open_unit("downstream.chance_margin", self.chance_margin)
        check_positive("downstream.complete_rank", self.complete_rank)
        check_open_unit("downstream.dimensional_fraction", self.dimensional_fraction)


@dataclass(frozen=True)
class TrajectorySettings:
    n_boot: int = 50
    subspace_k: int = 9  # C - 1 for the 10 digit classes
    stable_overlap: float = 0.9

    def __post_init__(self) -> None:
        check_int("trajectory.n_boot", self.n_boot, 2)
        check_int("trajectory.subspace_k", self.subspace_k, 1)
        check_open_unit("trajectory.stable_overlap", self.stable_overlap)


@dataclass(frozen=True)
class CollapseBoundSettings:
    delta: float = 0.05  # B.13's margin above the Bayes risk
    control_mu: float = 1.5  # class means at +-mu along one axis, unit noise: Bayes risk Phi(-mu)
    control_d: int = 16
    control_n: int = 2000

    def __post_init__(self) -> None:
        check_open_unit("collapse_bound.delta", self.delta)
        check_positive("collapse_bound.control_mu", self.control_mu)
        check_int("collapse_bound.control_d", self.control_d, 2)
        check_int("collapse_bound.control_n", self.control_n, 20)


@dataclass(frozen=True)
class SslSettings:
    epochs: int = 50
    batch_size: int = 128
    small_batch: int = 8  # WE-8's small batch (VICReg), trained for the same number of steps
    loss_ratio: float = 0.01  # A.11 "loss -> 0": final / initial alignment at or below this
    small_rank: int = 2  # A.11 "rank <= a small number"
    healthy_rank: int = 5  # WE-8 "rank kept up": retained rank at least this
    floor_fraction: float = 0.01  # retained rank counts eigenvalues >= this x the initial mean eigenvalue
    n_boot: int = 100
    n_seeds: int = 2  # encoders per objective (init and augmentation seeds; one shared data split)

    def __post_init__(self) -> None:
        check_int("ssl.epochs", self.epochs, 1)
        check_int("ssl.batch_size", self.batch_size, 2)
        check_int("ssl.small_batch", self.small_batch, 2)
        check_open_unit("ssl.loss_ratio", self.loss_ratio)
        check_int("ssl.small_rank", self.small_rank, 0)
        check_int("ssl.healthy_rank", self.healthy_rank, 1)
        check_open_unit("ssl.floor_fraction", self.floor_fraction)
        check_int("ssl.n_boot", self.n_boot, 2)
        check_int("ssl.n_seeds", self.n_seeds, 1)
        if self.small_batch >= self.batch_size:
            raise ConfigError(
                f"`ssl.small_batch` must be < `ssl.batch_size` ({self.batch_size}); got {self.small_batch}."
            )


@dataclass(frozen=True)
class Settings:
    """Representation lens settings: the digits MLP subject, then one table per part."""

    schema_version: int = 1
    mlp_epochs: int = 20
    mlp_width: int = 128
    embed_dim: int = 64
    n_checkpoints: int = 10
    spectrum: SpectrumSettings | None = SpectrumSettings()
    groups: GroupsSettings | None = GroupsSettings()
    downstream: DownstreamSettings | None = DownstreamSettings()
    trajectory: TrajectorySettings | None = TrajectorySettings()
    collapse_bound: CollapseBoundSettings | None = CollapseBoundSettings()
    ssl: SslSettings | None = SslSettings()

    def __post_init__(self) -> None:
        check_int("mlp_epochs", self.mlp_epochs, 1)
        check_int("mlp_width", self.mlp_width, 1)
        check_int("embed_dim", self.embed_dim, 1)
        check_int("n_checkpoints", self.n_checkpoints, 2)

    @classmethod
    def for_profile(cls, profile: str) -> Settings:
        if profile == "full":
            return cls(
                mlp_epochs=40,
                n_checkpoints=20,
                spectrum=SpectrumSettings(n_boot=500, n_null=100),
                groups=GroupsSettings(n_boot=200),
                trajectory=TrajectorySettings(n_boot=100),
                collapse_bound=CollapseBoundSettings(control_n=5000),
                ssl=SslSettings(epochs=80, n_boot=200, n_seeds=3),
            )
        if profile == "quick":
            return cls()
        if profile == "smoke":
            return cls(
                mlp_epochs=3,
                n_checkpoints=3,
                spectrum=SpectrumSettings(n_boot=10, n_null=4),
                groups=GroupsSettings(n_boot=5, max_groups=3),
                trajectory=TrajectorySettings(n_boot=5),
                collapse_bound=CollapseBoundSettings(control_n=400),
                ssl=replace(SslSettings(), epochs=2, n_boot=5, n_seeds=1),
            )
        raise ConfigError(f"`profile` must be one of 'smoke', 'quick', 'full'; got {profile!r}.")
