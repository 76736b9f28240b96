"""The lens contract: what every lens module provides and the one way it is run.

A lens separates its *subject* (what it measures: a user's model, loss and data, arrays of
predictions, a table of finished runs, a ``train_fn``) from its *measurement*. Every lens package
``multilens.lenses.<name>`` exports:

* ``Settings``: a frozen dataclass with ``schema_version``, the fields of its default subject, and
  one nested settings dataclass per part (``sharpness: SharpnessSettings | None = ...``; ``None``
  means the part is not run), plus ``for_profile(profile) -> Settings`` ("smoke", "quick", "full");
* ``default_subject(settings, *, seed, runtime) -> Subject``: builds the bundled task;
* ``measure(subject, settings, *, seed, runtime=None) -> LensResult``: the measurement, on any
  subject of the documented type. Each part is a small function returning a :class:`Part` and
  draws its randomness from ``part_seed(seed, lens, part)`` only, so switching one part off never
  changes another part's numbers.

``run_lens(entry, settings, seed)`` is ``measure(default_subject(...))`` plus provenance; the CLI,
the capstone phase and the tests all go through it.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from multilens.errors import ConvergenceWarning
from multilens.provenance import result_provenance
from multilens.results import LensResult, Part
from multilens.seeding import derive_seed

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Runtime:
    """Where a lens runs: executor and store for sweeps, progress, output folder, consumed inputs.

    ``executor`` None means an in-process serial executor; ``store`` None means the lens keeps its
    runs in memory (or a temporary store). ``inputs`` holds the artifacts earlier protocol phases
    produced, by name (what the registry entry declares in ``consumes``).
    """

    executor: Any = None
    store: Any = None
    progress: Progress | None = None
    out_dir: Path | None = None
    inputs: Mapping[str, Any] = field(default_factory=dict)


def part_seed(seed: int, lens: str, part: str) -> int:
    """The seed of one part: its own stream, independent of every other part's."""
    return derive_seed(seed, lens, part)


def run_parts(
    lens: str,
    steps: list[tuple[str, Any, Callable[[Any, int], Part]]],
    seed: int,
) -> tuple[list[Part], list[str]]:
    """Run ``(part_name, part_settings, fn)`` for every part whose settings are not None.

    ``fn(part_settings, part_seed)`` returns a Part. Convergence warnings raised inside a part are
    recorded as notes (and must also show in that part's ``converged`` fields), never swallowed;
    other warnings are re-emitted.
    """
    parts: list[Part] = []
    notes: list[str] = []
    for name, ps, fn in steps:
        if ps is None:
            notes.append(f"part `{name}` not run (switched off in the settings)")
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            parts.append(fn(ps, part_seed(seed, lens, name)))
        for w in caught:
            if issubclass(w.category, ConvergenceWarning):
                notes.append(f"{name}: convergence warning: {w.message}")
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return parts, notes


def finish(
    lens: str,
    parts: list[Part],
    settings: Any,
    seed: int,
    t_start: float,
    *,
    notes: list[str] | tuple[str, ...] = (),
    data: dict[str, Any] | None = None,
) -> LensResult:
    """The LensResult of ``parts`` with its provenance (config hash, seed, code, hardware, time)."""
    prov = result_provenance(settings, seed, time.perf_counter() - t_start)
    return LensResult.from_parts(lens, parts, provenance=prov, notes=tuple(notes), data=data)


def run_lens(entry: Any, settings: Any, seed: int, runtime: Runtime | None = None) -> LensResult:
    """``measure(default_subject(settings), settings)`` for a registry entry, with provenance."""
    runtime = runtime or Runtime()
    t0 = time.perf_counter()
    subject = entry.load("default_subject")(settings, seed=seed, runtime=runtime)
    result = entry.load("measure")(subject, settings, seed=seed, runtime=runtime)
    prov = dict(result.provenance) or result_provenance(settings, seed, 0.0)
    prov["wall_time_s"] = time.perf_counter() - t0
    prov["subject"] = "default"
    return replace(result, provenance=prov)


class NotApplicable(Exception):
    """Raised by a lens's ``from_subject`` when a user's Subject lacks what the lens needs.

    The message is the reason shown in the report ("no `embed` module given", "no labels").
    """
