"""The one validation module: argument and settings checks with scikit-learn style messages.

Every function returns the validated value or raises :class:`~multilens.errors.ConfigError` whose
one line names the argument, what is wrong and what is expected: "`num_probes` must be an int
>= 1; got 0." Settings dataclasses call these in ``__post_init__`` (invariants checked once, at
construction), so an invalid setting never reaches a computation.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from multilens.errors import ConfigError


def check_int(name: str, value: object, minimum: int | None = None, maximum: int | None = None) -> int:
    """An int (bools rejected) within [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"`{name}` must be an int; got {value!r}.")
    if minimum is not None and value < minimum:
        raise ConfigError(f"`{name}` must be an int >= {minimum}; got {value}.")
    if maximum is not None and value > maximum:
        raise ConfigError(f"`{name}` must be an int <= {maximum}; got {value}.")
    return value


def check_number(name: str, value: object) -> float:
    """A finite real number (bools rejected)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise ConfigError(f"`{name}` must be a finite number; got {value!r}.")
    return float(value)


def check_positive(name: str, value: object) -> float:
    """A finite real number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"`{name}` must be a positive number; got {value!r}.")
    v = float(value)
    if not (v > 0.0) or v == float("inf"):
        raise ConfigError(f"`{name}` must be a finite number > 0; got {value!r}.")
    return v


def check_nonnegative(name: str, value: object) -> float:
    """A finite real number >= 0."""
    v = check_number(name, value)
    if v < 0:
        raise ConfigError(f"`{name}` must be a finite number >= 0; got {value!r}.")
    return v


def check_open_unit(name: str, value: object) -> float:
    """A number strictly inside (0, 1): a confidence level, a quantile, a fraction."""
    v = check_number(name, value)
    if not 0.0 < v < 1.0:
        raise ConfigError(f"`{name}` must be in (0, 1); got {value!r}.")
    return v


def check_choice(name: str, value: object, choices: Iterable[Any]) -> Any:
    """One of ``choices``."""
    opts = tuple(choices)
    if value not in opts:
        raise ConfigError(f"`{name}` must be one of {', '.join(map(repr, opts))}; got {value!r}.")
    return value


def check_positive_list(name: str, values: object, *, ints: bool = False, minimum: float | None = None) -> tuple:
    """A non-empty list of numbers > 0 (ints when ``ints``), each >= ``minimum`` when given."""
    if not isinstance(values, (list, tuple)) or not values:
        raise ConfigError(f"`{name}` must be a non-empty list; got {values!r}.")
    out = []
    for i, v in enumerate(values):
        out.append(check_int(f"{name}[{i}]", v, 1) if ints else check_positive(f"{name}[{i}]", v))
        if minimum is not None and out[-1] < minimum:
            raise ConfigError(f"`{name}[{i}]` must be >= {minimum}; got {v!r}.")
    return tuple(out)
