"""Closed forms for curvature and optimization speed (plain arithmetic, cited).

* Gradient descent on a strongly convex quadratic with Hessian spectrum in ``[mu, L]`` and the
  step ``2 / (mu + L)`` contracts the error by ``(kappa - 1) / (kappa + 1)`` per step in the
  worst case, ``kappa = L / mu`` (Polyak 1987, *Introduction to Optimization*, Thm 1.2.2; the
  chapter's worked example 1 and B.3); the bound is attained when the error has equal
  components on the extreme eigenvectors. Diagonal preconditioning ``P`` replaces ``kappa`` by
  ``kappa(P^{-1/2} H P^{-1/2})`` and the norm by ``||.||_P``.
* Linear stability of gradient descent (the "edge of stability", Cohen et al., ICLR 2021):
  on the local quadratic model, GD with step ``eta`` is stable along an eigendirection only if
  ``lambda < 2 / eta``; heavy-ball momentum ``beta`` raises the threshold to
  ``(2 + 2 beta) / eta``.
"""

from __future__ import annotations

import math

from multilens.errors import ConfigError


def gd_rate(kappa: float) -> float:
    """Worst-case per-step contraction ``(kappa - 1) / (kappa + 1)`` of GD with the optimal fixed step."""
    if not (kappa >= 1.0 and math.isfinite(kappa)):
        raise ConfigError(f"`kappa` must be a finite number >= 1; got {kappa!r}.")
    return (kappa - 1.0) / (kappa + 1.0)


def gd_iterations(kappa: float, tol: float) -> int:
    """Steps until the worst-case error ratio ``rate^t`` is <= ``tol`` (1 step when kappa = 1)."""
    if not 0.0 < tol < 1.0:
        raise ConfigError(f"`tol` must be in (0, 1); got {tol!r}.")
    rate = gd_rate(kappa)
    if rate == 0.0:
        return 1
    return int(math.ceil(math.log(tol) / math.log(rate) - 1e-12))


def optimal_step(mu: float, lipschitz: float) -> float:
    """The fixed GD step ``2 / (mu + L)`` that minimizes the worst-case contraction."""
    if not (mu > 0 and lipschitz >= mu):
        raise ConfigError(f"need 0 < `mu` <= `lipschitz`; got mu={mu!r}, lipschitz={lipschitz!r}.")
    return 2.0 / (mu + lipschitz)


def eos_threshold(lr: float, momentum: float = 0.0) -> float:
    """Largest curvature GD (heavy ball with ``momentum``) at step ``lr`` is linearly stable for."""
    if not lr > 0:
        raise ConfigError(f"`lr` must be > 0; got {lr!r}.")
    if not 0.0 <= momentum < 1.0:
        raise ConfigError(f"`momentum` must be in [0, 1); got {momentum!r}.")
    return (2.0 + 2.0 * momentum) / lr
