"""Allocation lens: the compute-optimal model the scaling law recommends, trained and compared with the law.

Subject: :class:`Allocation` (or the plain dict the scaling phase hands on as ``scaling.allocation``):
the model width and example count to train (``width``, ``d``), the training recipe (``lr`` and
``recipe = {optimizer, batch_size, schedule, depth, activation}``), the data family
(``FamilySpec.to_dict()``), and, when a law was fitted, its prediction of the loss at that point
(``predicted_loss``, ``predicted_loss_ci``) and the allocations and predictions at the budget times
1.1 and 0.9 (``plus10``, ``minus10``). :func:`default_subject` takes ``runtime.inputs
["scaling.allocation"]`` when an earlier phase produced it; on its own it builds a fixed allocation
from the settings (``width``, ``d``, the recipe; the +-10% budgets change D at fixed width) with no
law prediction, so the agreement checks are not evaluated and say why.

Every training is one run of :mod:`multilens.lenses.allocation.train` (the scaling phase's recipe:
one pass over D fresh examples of the family), sent through ``runtime.executor`` when there is one;
the numbers are the same in process.

Shared step (not a part; always run, seeded from ``part_seed(seed, "allocation", "main")``): the
allocation is trained for ``seeds`` run seeds; the first run's model is saved (safetensors +
spec.json) as the main model, ``allocation.model_path``, the subject of the model-facing lenses.
The second run's model and the first seed's models of the +-10% budgets are saved too and handed on
as ``allocation.perturbed_models`` (``{"another run seed" | "budget x1.1" | "budget x0.9": folder}``):
the protocol recomputes its model-facing decisions on them (recommendation stability, C.20).

Parts:

* ``realised``: the realised held-out loss over the run seeds (Student t interval) against the law's
  prediction interval (``law_prediction_at_optimum``, agreement: the two intervals overlap) and
  against the Bayes predictor (``realised_loss_above_bayes_risk``, bound: Gibbs' inequality, the
  model's CE minus the teacher's CE on the same held-out labels has expectation E[KL] >= 0);
* ``budget_response``: the plus10 and minus10 allocations trained on the same run seeds; the measured
  change L(1.1 C) - L(0.9 C), paired by seed, against the law's predicted change
  (``budget_change_as_predicted``, agreement: the intervals overlap);
* ``generalization``: loss on the model's own training examples against the held-out loss; the gap
  with its interval over seeds (``allocation.gen_gap``; measured for the cross-lens stability check).
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from multilens import plots, stats
from multilens.data.family import FamilySpec
from multilens.errors import ConfigError
from multilens.lenses.allocation import train as T
from multilens.lenses.allocation.model_io import save_main_model
from multilens.lenses.contract import Runtime, finish, part_seed, run_parts
from multilens.models import n_params
from multilens.results import (
    Assumption,
    Check,
    Estimate,
    LensResult,
    Part,
    Recommendation,
    Table,
    check_bound,
    metric_with_interval,
)
from multilens.seeding import derive_seed
from multilens.validation import check_int, check_positive

LENS = "allocation"
INPUT = "scaling.allocation"
OUTPUT = "allocation.model_path"
PERTURBED = "allocation.perturbed_models"


def _check_level(key: str, v: float) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.5 < v < 1.0:
        raise ConfigError(f"`{key}` must be a number in (0.5, 1); got {v!r}.")


# ----------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class RealisedSettings:
    """``level``: the level of the realised loss's interval over run seeds (Student t)."""

    level: float = 0.95

    def __post_init__(self) -> None:
        _check_level("allocation.realised.level", self.level)


@dataclass(frozen=True)
class BudgetResponseSettings:
    """The plus10/minus10 allocations are each trained for ``seeds`` run seeds (shared by the two: paired)."""

    seeds: int = 5  # the change is small (about alpha x the excess loss x 0.2): more seeds than the main runs
    level: float = 0.95

    def __post_init__(self) -> None:
        check_int("allocation.budget_response.seeds", self.seeds, 1)
        _check_level("allocation.budget_response.level", self.level)


@dataclass(frozen=True)
class GeneralizationSettings:
    """The gap between the population loss (on ``n_population`` fresh examples of the family, per run seed) and the
    training loss on the first ``max_train_eval`` of the model's own training examples (0: all of them)."""

    max_train_eval: int = 0
    n_population: int = 32768
    level: float = 0.95

    def __post_init__(self) -> None:
        check_int("allocation.generalization.max_train_eval", self.max_train_eval, 0)
        check_int("allocation.generalization.n_population", self.n_population, 16)
        _check_level("allocation.generalization.level", self.level)


