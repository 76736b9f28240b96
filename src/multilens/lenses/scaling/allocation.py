"""Compute-optimal allocation of a FLOP budget C = 6ND between parameters N and data D.

For L(N, D) = E + A N^-alpha + B D^-beta (Hoffmann et al. 2022, Sec. 3.3 and App. D.3), put
D = C/(6N) and set dL/dN = 0:

    -alpha A N^-(alpha+1) + beta B (C/6)^-beta N^(beta-1) = 0
    =>  N^(alpha+beta) = (alpha A / (beta B)) (C/6)^beta

so, with G = (alpha A / (beta B))^(1/(alpha+beta)), a = beta/(alpha+beta), b = alpha/(alpha+beta),

    N*(C) = G (C/6)^a,        D*(C) = (C/6) / N* = G^-1 (C/6)^b,        a + b = 1.

(The seed chapter's task C.10 swaps a and b; the theorem and Hoffmann et al. have it as here.)
The second derivative is positive, so this stationary point is the unique minimum on N > 0.

Regret of a misspecified exponent (:func:`allocation_regret`): a planner who believes the
parameter exponent is a' = a + delta, but who calibrated the allocation at a reference budget
C_ref (where it agrees with the optimum: N'(C_ref) = N*(C_ref), i.e. the same constant G anchored
at C_ref), allocates N'(C) = N*(C_ref) (C / C_ref)^a' and D'(C) = C / (6 N'(C)). The regret at
budget C is the excess loss L(N'(C), D'(C)) - L(N*(C), D*(C)) >= 0 (in the loss's units, nats
for cross-entropy), also reported relative to the optimal loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from multilens.errors import ConfigError
from multilens.lenses.scaling.chinchilla import ChinchillaFit, predict_chinchilla
from multilens.lenses.scaling.data import FLOPS_PER_PARAM_TOKEN
from multilens.lenses.scaling.intervals import BootstrapResult, ParamInterval, check_level, percentile_interval
from multilens.results import SCHEMA_VERSION


def _params(p: dict[str, float] | ChinchillaFit) -> dict[str, float]:
    d = p.params if isinstance(p, ChinchillaFit) else dict(p)
    missing = [k for k in ("E", "A", "B", "alpha", "beta") if k not in d]
    if missing:
        raise ConfigError(
            f"`params` is missing {', '.join(missing)}; pass a ChinchillaFit or a dict with E, A, B, alpha, beta."
        )
    if not (d["alpha"] > 0 and d["beta"] > 0 and d["A"] > 0 and d["B"] > 0):
        raise ConfigError(
            f"allocation needs A, B, alpha, beta > 0; got A={d['A']:g}, B={d['B']:g}, "
            f"alpha={d['alpha']:g}, beta={d['beta']:g}."
        )
    return d


def _budgets(C: Any) -> np.ndarray:
    try:
        c = np.atleast_1d(np.asarray(C, dtype=np.float64))
    except (TypeError, ValueError):
        raise ConfigError(f"`budgets` must be positive numbers (FLOPs); got {C!r}.") from None
    if c.ndim != 1 or c.size == 0 or not np.all(np.isfinite(c)) or np.any(c <= 0):
        raise ConfigError(f"`budgets` must be a non-empty list of finite numbers > 0 (FLOPs); got {C!r}.")
    return c


def allocation_constants(params: dict[str, float] | ChinchillaFit) -> tuple[float, float, float]:
    """(a, b, G): N* = G (C/6)^a, D* = G^-1 (C/6)^b."""
    p = _params(params)
    s = p["alpha"] + p["beta"]
    G = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1.0 / s)
    return p["beta"] / s, p["alpha"] / s, float(G)


def optimal_allocation(params: dict[str, float] | ChinchillaFit, C: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N*, D*, L*) at budgets C (FLOPs, C = 6ND), from the closed form above."""
    p = _params(params)
    c = _budgets(C)
    a, b, G = allocation_constants(p)
    base = c / FLOPS_PER_PARAM_TOKEN
    N = G * base**a
    D = base / N  # exactly C/(6N): keeps the constraint to rounding, unlike G^-1 base^b
    return N, D, predict_chinchilla(p, N, D)


@dataclass(frozen=True, eq=False)
class RegretResult:
    """Excess loss of allocating with the parameter exponent a misspecified by ``delta``.

    Arrays are per budget: ``N_used``/``D_used`` is the misspecified allocation, ``regret`` the
    excess loss over the optimum ``L_opt``, ``relative_regret`` = regret / L_opt.
    """

    delta: float
    reference_compute: float
    budgets: np.ndarray
    N_used: np.ndarray
    D_used: np.ndarray
    L_opt: np.ndarray
    regret: np.ndarray
    relative_regret: np.ndarray
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "delta": self.delta,
            "reference_compute": self.reference_compute,
            "budgets": self.budgets.tolist(),
            "N_used": self.N_used.tolist(),
            "D_used": self.D_used.tolist(),
            "regret": self.regret.tolist(),
            "relative_regret": self.relative_regret.tolist(),
        }


