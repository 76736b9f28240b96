"""What the implicit-bias lens measures: arrays a user can build, and the bundled task.

* :class:`Design`: an under-determined least-squares problem, a design ``x`` (n, d) with n < d
  and targets ``y`` (n,); optionally held-out ``x_test``, ``y_test`` for the risk cost of the
  null-space component (without them that measurement is skipped).
* :class:`Separable`: a linearly separable classification set, ``x`` (n, d) and ``labels`` in
  {-1, 1}; optionally held-out points (for function-space disagreement between optimizers) and a
  known closed-form SVM ``w_svm`` (the bundled planted problems have one) to check the QP against.
* :class:`Subject`: one or more of each (independent instances: the intervals are over them). The
  ``least_squares`` part runs on ``least_squares``, the ``logistic`` part on ``separable``, the
  ``optimizers`` part on ``optimizer_sets`` (``separable`` when None), the ``handoff`` part on
  ``classifier`` (one binary set, separable or not, with held-out points). A part with no data is not run.

``Subject.of(ls=(x, y), separable=(x, labels))`` builds a one-instance subject from plain arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _arr(name: str, a: object, ndim: int) -> np.ndarray:
    out = np.asarray(a, dtype=np.float64)
    if out.ndim != ndim:
        raise ValueError(f"`{name}` must be a {ndim}-d array; got shape {out.shape}.")
    if not np.all(np.isfinite(out)):
        raise ValueError(f"`{name}` has non-finite entries.")
    return out


@dataclass(frozen=True, eq=False)
class Design:
    """Least squares: min ||x theta - y||^2 with n < d (many solutions; GD picks one)."""

    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None

    def __post_init__(self) -> None:
        x, y = _arr("x", self.x, 2), _arr("y", self.y, 1)
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"`y` must have one value per row of `x` ({x.shape[0]}); got {y.shape[0]}.")
        if x.shape[0] >= x.shape[1]:
            raise ValueError(f"`x` must be under-determined (n < d); got shape {x.shape}.")
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)
        if (self.x_test is None) != (self.y_test is None):
            raise ValueError("give both `x_test` and `y_test`, or neither.")
        if self.x_test is not None:
            xt, yt = _arr("x_test", self.x_test, 2), _arr("y_test", self.y_test, 1)
            if xt.shape[1] != x.shape[1] or yt.shape[0] != xt.shape[0]:
                raise ValueError(f"`x_test` must be (m, {x.shape[1]}) with one `y_test` per row; got {xt.shape}.")
            object.__setattr__(self, "x_test", xt)
            object.__setattr__(self, "y_test", yt)


@dataclass(frozen=True, eq=False)
class Separable:
    """A linearly separable set: ``labels`` in {-1, 1}; the logistic loss has no finite minimiser."""

    x: np.ndarray
    labels: np.ndarray
    x_test: np.ndarray | None = None
    labels_test: np.ndarray | None = None
    w_svm: np.ndarray | None = None  # a known hard-margin SVM solution (closed form), if any

    def __post_init__(self) -> None:
        x, y = _arr("x", self.x, 2), _arr("labels", self.labels, 1)
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"`labels` must have one value per row of `x` ({x.shape[0]}); got {y.shape[0]}.")
        if not np.all(np.isin(y, (-1.0, 1.0))):
            raise ValueError("`labels` must be -1 or 1.")
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "labels", y)
        if (self.x_test is None) != (self.labels_test is None):
            raise ValueError("give both `x_test` and `labels_test`, or neither.")
        if self.x_test is not None:
            xt, yt = _arr("x_test", self.x_test, 2), _arr("labels_test", self.labels_test, 1)
            if xt.shape[1] != x.shape[1] or yt.shape[0] != xt.shape[0]:
                raise ValueError(f"`x_test` must be (m, {x.shape[1]}) with one label per row; got {xt.shape}.")
            object.__setattr__(self, "x_test", xt)
            object.__setattr__(self, "labels_test", yt)
        if self.w_svm is not None:
            object.__setattr__(self, "w_svm", _arr("w_svm", self.w_svm, 1))

    # The names the experiment modules use.
    @property
    def y(self) -> np.ndarray:
        return self.labels

    @property
    def z(self) -> np.ndarray:
        return self.x * self.labels[:, None]


@dataclass(frozen=True, eq=False)
class Subject:
    """Independent instances per part; see the module docstring."""

    least_squares: tuple[Design, ...] = ()
    separable: tuple[Separable, ...] = ()
    optimizer_sets: tuple[Separable, ...] | None = None
    classifier: Separable | None = None  # the handoff part: a binary set with held-out points
    description: str = field(default="user arrays")

    def __post_init__(self) -> None:
        for name in ("least_squares", "separable", "optimizer_sets"):
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, tuple(v))
        c = self.classifier
        if c is not None and (not isinstance(c, Separable) or c.x_test is None):
            raise ValueError("`classifier` must be a Separable with held-out points (`x_test`, `labels_test`).")

    @property
    def for_optimizers(self) -> tuple[Separable, ...]:
        return self.separable if self.optimizer_sets is None else self.optimizer_sets

    @classmethod
    def of(
        cls,
        ls: tuple[np.ndarray, np.ndarray] | None = None,
        separable: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> Subject:
        """One least-squares design ``(x, y)`` and/or one separable set ``(x, labels)``."""
        return cls(
            least_squares=(Design(*ls),) if ls is not None else (),
            separable=(Separable(*separable),) if separable is not None else (),
        )