@dataclass(frozen=True)
class Settings:
    """Top level: the allocation trained when no scaling phase handed one on (``width`` x ``depth`` ReLU MLP,
    ``d`` examples, the recipe), ``budget_step`` (the +-budget fraction of the default subject: D is scaled at
    fixed width), ``seeds`` (run seeds of the main allocation) and ``split`` (held-out split: test or val)."""

    schema_version: int = 1
    width: int = 64
    d: int = 20000
    depth: int = 1
    activation: Literal["relu", "tanh", "gelu"] = "relu"
    optimizer: Literal["sgd", "adam"] = "adam"
    lr: float = 1e-2
    batch_size: int = 32
    schedule: Literal["constant", "cosine", "step"] = "cosine"
    budget_step: float = 0.1
    seeds: int = 3
    split: Literal["test", "val"] = "test"
    realised: RealisedSettings | None = RealisedSettings()
    budget_response: BudgetResponseSettings | None = BudgetResponseSettings()
    generalization: GeneralizationSettings | None = GeneralizationSettings()

    def __post_init__(self) -> None:
        check_int("allocation.schema_version", self.schema_version, 1)
        check_int("allocation.width", self.width, 1)
        check_int("allocation.d", self.d, 2)
        check_int("allocation.depth", self.depth, 1)
        check_positive("allocation.lr", self.lr)
        check_int("allocation.batch_size", self.batch_size, 1)
        check_int("allocation.seeds", self.seeds, 1)
        if not 0.0 < self.budget_step < 1.0:
            raise ConfigError(f"`allocation.budget_step` must be in (0, 1); got {self.budget_step!r}.")
        for key, v, ok in (
            ("activation", self.activation, ("relu", "tanh", "gelu")),
            ("optimizer", self.optimizer, ("sgd", "adam")),
            ("schedule", self.schedule, ("constant", "cosine", "step")),
            ("split", self.split, ("test", "val")),
        ):
            if v not in ok:
                raise ConfigError(f"`allocation.{key}` must be one of {', '.join(ok)}; got {v!r}.")

    @classmethod
    def for_profile(cls, profile: str) -> Settings:
        if profile == "quick":
            return cls()
        if profile == "smoke":
            return replace(
                cls(),
                width=8,
                d=512,
                seeds=2,
                budget_response=BudgetResponseSettings(seeds=2),
                generalization=GeneralizationSettings(n_population=4096),
            )
        if profile == "full":
            return replace(cls(), seeds=5, budget_response=BudgetResponseSettings(seeds=8))
        raise ConfigError(f"`profile` must be one of 'smoke', 'quick', 'full'; got {profile!r}.")


# ----------------------------------------------------------------------------------------------- subject
def _ci_pair(v: Any, key: str) -> tuple[float, float] | None:
    if v is None:
        return None
    try:
        lo, hi = (float(v[0]), float(v[1]))
    except (TypeError, ValueError, IndexError, KeyError):
        raise ConfigError(f"`{key}` must be a [low, high] pair; got {v!r}.") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise ConfigError(f"`{key}` must be a finite [low, high] pair with low <= high; got {v!r}.")
    return lo, hi


def _opt_float(v: Any, key: str) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
        raise ConfigError(f"`{key}` must be a finite number; got {v!r}.")
    return float(v)


@dataclass(frozen=True)
class Point:
    """One allocation to train: width, examples, learning rate, and (optionally) the law's prediction there."""

    width: int
    d: int
    lr: float
    budget: float | None = None
    predicted_loss: float | None = None
    predicted_loss_ci: tuple[float, float] | None = None
    at_recipe: float | None = None  # the law at the integer width's N and the rounded D actually trained
    at_recipe_ci: tuple[float, float] | None = None

    @property
    def prediction(self) -> tuple[float | None, tuple[float, float] | None, str]:
        """(value, interval, what) of the prediction the trained model is compared with: the law at the trained
        (N, D) when handed on (``predicted_loss_at_recipe``), else at the optimum (``predicted_loss``)."""
        if self.at_recipe is not None:
            return self.at_recipe, self.at_recipe_ci, "predicted_loss_at_recipe (the law at the trained N and D)"
        return self.predicted_loss, self.predicted_loss_ci, "predicted_loss (the law at N*, D*)"

    @classmethod
    def from_dict(cls, a: dict[str, Any], where: str, lr: float | None = None) -> Point:
        if not isinstance(a, dict):
            raise ConfigError(f"`{where}` must be a table; got {a!r}.")
        for k in ("width", "d"):
            if k not in a:
                raise ConfigError(f"`{where}.{k}` is missing; an allocation needs width and d.")
        check_int(f"{where}.width", a["width"], 1)
        check_int(f"{where}.d", a["d"], 2)
        lr_v = a.get("lr", lr)
        if lr_v is None:
            raise ConfigError(f"`{where}.lr` is missing; an allocation needs its learning rate.")
        check_positive(f"{where}.lr", lr_v)
        return cls(
            int(a["width"]),
            int(a["d"]),
            float(lr_v),
            _opt_float(a.get("budget"), f"{where}.budget"),
            _opt_float(a.get("predicted_loss"), f"{where}.predicted_loss"),
            _ci_pair(a.get("predicted_loss_ci"), f"{where}.predicted_loss_ci"),
            _opt_float(a.get("predicted_loss_at_recipe"), f"{where}.predicted_loss_at_recipe"),
            _ci_pair(a.get("predicted_loss_at_recipe_ci"), f"{where}.predicted_loss_at_recipe_ci"),
        )


