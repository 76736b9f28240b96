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
