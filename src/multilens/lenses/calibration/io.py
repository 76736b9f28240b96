"""Reading anyone's predictions from a CSV or .npz file, strictly, for ``multilens calibration``.

* CSV: a header with a ``label`` column and either ``p_<class>`` probability columns or
  ``logit_<class>`` columns (not both). When every ``<class>`` is an integer 0..K-1 the labels
  are those integers; otherwise a label must equal one of the ``<class>`` names. Row numbers in
  errors count data rows from 0 and give the file line (the header is line 1).
* .npz: ``labels`` and either ``probs`` or ``logits`` (n, K); 1-D ``probs`` are binary P(y = 1).

Every problem raises :class:`~multilens.errors.DataError` with one line naming the row or
column: missing columns, non-numeric or NaN cells, rows not summing to 1, labels out of range.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from multilens.errors import DataError
from multilens.lenses.calibration.metrics import PROB_SUM_TOL, as_probs


@dataclass(frozen=True)
class PredictionFile:
    labels: np.ndarray  # (n,) int64 in [0, K)
    probs: np.ndarray | None  # (n, K) float64, rows sum to 1
    logits: np.ndarray | None  # (n, K) float64
    classes: tuple[str, ...]
    path: str

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])


def _class_map(names: list[str]) -> dict[str, int]:
    return {name: k for k, name in enumerate(names)}


def read_csv(path: Path) -> PredictionFile:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"`{path}` is not UTF-8 text; save the CSV as UTF-8.") from None
    rows = list(csv.reader(text.splitlines()))
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise DataError(f"`{path}` is empty; it needs a header with `label` and p_<class> or logit_<class> columns.")
    header = [h.strip() for h in rows[0]]
    if "label" not in header:
        raise DataError(f"`{path}`: missing column `label` (header: {', '.join(header)}).")
    pcols = [i for i, h in enumerate(header) if h.startswith("p_") and len(h) > 2]
    lcols = [i for i, h in enumerate(header) if h.startswith("logit_") and len(h) > 6]
    if pcols and lcols:
        raise DataError(f"`{path}`: give either p_<class> or logit_<class> columns, not both.")
    cols = pcols or lcols
    if len(cols) < 2:
        raise DataError(
            f"`{path}`: missing class columns; need at least two `p_<class>` or `logit_<class>` columns "
            f"(header: {', '.join(header)})."
        )
    prefix = "p_" if pcols else "logit_"
    names = [header[i][len(prefix) :] for i in cols]
    if len(set(names)) != len(names):
        raise DataError(f"`{path}`: a class column appears twice ({', '.join(header[i] for i in cols)}).")
    int_classes = all(n.isdigit() for n in names) and sorted(int(n) for n in names) == list(range(len(names)))
    if int_classes:  # columns may come in any order; class k is column p_k
        order = sorted(range(len(cols)), key=lambda j: int(names[j]))
        cols, names = [cols[j] for j in order], [names[j] for j in order]
    cmap = _class_map(names)
    li = header.index("label")
    data = rows[1:]
    if not data:
        raise DataError(f"`{path}` has a header but no rows.")
    n, k = len(data), len(cols)
    vals = np.empty((n, k))
    labels = np.empty(n, np.int64)
    for r, row in enumerate(data):
        line = r + 2
        if len(row) != len(header):
            raise DataError(f"`{path}` row {r} (line {line}): {len(row)} fields, the header has {len(header)}.")
        raw = row[li].strip()
        if int_classes:
            try:
                lab_f = float(raw)
            except ValueError:
                raise DataError(
                    f"`{path}` row {r} (line {line}), column `label`: {raw!r} is not a class label."
                ) from None
            if not math.isfinite(lab_f) or lab_f != round(lab_f) or not 0 <= lab_f < k:
                raise DataError(
                    f"`{path}` row {r} (line {line}), column `label`: {raw!r} is out of range [0, {k - 1}]."
                )
            labels[r] = int(lab_f)
        else:
            if raw not in cmap:
                raise DataError(
                    f"`{path}` row {r} (line {line}), column `label`: {raw!r} is not one of the classes "
                    f"{', '.join(names)}."
                )
            labels[r] = cmap[raw]
        for j, c in enumerate(cols):
            cell = row[c].strip()
            try:
                v = float(cell)
            except ValueError:
                raise DataError(
                    f"`{path}` row {r} (line {line}), column `{header[c]}`: {cell!r} is not a number."
                ) from None
            if not math.isfinite(v):
                raise DataError(f"`{path}` row {r} (line {line}), column `{header[c]}`: {cell!r} is not finite.")
            if prefix == "p_" and not 0.0 <= v <= 1.0:
                raise DataError(
                    f"`{path}` row {r} (line {line}), column `{header[c]}`: {v:g} is not a probability in [0, 1]."
                )
            vals[r, j] = v
        if prefix == "p_":
            s = float(vals[r].sum())
            if abs(s - 1.0) > PROB_SUM_TOL:
                raise DataError(
                    f"`{path}` row {r} (line {line}): p_ columns sum to {s:.6g}, not 1 (tolerance {PROB_SUM_TOL:g})."
                )
    if prefix == "p_":
        return PredictionFile(labels, vals, None, tuple(names), str(path))
    return PredictionFile(labels, None, vals, tuple(names), str(path))


def read_npz(path: Path) -> PredictionFile:
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise DataError(f"`{path}` is not a readable .npz file ({e}).") from None
    if "labels" not in arrays:
        raise DataError(f"`{path}`: missing array `labels` (has: {', '.join(sorted(arrays)) or 'nothing'}).")
    has_p, has_z = "probs" in arrays, "logits" in arrays
    if has_p == has_z:
        raise DataError(
            f"`{path}`: needs exactly one of the arrays `probs` or `logits` (has: {', '.join(sorted(arrays))})."
        )
    y, p = as_probs(arrays["labels"], arrays.get("probs"), arrays.get("logits"))
    k = p.shape[1]
    z = np.asarray(arrays["logits"], np.float64) if has_z else None
    return PredictionFile(y, None if has_z else p, z, tuple(str(i) for i in range(k)), str(path))


def read_predictions(path: str | Path) -> PredictionFile:
    """A CSV or .npz file of labels and probabilities or logits, validated."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"`{p}` does not exist; pass a .csv or .npz file of predictions.")
    if p.suffix.lower() == ".npz":
        return read_npz(p)
    if p.suffix.lower() in (".csv", ".txt"):
        return read_csv(p)
    raise DataError(f"`{p}`: unknown file type `{p.suffix}`; use .csv or .npz.")