@dataclass(frozen=True)
class Allocation:
    """The subject: the main allocation, its +-10% budget neighbours, the recipe and the data family.

    Build it with :meth:`from_dict` from the scaling phase's ``scaling.allocation`` dict (keys: ``width``,
    ``d``, ``lr``, ``recipe`` {optimizer, batch_size, schedule, depth, activation}, ``family``, and optional
    ``budget``, ``predicted_loss``, ``predicted_loss_ci``, ``plus10``/``minus10`` (same fields), ``law``
    {E, A, B, alpha, beta}, ``method``, ``predicted_change_ci`` with ``predicted_change_method``).
    """

    main: Point
    recipe: dict[str, Any]
    family: FamilySpec = field(default_factory=FamilySpec)
    plus: Point | None = None
    minus: Point | None = None
    law: dict[str, float] | None = None
    method: str = ""
    source: str = "hand-built"
    predicted_change_ci: tuple[float, float] | None = None
    predicted_change_method: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, a: dict[str, Any], *, source: str = "hand-built") -> Allocation:
        if isinstance(a, Allocation):
            return a
        if not isinstance(a, dict):
            raise ConfigError(f"`{INPUT}` must be a dict (the scaling phase's allocation); got {type(a).__name__}.")
        recipe = a.get("recipe")
        if not isinstance(recipe, dict):
            raise ConfigError(
                f"`{INPUT}.recipe` must be a table {{optimizer, batch_size, schedule, depth, activation}}."
            )
        missing = [k for k in ("optimizer", "batch_size", "schedule", "depth") if k not in recipe]
        if missing:
            raise ConfigError(f"`{INPUT}.recipe.{missing[0]}` is missing.")
        rec = {
            "optimizer": recipe["optimizer"],
            "batch_size": int(recipe["batch_size"]),
            "schedule": recipe["schedule"],
            "depth": int(recipe["depth"]),
            "activation": recipe.get("activation", "relu"),
        }
        check_int(f"{INPUT}.recipe.depth", rec["depth"], 1)
        check_int(f"{INPUT}.recipe.batch_size", rec["batch_size"], 1)
        fam = a.get("family")
        try:
            family = FamilySpec.from_dict(dict(fam)) if fam is not None else FamilySpec()
        except TypeError as e:
            raise ConfigError(f"`{INPUT}.family` is not a FamilySpec table: {e}.") from None
        main = Point.from_dict(a, INPUT)
        plus = Point.from_dict(a["plus10"], f"{INPUT}.plus10", main.lr) if a.get("plus10") is not None else None
        minus = Point.from_dict(a["minus10"], f"{INPUT}.minus10", main.lr) if a.get("minus10") is not None else None
        law = a.get("law")
        law_f = {k: float(law[k]) for k in ("E", "A", "B", "alpha", "beta") if k in law} if law else None
        known = {"width", "d", "lr", "recipe", "family", "plus10", "minus10", "law", "method", "budget",
                 "predicted_loss", "predicted_loss_ci", "predicted_change_ci", "predicted_change_method",
                 "predicted_loss_at_recipe", "predicted_loss_at_recipe_ci"}  # fmt: skip
        extra = {k: v for k, v in a.items() if k not in known}
        return cls(
            main,
            rec,
            family,
            plus,
            minus,
            law_f if law_f and len(law_f) == 5 else None,
            str(a.get("method", "")),
            source,
            _ci_pair(a.get("predicted_change_ci"), f"{INPUT}.predicted_change_ci"),
            str(a.get("predicted_change_method", "")),
            stats.json_safe(extra),
        )

    def spec(
        self, p: Point, seed: int, split: str, max_train_eval: int = 0, weights: bool = False, n_population: int = 0
    ) -> dict[str, Any]:
        """The JSON spec of one training (see :mod:`multilens.lenses.allocation.train`)."""
        return {
            "width": p.width,
            "depth": self.recipe["depth"],
            "activation": self.recipe["activation"],
            "d": p.d,
            "seed": int(seed),
            "family": self.family.to_dict(),
            "train": {
                "optimizer": self.recipe["optimizer"],
                "lr": p.lr,
                "batch_size": self.recipe["batch_size"],
                "schedule": self.recipe["schedule"],
            },
            "split": split,
            "max_train_eval": int(max_train_eval),
            "n_population": int(n_population),
            "return_weights": bool(weights),
        }

    def n_params(self, p: Point) -> int:
        return n_params(T.mlp_spec({"width": p.width, "depth": self.recipe["depth"],
                                    "activation": self.recipe["activation"]}, self.family))  # fmt: skip

    def law_at(self, p: Point) -> float | None:
        """The law's point value at the trained (N = parameter count, D) (None without a law)."""
        if not self.law:
            return None
        g = self.law
        return g["E"] + g["A"] / self.n_params(p) ** g["alpha"] + g["B"] / p.d ** g["beta"]

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "width": self.main.width,
            "d": self.main.d,
            "N": self.n_params(self.main),
            "lr": self.main.lr,
            "recipe": dict(self.recipe),
            "budget": self.main.budget,
            "method": self.method,
            "plus10": None if self.plus is None else {"width": self.plus.width, "d": self.plus.d},
            "minus10": None if self.minus is None else {"width": self.minus.width, "d": self.minus.d},
            "law": self.law,
        }


