"""Scaling-law input data: one row per training run (N parameters, D tokens/examples, final loss).

Users bring their own runs as a CSV with columns ``N,D,loss`` or ``N,C,loss`` (then
``D = C / (6 N)``, the usual transformer FLOP count C = 6ND of Kaplan et al. 2020 and Hoffmann
et al. 2022). Extra columns (seed, run id, ...) are allowed and ignored. Every malformed input
raises :class:`multilens.errors.DataError` with one line that names the file, the column or row,
and the fix.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from multilens.errors import ConfigError, DataError
from multilens.results import SCHEMA_VERSION

# L(N, D) = E + A/N^alpha + B/D^beta has five parameters: fewer rows cannot identify it.
MIN_POINTS_CHINCHILLA = 5
# L(C) = A*C^-alpha + L_inf has three.
MIN_POINTS_COMPUTE = 3
FLOPS_PER_PARAM_TOKEN = 6.0  # C = 6 N D


def _readonly(x: np.ndarray) -> np.ndarray:
    x = np.array(x, dtype=np.float64)  # a private copy: callers can never mutate a result
    x.setflags(write=False)
    return x


@dataclass(frozen=True, eq=False)
class ScalingData:
    """Training runs for a scaling-law fit: arrays ``N``, ``D``, ``loss`` of equal length.

    ``compute`` is 6ND. Invariants (finite, > 0, equal lengths) are checked once at construction.
    """

    N: np.ndarray
    D: np.ndarray
    loss: np.ndarray
    source: str = ""
    schema_version: int = field(default=SCHEMA_VERSION)

    def __post_init__(self) -> None:
        arrays = {}
        for name in ("N", "D", "loss"):
            try:
                a = np.asarray(getattr(self, name), dtype=np.float64)
            except (TypeError, ValueError):
                raise DataError(f"`{name}` must be an array of numbers; got {getattr(self, name)!r}.") from None
            if a.ndim != 1:
                raise DataError(f"`{name}` must be one-dimensional; got shape {a.shape}.")
            arrays[name] = a
        n = len(arrays["N"])
        for name, a in arrays.items():
            if len(a) != n:
                raise DataError(f"`N`, `D` and `loss` must have the same length; got {n} and {len(a)} for `{name}`.")
            bad = np.flatnonzero(~np.isfinite(a))
            if bad.size:
                raise DataError(f"`{name}`[{bad[0]}] is {a[bad[0]]}; every value must be finite.")
            bad = np.flatnonzero(a <= 0)
            if bad.size:
                raise DataError(f"`{name}`[{bad[0]}] is {a[bad[0]]:g}; every value must be > 0.")
        for name, a in arrays.items():
            object.__setattr__(self, name, _readonly(a))

    @property
    def n_points(self) -> int:
        return int(len(self.loss))

    @property
    def compute(self) -> np.ndarray:
        """Training compute C = 6ND (FLOPs)."""
        return FLOPS_PER_PARAM_TOKEN * self.N * self.D

    def subset(self, rows: np.ndarray) -> ScalingData:
        """The runs at integer positions ``rows`` (repeats allowed: bootstrap resamples)."""
        rows = np.asarray(rows, dtype=np.intp)
        return ScalingData(self.N[rows], self.D[rows], self.loss[rows], source=self.source)

    def to_dict(self) -> dict:
        return {
            "schema_version": self.schema_version,
            "source": self.source,
            "N": self.N.tolist(),
            "D": self.D.tolist(),
            "loss": self.loss.tolist(),
        }


def _fail(path: Path, msg: str) -> DataError:
    return DataError(f"scaling CSV `{path}`: {msg}")


def load_scaling_csv(path: str | Path, *, min_points: int = MIN_POINTS_CHINCHILLA) -> ScalingData:
    """Read training runs from a CSV with columns ``N,D,loss`` or ``N,C,loss``.

    Column names are matched case-insensitively after stripping spaces. With a ``C`` column
    (and no ``D``), ``D = C / (6 N)``. Extra columns are ignored. ``min_points`` is the number of
    rows the intended fit needs (5 for L(N, D), 3 for L(C)).

    Raises :class:`DataError` (one line naming the column or row and the fix) for: a missing or
    empty file, a missing column, a ragged row, a non-numeric cell, a NaN/inf cell, a
    non-positive N, D, C or loss, and fewer rows than ``min_points``.
    """
    if isinstance(min_points, bool) or not isinstance(min_points, int) or min_points < 1:
        raise ConfigError(f"`min_points` must be an int >= 1; got {min_points!r}.")
    p = Path(path)
    if not p.is_file():
        raise _fail(p, "file does not exist; pass the path of a CSV file with header N,D,loss (or N,C,loss).")
    try:
        text = p.read_text(encoding="utf-8-sig")  # -sig: spreadsheets often prepend a BOM
    except UnicodeDecodeError:
        raise _fail(p, "is not UTF-8 text; save it as a UTF-8 CSV.") from None
    rows = [r for r in csv.reader(text.splitlines()) if any(c.strip() for c in r)]
    if not rows:
        raise _fail(
            p, f"file is empty; it needs a header row N,D,loss (or N,C,loss) and at least {min_points} data rows."
        )
    header = [h.strip() for h in rows[0]]
    lower = [h.lower() for h in header]
    index: dict[str, int] = {}
    for want in ("n", "d", "c", "loss"):
        hits = [i for i, h in enumerate(lower) if h == want]
        if len(hits) > 1:
            raise _fail(p, f"column `{header[hits[0]]}` appears {len(hits)} times; keep one.")
        if hits:
            index[want] = hits[0]
    cols = ",".join(header)
    if "n" not in index:
        raise _fail(p, f"missing column `N` (parameter count); header is `{cols}`; add a column N.")
    if "loss" not in index:
        raise _fail(p, f"missing column `loss` (final loss of each run); header is `{cols}`; add a column loss.")
    if "d" not in index and "c" not in index:
        raise _fail(
            p,
            f"missing column `D` (training tokens) or `C` (compute, FLOPs = 6ND); header is `{cols}`; add one of them.",
        )
    use_d = "d" in index  # D is measured directly; C would only be converted to it
    keys = ("n", "d" if use_d else "c", "loss")
    values: dict[str, list[float]] = {k: [] for k in keys}
    for r, row in enumerate(rows[1:], start=1):
        line = r + 1  # the header is line 1
        if len(row) != len(header):
            raise _fail(
                p,
                f"row {r} (line {line}) has {len(row)} cells but the header has {len(header)}; "
                f"make every row have {len(header)} comma-separated cells.",
            )
        for k in keys:
            name = header[index[k]]
            cell = row[index[k]].strip()
            try:
                v = float(cell)
            except ValueError:
                raise _fail(
                    p,
                    f"row {r} (line {line}), column `{name}`: {cell!r} is not a number; "
                    "write a plain number such as 1.5e9.",
                ) from None
            if not math.isfinite(v):
                raise _fail(
                    p, f"row {r} (line {line}), column `{name}` is {cell!r}; every value must be a finite number."
                )
            if v <= 0:
                raise _fail(p, f"row {r} (line {line}), column `{name}` is {cell}; N, D, C and loss must be > 0.")
            values[k].append(v)
    n_rows = len(values["n"])
    if n_rows < min_points:
        raise _fail(
            p,
            f"has {n_rows} data rows but the fit has {min_points} parameters; "
            f"add runs until there are at least {min_points} rows.",
        )
    N = np.array(values["n"])
    D = np.array(values["d"]) if use_d else np.array(values["c"]) / (FLOPS_PER_PARAM_TOKEN * N)
    return ScalingData(N, D, np.array(values["loss"]), source=str(p))
