"""Implicit-bias lens: GD's pseudoinverse limit, the SVM direction of separable logistic regression,
and optimizers compared at matched budgets (seed theorem at line 152; worked examples 2 and 4;
exercises B.1, B.11, C.2).

Subject (:class:`Subject`): arrays. One or more under-determined least-squares designs
:class:`Design` ``(x, y)`` (optionally with held-out ``x_test, y_test``), and one or more linearly
separable sets :class:`Separable` ``(x, labels in {-1, 1})`` (optionally with held-out points and
a known closed-form SVM). ``Subject.of(ls=(x, y), separable=(x, labels))`` wraps one of each.
The bundled subject (:func:`default_subject`) draws ``n_instances`` Gaussian designs, planted
separable problems with a closed-form SVM and teacher-labelled sets with held-out points.

Parts: ``least_squares``, ``logistic``, ``optimizers``, ``handoff`` (settings tables of the same names).
``handoff`` trains a linear classifier by GD on a binary task (the bundled one: the protocol's
shared data family) and hands it on as ``implicit_bias.linear_classifier`` with the fraction of
held-out normalised l-inf margins above eps (``implicit_bias.margin_fraction_above_eps``), which
the robustness lens's attack must reproduce (consistency 6).

    >>> from multilens.lenses import implicit_bias as ib
    >>> s = ib.Settings.for_profile("smoke")
    >>> r = ib.measure(ib.Subject.of(ls=(x, y), separable=(xs, labels)), s, seed=0)
"""

from __future__ import annotations

import time

import numpy as np

from multilens.data.family import FamilySpec
from multilens.lenses.contract import Runtime, finish, run_parts
from multilens.lenses.implicit_bias import least_squares as _ls
from multilens.lenses.implicit_bias import logistic as _lg
from multilens.lenses.implicit_bias import optimizers as _op
from multilens.lenses.implicit_bias.handoff import handoff_part
from multilens.lenses.implicit_bias.lens import LENS, least_squares_part, logistic_part, optimizers_part
from multilens.lenses.implicit_bias.settings import (
    HandoffSettings,
    LeastSquaresSettings,
    LogisticSettings,
    OptimizersSettings,
    Settings,
)
from multilens.lenses.implicit_bias.subject import Design, Separable, Subject
from multilens.results import LensResult
from multilens.seeding import derive_seed

__all__ = [
    "Design",
    "HandoffSettings",
    "LeastSquaresSettings",
    "LogisticSettings",
    "OptimizersSettings",
    "Separable",
    "Settings",
    "Subject",
    "default_subject",
    "measure",
]


def default_subject(settings: Settings, *, seed: int, runtime: Runtime | None = None) -> Subject:
    """``n_instances`` independent instances of the bundled problems of every part that is on."""
    del runtime  # the bundled task consumes nothing from earlier phases
    k = settings.n_instances

    def s(part: str, i: int) -> int:
        return derive_seed(seed, LENS, "subject", part, i)

    designs: tuple[Design, ...] = ()
    if (p := settings.least_squares) is not None:
        probs = [_ls.make_problem(p.n, p.d, p.noise, p.n_test, s("least_squares", i)) for i in range(k)]
        designs = tuple(Design(q.x, q.y, q.x_test, q.y_test) for q in probs)
    separable: tuple[Separable, ...] = ()
    if (q := settings.logistic) is not None:
        planted = [_lg.planted_separable(q.n, q.d, q.margin, s("logistic", i)) for i in range(k)]
        separable = tuple(Separable(pp.x, pp.y, w_svm=pp.w_hat) for pp in planted)
    opt_sets: tuple[Separable, ...] = ()
    if (o := settings.optimizers) is not None:
        teach = [_op.make_teacher_problem(o.n, o.d, o.margin, o.n_test, s("optimizers", i)) for i in range(k)]
        opt_sets = tuple(Separable(t.x, t.y, t.x_test, t.y_test) for t in teach)
    classifier = None
    if (h := settings.handoff) is not None:
        fam = FamilySpec()
        x, lab = fam.binary(h.n_train, derive_seed(seed, LENS, "subject", "handoff"))
        xt, yt = fam.test()
        xt, yt = xt[: h.n_test].double().numpy(), np.where(yt[: h.n_test].numpy() == 0, -1.0, 1.0)
        classifier = Separable(x, lab, xt, yt)
    return Subject(
        designs,
        separable,
        opt_sets,
        classifier,
        description="bundled: Gaussian designs, planted and teacher sets, the shared family (binary)",
    )


def measure(subject: Subject, settings: Settings, *, seed: int, runtime: Runtime | None = None) -> LensResult:
    """Run every part that is on (and has data in ``subject``) and assemble the lens result."""
    del runtime
    t0 = time.perf_counter()
    lvl = settings.ci_level
    opt_sets = subject.for_optimizers
    skipped = []
    for name, data in (("least_squares", subject.least_squares), ("logistic", subject.separable),
                       ("optimizers", opt_sets), ("handoff", subject.classifier)):  # fmt: skip
        if getattr(settings, name) is not None and not data:
            skipped.append(f"part `{name}` not run: the subject has no data for it")
    steps = [
        ("least_squares", settings.least_squares if subject.least_squares else None,
         lambda ps, sd: least_squares_part(subject.least_squares, ps, lvl, seed=sd)),
        ("logistic", settings.logistic if subject.separable else None,
         lambda ps, sd: logistic_part(subject.separable, ps, lvl, seed=sd)),
        ("optimizers", settings.optimizers if opt_sets else None,
         lambda ps, sd: optimizers_part(opt_sets, ps, lvl, seed=sd)),
        ("handoff", settings.handoff if subject.classifier is not None else None,
         lambda ps, sd: handoff_part(subject.classifier, ps, lvl, seed=sd)),
    ]  # fmt: skip
    parts, notes = run_parts(LENS, steps, seed)
    notes = [n for n in notes if not any(n.startswith(f"part `{s.split('`')[1]}`") for s in skipped)] + skipped
    return finish(LENS, parts, settings, seed, t0, notes=notes, data={"subject": subject.description})