def settings_allocation(settings: Settings) -> Allocation:
    """The allocation of the settings (no law): +-budget_step changes D at fixed width (C = 6 N D)."""
    rec = {"optimizer": settings.optimizer, "batch_size": settings.batch_size, "schedule": settings.schedule,
           "depth": settings.depth, "activation": settings.activation}  # fmt: skip
    base = Allocation(Point(settings.width, settings.d, settings.lr), rec)
    n = base.n_params(base.main)
    c = 6.0 * n * settings.d
    f = settings.budget_step
    plus = Point(settings.width, int(round(settings.d * (1 + f))), settings.lr, c * (1 + f))
    minus = Point(settings.width, int(round(settings.d * (1 - f))), settings.lr, c * (1 - f))
    return replace(base, main=replace(base.main, budget=c), plus=plus, minus=minus,
                   method=f"settings defaults (no scaling law): +-{f:g} budget changes D at fixed width",
                   source="settings")  # fmt: skip


def default_subject(settings: Settings, *, seed: int, runtime: Runtime | None = None) -> Allocation:
    """The scaling phase's ``scaling.allocation`` when handed on; else the settings' fixed allocation."""
    inputs = runtime.inputs if runtime is not None else {}
    a = inputs.get(INPUT) if inputs else None
    if a is None:
        return settings_allocation(settings)
    if a.get("ok") is False or a.get("width") is None or a.get("d") is None:
        why = a.get("note") or "no width/d in it"
        return replace(
            settings_allocation(settings), source=f"settings (the scaling phase handed on no allocation: {why})"
        )
    if a.get("family") is None:  # the sweep did not run on the shared family: its law says nothing about it
        keep = {k: v for k, v in a.items() if not k.startswith("predicted") and k not in ("plus10", "minus10", "law")}
        return Allocation.from_dict(
            keep | {"family": FamilySpec().to_dict()},
            source="scaling.allocation (sweep not on the shared family: law predictions dropped)",
        )
    return Allocation.from_dict(dict(a), source="scaling.allocation (the scaling phase)")


# ----------------------------------------------------------------------------------------------- running
def run_trainings(
    specs: list[dict[str, Any]], runtime: Runtime | None
) -> tuple[list[dict[str, Any] | None], list[str]]:
    """Results of :func:`train.train_one` on every spec, in order (None for a failed run), and the errors.

    Through ``runtime.executor`` when there is one; otherwise in this process with one torch thread
    (the workers' setting), so the numbers are the same either way.
    """
    from multilens.experiments.executors import execute_task

    out: list[dict[str, Any] | None] = [None] * len(specs)
    errors: list[str] = []
    ex = runtime.executor if runtime is not None else None
    progress = runtime.progress if runtime is not None else None
    it = (
        ex.map_unordered(T.TASK, specs)
        if ex is not None
        else ((i, execute_task(T.TASK, s)) for i, s in enumerate(specs))
    )
    done = 0
    for i, res in it:
        done += 1
        if res.get("ok"):
            out[i] = res["result"]
        else:
            errors.append(f"training {i}: {str(res.get('error', '')).splitlines()[0]}")
        if progress is not None:
            progress("allocation", done, len(specs))
    return out, errors


def _loss(r: dict[str, Any] | None, key: str = "test_loss") -> float:
    v = None if r is None else r.get(key)
    return float(v) if v is not None else math.nan


def model_folder(runtime: Runtime | None, spec: dict[str, Any]) -> Path:
    """``<out_dir>/main_model/<key>`` (a temp folder instead of out_dir when there is none).

    ``key`` is a hash of the training spec, which fixes the weights bit for bit: the same spec gives the same
    path (reproducible results) and another model another path (so a later phase's cache, keyed by the path it
    reads, never serves results of a different model).
    """
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    if runtime is not None and runtime.out_dir is not None:
        return Path(runtime.out_dir).resolve() / "main_model" / key
    return Path(tempfile.gettempdir()) / "multilens-main-models" / key


@dataclass(frozen=True)
class MainRuns:
    """The shared step: the main allocation trained for every run seed, and the saved seed-0 model.

    ``alt_path``: the seed-1 run's model, saved too (another training sample and initialisation: the
    protocol's seed perturbation of the model-facing decisions); None with one run seed or a failed run.
    """

    seeds: tuple[int, ...]
    runs: tuple[dict[str, Any] | None, ...]
    errors: tuple[str, ...]
    model_path: str
    spec0: dict[str, Any]
    alt_path: str | None = None


