"""Exceptions and warnings raised by multilens.

Every error raised at a public boundary says what was wrong with which input and how to fix it,
in one line, in the scikit-learn style: "`num_probes` must be an int >= 1; got 0."
The CLI turns any :class:`MultilensError` into that one line and exit status 2.
"""

from __future__ import annotations


class MultilensError(Exception):
    """Base class of every error multilens raises on purpose."""


class ConfigError(MultilensError, ValueError):
    """A configuration, policy or argument is invalid (unknown key, wrong type, bad value)."""


class DataError(MultilensError, ValueError):
    """Input data is malformed (missing column, non-numeric cell, NaN, too few rows)."""


class StoreError(MultilensError):
    """The results store is unusable (wrong schema, locked, corrupt)."""


class ConvergenceWarning(UserWarning):
    """An iterative method reached its iteration cap before meeting its tolerance."""


class ExtrapolationWarning(UserWarning):
    """A fit is being evaluated outside the range of the data it was fitted on."""


def check_int(name: str, value: object, minimum: int | None = None) -> int:
    """Validate an integer argument and return it (bools are rejected)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"`{name}` must be an int; got {value!r}.")
    if minimum is not None and value < minimum:
        raise ConfigError(f"`{name}` must be an int >= {minimum}; got {value}.")
    return value


def check_positive(name: str, value: object) -> float:
    """Validate a finite positive real argument and return it as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"`{name}` must be a positive number; got {value!r}.")
    v = float(value)
    if not (v > 0.0) or v == float("inf"):
        raise ConfigError(f"`{name}` must be a finite number > 0; got {value!r}.")
    return v