def allocation_regret(
    params: dict[str, float] | ChinchillaFit, budgets: Any, *, reference_compute: float, delta: float = 0.05
) -> RegretResult:
    """Regret of using exponent a + ``delta`` anchored at ``reference_compute`` (module docstring)."""
    p = _params(params)
    c = _budgets(budgets)
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not np.isfinite(delta):
        raise ConfigError(f"`delta` must be a finite number (e.g. 0.05 or -0.05); got {delta!r}.")
    c_ref = float(_budgets(reference_compute)[0])
    a, _, _ = allocation_constants(p)
    N_ref = optimal_allocation(p, c_ref)[0][0]
    N_used = N_ref * (c / c_ref) ** (a + delta)
    D_used = c / (FLOPS_PER_PARAM_TOKEN * N_used)
    L_used = predict_chinchilla(p, N_used, D_used)
    L_opt = optimal_allocation(p, c)[2]
    regret = L_used - L_opt
    return RegretResult(float(delta), c_ref, c, N_used, D_used, L_opt, regret, regret / L_opt)


@dataclass(frozen=True, eq=False)
class AllocationResult:
    """Compute-optimal allocation with bootstrap percentile intervals.

    ``a``/``b``/``G`` are the exponents and constant; ``N_opt``, ``D_opt``, ``L_opt`` hold one
    :class:`ParamInterval` per budget; ``regret`` maps each exponent error delta to its
    :class:`RegretResult` (computed at the point estimate).
    """

    budgets: tuple[float, ...]
    a: ParamInterval
    b: ParamInterval
    G: ParamInterval
    N_opt: tuple[ParamInterval, ...]
    D_opt: tuple[ParamInterval, ...]
    L_opt: tuple[ParamInterval, ...]
    regret: dict[float, RegretResult]
    n_boot: int
    level: float
    method: str = "closed form N* = G (C/6)^a under C = 6ND; intervals: bootstrap percentile over runs"
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "budgets": list(self.budgets),
            "a": self.a.to_dict(),
            "b": self.b.to_dict(),
            "G": self.G.to_dict(),
            "N_opt": [v.to_dict() for v in self.N_opt],
            "D_opt": [v.to_dict() for v in self.D_opt],
            "L_opt": [v.to_dict() for v in self.L_opt],
            "regret": {f"{k:+g}": v.to_dict() for k, v in self.regret.items()},
            "n_boot": self.n_boot,
            "level": self.level,
            "method": self.method,
        }


def allocation_with_intervals(
    fit: ChinchillaFit,
    boot: BootstrapResult,
    budgets: Any,
    *,
    reference_compute: float | None = None,
    deltas: tuple[float, ...] = (-0.05, 0.05),
    level: float | None = None,
) -> AllocationResult:
    """Allocation at ``budgets`` with intervals propagated from the bootstrap refits of ``fit``.

    Every successful refit's (E, A, B, alpha, beta) gives its own N*, D*, L*; the intervals are
    percentiles of those. ``reference_compute`` (default: the smallest budget) anchors the regret.
    """
    if not isinstance(fit, ChinchillaFit):
        raise ConfigError(f"`fit` must be a ChinchillaFit; got {type(fit).__name__}.")
    if not isinstance(boot, BootstrapResult) or not set(("E", "A", "B", "alpha", "beta")) <= set(boot.names):
        raise ConfigError("`boot` must be the BootstrapResult of bootstrap_chinchilla for this fit.")
    c = _budgets(budgets)
    level = boot.level if level is None else check_level(level)
    a_hat, b_hat, G_hat = allocation_constants(fit)
    N_hat, D_hat, L_hat = optimal_allocation(fit, c)
    cols = {k: boot.column(k) for k in ("E", "A", "B", "alpha", "beta")}
    ok = np.all(np.isfinite(np.stack(list(cols.values()), axis=1)), axis=1) & (cols["alpha"] > 0) & (cols["beta"] > 0)
    ab = np.full((len(ok), 3), np.nan)
    Ns = np.full((len(ok), len(c)), np.nan)
    Ds, Ls = Ns.copy(), Ns.copy()
    for r in np.flatnonzero(ok):
        p = {k: float(v[r]) for k, v in cols.items()}
        ab[r] = allocation_constants(p)
        Ns[r], Ds[r], Ls[r] = optimal_allocation(p, c)
    c_ref = float(c.min()) if reference_compute is None else reference_compute
    return AllocationResult(
        budgets=tuple(map(float, c)),
        a=percentile_interval(a_hat, ab[:, 0], level),
        b=percentile_interval(b_hat, ab[:, 1], level),
        G=percentile_interval(G_hat, ab[:, 2], level),
        N_opt=tuple(percentile_interval(N_hat[j], Ns[:, j], level) for j in range(len(c))),
        D_opt=tuple(percentile_interval(D_hat[j], Ds[:, j], level) for j in range(len(c))),
        L_opt=tuple(percentile_interval(L_hat[j], Ls[:, j], level) for j in range(len(c))),
        regret={float(d): allocation_regret(fit, c, reference_compute=c_ref, delta=d) for d in deltas},
        n_boot=int(ok.sum()),
        level=level,
    )