def save_run_model(subject: Allocation, spec: dict[str, Any], run: dict[str, Any], settings: Settings,
                   runtime: Runtime | None) -> str:  # fmt: skip
    """Save the model of one training ``run`` (its ``spec`` asked for the weights, which are popped from ``run``)
    into its :func:`model_folder`; return the folder."""
    from multilens.lenses.allocation.train import weights_from_json
    from multilens.models import build_mlp

    mspec = T.mlp_spec(spec, subject.family)
    model = build_mlp(mspec, seed=0)
    model.load_state_dict(weights_from_json(run.pop("weights")))
    # What fixes the weights bit for bit (the evaluation split and train-loss subset do not).
    key = {k: v for k, v in spec.items() if k not in ("split", "max_train_eval", "n_population", "return_weights")}
    folder = model_folder(runtime, key)
    meta = {
        "mlp": asdict(mspec) | {"widths": list(mspec.widths)},
        "family": subject.family.to_dict(),
        "recipe": dict(subject.recipe) | {"lr": spec["train"]["lr"]},
        "width": spec["width"],
        "d": spec["d"],
        "seed": spec["seed"],
        "split": settings.split,
        "allocation_source": subject.source,
        "train_spec": key,
    }
    save_main_model(folder, model, meta)
    return str(folder)


def train_main(subject: Allocation, settings: Settings, seed: int, runtime: Runtime | None) -> MainRuns:
    s0 = part_seed(seed, LENS, "main")
    seeds = tuple(derive_seed(s0, "run", i) for i in range(settings.seeds))
    g = settings.generalization
    m, n_pop = (g.max_train_eval, g.n_population) if g is not None else (0, 0)
    specs = [subject.spec(subject.main, s, settings.split, m, i <= 1, n_pop) for i, s in enumerate(seeds)]
    runs, errors = run_trainings(specs, runtime)
    if runs[0] is None or runs[0].get("weights") is None:
        raise RuntimeError(f"the main model (run seed {seeds[0]}) failed to train: {errors[0] if errors else ''}")
    if runs[0]["diverged"]:
        raise RuntimeError(
            f"the main model (run seed {seeds[0]}) diverged at lr {subject.main.lr:g}; nothing to hand on"
        )
    path = save_run_model(subject, specs[0], runs[0], settings, runtime)
    alt = None
    if len(runs) > 1 and runs[1] is not None and runs[1].get("weights") is not None and not runs[1]["diverged"]:
        alt = save_run_model(subject, specs[1], runs[1], settings, runtime)
    for r in runs:
        if r is not None:
            r.pop("weights", None)
    return MainRuns(seeds, tuple(runs), tuple(errors), path, dict(specs[0]) | {"return_weights": False}, alt)


# ----------------------------------------------------------------------------------------------- checks
def check_overlap(
    name: str,
    measured: tuple[float, float] | None,
    predicted: tuple[float, float] | None,
    *,
    what: str,
    unavailable: str,
    severity: str = "error",
) -> Check:
    """Agreement: the measured interval and the prediction interval overlap."""
    crit = f"the {what}'s measured 95% interval and the law's prediction interval overlap"
    if measured is None or predicted is None or not all(math.isfinite(v) for v in (*measured, *predicted)):
        return Check(name, None, reason=f"{what}: not evaluated: {unavailable}", severity=severity, kind="agreement",
                     criterion=crit)  # fmt: skip
    (a, b), (c, d) = measured, predicted
    ok = a <= d and c <= b
    gap = 0.0 if ok else (c - b if c > b else a - d)
    reason = f"{what}: measured [{a:.5g}, {b:.5g}] and predicted [{c:.5g}, {d:.5g}] " + (
        "overlap" if ok else f"are disjoint (gap {gap:.3g})"
    )
    return Check(name, bool(ok), (a + b) / 2, (c + d) / 2, None, reason, severity, kind="agreement", criterion=crit)


def _interval(ci: stats.Interval) -> tuple[float, float] | None:
    return (ci.low, ci.high) if ci.ok else None


def _pred_estimate(name: str, value: float, ci: tuple[float, float] | None, note: str) -> Estimate:
    if ci is not None:
        return Estimate(name, value, ci[0], ci[1], method="the scaling phase's prediction interval (input)",
                        note=note)  # fmt: skip
    return Estimate(name, value, note=note, no_interval_reason="the scaling phase handed on no prediction interval")


# ----------------------------------------------------------------------------------------------- parts
def realised_part(subject: Allocation, main: MainRuns, ps: RealisedSettings, *, seed: int) -> Part:
    losses = [_loss(r) for r in main.runs]
    accs = [_loss(r, "test_accuracy") for r in main.runs]
    ci = stats.mean_ci(losses, ps.level)
    est_real = ci.to_estimate("realised_loss", note=f"held-out CE on the family's fixed {main.spec0['split']} split")
    ests = [est_real, stats.mean_ci(accs, ps.level).to_estimate("realised_accuracy")]
    metrics = metric_with_interval("allocation.realised_loss", est_real)
    p = subject.main
    checks: list[Check] = []
    if p.predicted_loss is not None:
        note = f"the law's prediction at the compute-optimal N*, D* ({subject.method})"
        e_pred = _pred_estimate("predicted_loss", p.predicted_loss, p.predicted_loss_ci, note)
        ests.append(e_pred)
        metrics |= metric_with_interval("allocation.predicted_loss", e_pred)
    if p.at_recipe is not None:
        note = f"the law's prediction at the trained width's N = {subject.n_params(p)} and D = {p.d}"
        e_rec = _pred_estimate("predicted_loss_at_recipe", p.at_recipe, p.at_recipe_ci, note)
        ests.append(e_rec)
        metrics |= metric_with_interval("allocation.predicted_loss_at_recipe", e_rec)
    pv, pci, pwhat = p.prediction
    law_val = subject.law_at(p)
    if law_val is not None:
        note = f"E + A/N^alpha + B/D^beta at the trained N = {subject.n_params(p)} parameters, D = {p.d}"
        why = "point value of the handed-on law (no covariance handed on)"
        ests.append(Estimate("law_at_trained_size", law_val, note=note, no_interval_reason=why))
    pred_int = pci or ((pv, pv) if pv is not None else None)
    unavailable = (
        "no law prediction in the subject (the allocation was built from the settings, not by a scaling phase)"
        if pv is None
        else f"the realised loss has no interval ({ci.reason})"
    )
    chk = check_overlap("law_prediction_at_optimum", _interval(ci), pred_int, what="loss at the allocation",
                        unavailable=unavailable)  # fmt: skip
    checks.append(replace(chk, reason=f"{chk.reason}; prediction: {pwhat}") if pv is not None else chk)
    # Gibbs: E[CE(q(x), y) | x] = H(p(.|x)) + KL(p(.|x) || q(x)) >= the Bayes predictor's E[CE(p(x), y) | x]. Paired
    # on the same labels, the per-example excess CE(model) - CE(teacher) has mean E[KL] >= 0 and no shared label noise.
    ex = [_loss(r, "excess_over_bayes") for r in main.runs]
    sds = [r["excess_over_bayes_sd"] for r in main.runs if r and r.get("excess_over_bayes_sd") is not None]
    n_test = next((r["n_test"] for r in main.runs if r), 0)
    what = "held-out CE of the model - CE of the Bayes predictor (the teacher) on the same labels"
    e_ex = _with_split_error("excess_over_bayes", stats.mean_ci(ex, ps.level), sds, n_test, what)
    ests.append(e_ex)
    hi = e_ex.ci_high if e_ex.ci_high is not None else e_ex.value
    checks.append(
        check_bound(
            "realised_loss_above_bayes_risk",
            hi,
            0.0,
            direction=">=",
            what="upper end of the interval of (realised CE - the Bayes predictor's CE on the same labels)",
        )  # fmt: skip
    )
    rows = [[s, r["N"] if r else None, r["d"] if r else None, _loss(r), _loss(r, "test_accuracy"),
             r["steps"] if r else None] for s, r in zip(main.seeds, main.runs)]  # fmt: skip
    rows = [[x if not isinstance(x, float) or math.isfinite(x) else None for x in row] for row in rows]
    cols = ["run seed", "N (parameters)", "D", "held-out loss", "held-out accuracy", "steps"]
    table = Table("allocation.runs", "The allocation trained once per run seed", cols, rows)
    assumptions = [
        Assumption(
            "the L(N, D) law fitted on the scaling sweep (same family, recipe and held-out split) predicts the loss "
            "at the allocation it recommends",
            "C.20 hand-off scaling -> allocation (Hoffmann et al. 2022, Approach 3)",
            checked_by=("law_prediction_at_optimum",),
        )
    ]
    recs = []
    if ci.ok:
        recs.append(
            Recommendation(
                f"Train width {p.width} on D = {p.d} examples: the realised held-out loss is {ci.estimate:.4g} "
                f"[{ci.low:.4g}, {ci.high:.4g}], consistent with the law's prediction.",
                rests_on=("law_prediction_at_optimum",),
            )
        )
    traces = [plots.errorbar_trace([1.0], [ci.estimate], [ci.low], [ci.high], "realised (mean over seeds)")]
    if pv is not None:
        lo, hi = pred_int
        traces.append(plots.errorbar_trace([1.0], [pv], [lo], [hi], "law's prediction",
                                           color=plots.PALETTE[1]))  # fmt: skip
    fig = plots.figure("allocation.realised", "Loss at the allocation: realised vs the law", traces,
                       xlabel="budget / allocation budget", ylabel="held-out cross-entropy",
                       caption="95% intervals: realised over run seeds; predicted as handed on.")  # fmt: skip
    notes = tuple(f"failed training: {e}" for e in main.errors)
    return Part("realised", tuple(ests), tuple(checks), figures=(fig,), tables=(table,),
                assumptions=tuple(assumptions), recommendations=tuple(recs), metrics=metrics, notes=notes)  # fmt: skip


def budget_response_part(
    subject: Allocation,
    ps: BudgetResponseSettings,
    settings: Settings,
    runtime: Runtime | None,
    *,
    seed: int,
    saved: dict[str, str] | None = None,
) -> Part:
    """The +-10% allocations over ``ps.seeds`` paired run seeds; the first seed's two models are saved and their
    folders put in ``saved`` (``budget x1.1``, ``budget x0.9``: the protocol's budget perturbations)."""
    split = settings.split
    if subject.plus is None or subject.minus is None:
        chk = check_overlap("budget_change_as_predicted", None, None, what="loss change L(1.1C) - L(0.9C)",
                            unavailable="the subject has no plus10/minus10 allocations")  # fmt: skip
        return Part("budget_response", checks=(chk,), notes=("no +-10% allocations in the subject",))
    seeds = [derive_seed(seed, "run", i) for i in range(ps.seeds)]
    specs = [
        subject.spec(p, s, split, weights=i == 0) for p in (subject.plus, subject.minus) for i, s in enumerate(seeds)
    ]
    runs, errors = run_trainings(specs, runtime)
    for label, k in (("budget x1.1", 0), ("budget x0.9", len(seeds))):
        r = runs[k]
        if r is not None and r.get("weights") is not None and not r.get("diverged") and saved is not None:
            saved[label] = save_run_model(subject, specs[k], r, settings, runtime)
        if r is not None:
            r.pop("weights", None)
    lp = np.array([_loss(r) for r in runs[: len(seeds)]])
    lm = np.array([_loss(r) for r in runs[len(seeds) :]])
    diff = lp - lm  # paired by run seed: same data stream (nested draws) and order seed
    ci = stats.mean_ci(diff, ps.level)
    est = ci.to_estimate("loss_change_measured", note="L(1.1 C) - L(0.9 C), paired by run seed")
    ests = [est, stats.mean_ci(lp, ps.level).to_estimate("loss_plus10"),
            stats.mean_ci(lm, ps.level).to_estimate("loss_minus10")]  # fmt: skip
    metrics = metric_with_interval("allocation.loss_change_measured", est)
    pp, pm = subject.plus, subject.minus
    pred_int = None
    unavailable = "no law prediction at the +-10% budgets in the subject"
    (vp, cip, wp), (vm, cim, _) = pp.prediction, pm.prediction
    if vp is not None and vm is not None:
        change = vp - vm
        if subject.predicted_change_ci is not None:
            pred_int = subject.predicted_change_ci
            how = subject.predicted_change_method or "the interval handed on by the scaling phase"
        elif cip is not None and cim is not None:
            pred_int = (cip[0] - cim[1], cip[1] - cim[0])
            how = ("difference of the two prediction intervals [lo+ - hi-, hi+ - lo-]: conservative (ignores their "
                   "positive correlation through the one law fit; coverage >= 90% by Bonferroni)")  # fmt: skip
        else:
            pred_int = (change, change)
            how = "point prediction (no prediction intervals handed on)"
        e_pred = Estimate("loss_change_predicted", change, pred_int[0], pred_int[1], method=how,
                          note=f"L(1.1 C) - L(0.9 C) from the law's predictions at both budgets: {wp}")  # fmt: skip
        if pred_int[0] == pred_int[1]:
            e_pred = replace(e_pred, ci_low=None, ci_high=None, no_interval_reason=how)
        ests.append(e_pred)
        metrics |= metric_with_interval("allocation.loss_change_predicted", e_pred)
    elif not ci.ok:
        unavailable = f"the measured change has no interval ({ci.reason})"
    chk = check_overlap("budget_change_as_predicted", _interval(ci), pred_int,
                        what="loss change L(1.1C) - L(0.9C)", unavailable=unavailable)  # fmt: skip
    rows = [[lab, p.width, p.d, p.budget, p.prediction[0], float(np.nanmean(v)) if np.isfinite(v).any() else None]
            for lab, p, v in (("+10%", pp, lp), ("-10%", pm, lm))]  # fmt: skip
    table = Table("allocation.budget_response", "The allocations at 1.1x and 0.9x the budget",
                  ["budget", "width", "D", "C", "predicted loss", "measured loss (mean over seeds)"], rows)  # fmt: skip
    assumption = Assumption(
        "around the optimum the loss responds to a +-10% budget change as the fitted law says (C.20, consistency 10)",
        "Hoffmann et al. 2022; the law handed on by the scaling phase",
        checked_by=("budget_change_as_predicted",),
    )
    cp, cm = stats.mean_ci(lp, ps.level), stats.mean_ci(lm, ps.level)
    xs = [0.9, 1.1]
    traces = [plots.errorbar_trace(xs, [cm.estimate, cp.estimate], [cm.low, cp.low], [cm.high, cp.high],
                                   "measured (mean over seeds)", mode="lines+markers")]  # fmt: skip
    if vp is not None and vm is not None:
        lo = [(c or (v, v))[0] for v, c in ((vm, cim), (vp, cip))]
        hi = [(c or (v, v))[1] for v, c in ((vm, cim), (vp, cip))]
        traces.append(plots.errorbar_trace(xs, [vm, vp], lo, hi, "law's prediction",
                                           mode="lines+markers", color=plots.PALETTE[1]))  # fmt: skip
    fig = plots.figure("allocation.budget_response", "Loss at 0.9x and 1.1x the budget: measured vs the law", traces,
                       xlabel="budget / allocation budget", ylabel="held-out cross-entropy",
                       caption="The measured change is paired by run seed (its interval: estimates).")  # fmt: skip
    notes = tuple(f"failed training: {e}" for e in errors)
    return Part("budget_response", tuple(ests), (chk,), figures=(fig,), tables=(table,), assumptions=(assumption,),
                metrics=metrics, notes=notes)  # fmt: skip


def _with_split_error(name: str, ci: stats.Interval, sds: list[float], n_test: int, note: str) -> Estimate:
    """The seeds' t-interval widened by the fixed held-out split's sampling error (shared by every seed, so it does
    not average out over seeds): t_(k-1) x sqrt(se_seeds^2 + (mean sd over examples)^2 / n_test)."""
    if not (ci.ok and sds and n_test > 1):
        return ci.to_estimate(name, note=note)
    se_split = float(np.mean(sds)) / math.sqrt(n_test)
    se = math.hypot(ci.stderr, se_split)
    q = (ci.high - ci.estimate) / ci.stderr if ci.stderr > 0 else 0.0
    method = f"{ci.method}, standard error combined with the fixed split's ({se_split:.3g} = sd / sqrt({n_test}))"
    return Estimate(name, ci.estimate, ci.estimate - q * se, ci.estimate + q * se, se, ci.level, method, ci.n,
                    note=note, n_dropped=ci.n_dropped)  # fmt: skip


def generalization_part(main: MainRuns, ps: GeneralizationSettings, *, seed: int) -> Part:
    tr = np.array([_loss(r, "train_loss") for r in main.runs])
    pop = np.array([_loss(r, "population_loss") for r in main.runs])
    te = np.array([_loss(r) for r in main.runs])
    gap = pop - tr
    n_eval = next((r["n_train_eval"] for r in main.runs if r), 0)
    ci = stats.mean_ci(gap, ps.level)
    note = (
        f"population loss (on {ps.n_population} fresh examples per run seed) - loss on the model's own first "
        f"{n_eval} training examples (one pass: each was seen once)"
    )
    est = ci.to_estimate("gen_gap", note=note)
    # The same gap against the fixed held-out split, whose sampling error is shared by every seed (added here).
    sds = [r["test_loss_sd"] for r in main.runs if r and r.get("test_loss_sd") is not None]
    n_test = next((r["n_test"] for r in main.runs if r), 0)
    e_split = _with_split_error("gen_gap_heldout_split", stats.mean_ci(te - tr, ps.level), sds, n_test,
                                f"fixed {main.spec0['split']} split loss - own training loss")  # fmt: skip
    ests = [est, e_split, stats.mean_ci(tr, ps.level).to_estimate("train_loss"),
            stats.mean_ci(pop, ps.level).to_estimate("population_loss")]  # fmt: skip
    metrics = metric_with_interval("allocation.gen_gap", est)
    return Part("generalization", tuple(ests), (), metrics=metrics)


def measure(subject: Allocation | dict[str, Any], settings: Settings, *, seed: int,
            runtime: Runtime | None = None) -> LensResult:  # fmt: skip
    t0 = time.perf_counter()
    subject = Allocation.from_dict(subject) if not isinstance(subject, Allocation) else subject
    main = train_main(subject, settings, seed, runtime)
    saved: dict[str, str] = {}
    parts, notes = run_parts(
        LENS,
        [
            ("realised", settings.realised, lambda ps, s: realised_part(subject, main, ps, seed=s)),
            ("budget_response", settings.budget_response,
             lambda ps, s: budget_response_part(subject, ps, settings, runtime, seed=s, saved=saved)),
            ("generalization", settings.generalization, lambda ps, s: generalization_part(main, ps, seed=s)),
        ],
        seed,
    )  # fmt: skip
    notes.insert(0, f"subject: {subject.source}; main model saved to {main.model_path} (run seed {main.seeds[0]})")
    data = {"subject": subject.describe(), "main_model": {"path": main.model_path, "train_spec": main.spec0}}
    # The perturbed models (another run seed; the budget x1.1 and x0.9 allocations), each trained like the main one:
    # the protocol recomputes the model-facing decisions on them (recommendation stability).
    perturbed = ({"another run seed": main.alt_path} if main.alt_path else {}) | saved
    data["perturbed_models"] = perturbed
    result = finish(LENS, parts, settings, seed, t0, notes=notes, data=stats.json_safe(data))
    return replace(result, outputs=dict(result.outputs) | {OUTPUT: main.model_path, PERTURBED: perturbed})
