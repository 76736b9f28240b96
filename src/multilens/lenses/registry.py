"""The lens registry: one entry per lens, read by the CLI, the capstone protocol and the tests.

Each entry names the lens package (which exports ``Settings``, ``default_subject`` and ``measure``,
see :mod:`multilens.lenses.contract`), what its subject is, what the lens consumes from earlier
protocol phases (``consumes``: required; ``uses``: optional, passed in ``runtime.inputs`` when an
earlier phase produced it, e.g. the main model the scaling phase recommends) and produces for later
ones (name -> JSON type), and its key checks (listed as
"not evaluated" when its phase fails). Adding a lens means adding one entry; one generic protocol
phase (:class:`multilens.protocol.phase.LensPhase`) is built from it. Entries hold import paths so
that importing the registry stays cheap.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from multilens.errors import ConfigError


@dataclass(frozen=True)
class LensEntry:
    name: str  # CLI name, e.g. "double-descent"
    section: str  # config table name in run TOML files, e.g. "double_descent"
    module: str  # the lens package: exports Settings, default_subject, measure
    title: str  # one line for the report's phase heading
    summary: str  # one line for `multilens lens --help`
    subject: str  # what `measure` accepts (documented for users)
    consumes: dict[str, type] = field(default_factory=dict)  # required: the phase is skipped without them
    uses: dict[str, type] = field(default_factory=dict)  # optional: passed when an earlier phase produced them
    produces: dict[str, type] = field(default_factory=dict)
    key_checks: tuple[str, ...] = ()

    def load(self, what: str) -> Any:
        """``"Settings"``, ``"default_subject"`` or ``"measure"`` of the lens package."""
        return getattr(importlib.import_module(self.module), what)

    def settings_for(self, profile: str) -> Any:
        return self.load("Settings").for_profile(profile)


LENSES: tuple[LensEntry, ...] = (
    LensEntry(
        "scaling",
        "scaling",
        "multilens.lenses.scaling",
        "Scaling: iso-FLOP sweep, L(C) and L(N, D) fits, regimes, compute-optimal allocation",
        "scaling laws L(C) and L(N, D), regimes, compute-optimal allocation, extrapolation",
        "a table of finished runs (Runs: N, D, loss[, seed, budget, distinct]; or load_scaling_csv) or a "
        "TrainFn wrapping train_fn(config, seed) -> {N, D, loss} and the configs to run",
        uses={"double_descent.interpolation_ratio": float},
        produces={"scaling.allocation": dict, "scaling.allocation_approach2": dict, "scaling.runs": list},
        key_checks=("extrapolation_within_interval", "approach2_vs_approach3", "lnd_fit_quality"),
    ),
    LensEntry(
        "allocation",
        "allocation",
        "multilens.lenses.allocation",
        "Allocation: the compute-optimal model the scaling law recommends, trained and compared with the law",
        "trains the scaling law's compute-optimal allocation (and its +-10% budgets) and compares the realised "
        "losses with the law's predictions; saves the main model for the model-facing lenses",
        "an allocation (allocation.Allocation or the scaling phase's dict: width, d, lr, recipe, family[, "
        "predicted_loss(_ci), plus10, minus10, law])",
        uses={"scaling.allocation": dict},
        produces={"allocation.model_path": str, "allocation.perturbed_models": dict},
        key_checks=("law_prediction_at_optimum", "budget_change_as_predicted", "realised_loss_above_bayes_risk"),
    ),
    LensEntry(
        "curvature",
        "curvature",
        "multilens.lenses.curvature",
        "Curvature: Hessian spectrum, sharpness, slices and the geometry gate's inputs",
        "Hessian spectra, trace, density, sharpness, invariances, landscape slices, edge of stability",
        "Subject(model, loss_fn, data[, eval_data]): a torch model, its mean loss loss_fn(outputs, targets) and data "
        "(an (x, y) pair of tensors, a list of batches or a DataLoader); the Hessian is that of the mean loss",
        uses={"allocation.model_path": str},
        produces={
            "curvature.margin": float,
            "curvature.kappa": float,
            "curvature.lambda_max": float,
            "curvature.lr_max": float,
        },
        key_checks=(
            "lanczos_eigenvalue_1_vs_dense",
            "slq_lambda_max_vs_dense",
            "slice_curvature_vs_top_eigenvalue",
            "hessian_operator_symmetric",
        ),
    ),
    LensEntry(
        "distributed",
        "distributed",
        "multilens.lenses.distributed",
        "Distributed: data-parallel SGD with torch.distributed against its theorem",
        "data-parallel SGD with torch.distributed: parity, noise floor vs workers, local SGD, staleness, faults",
        "a DistributedProblem: an importable 'module:function' builder of the model, data and mean loss that the "
        "gloo workers call (default: an MLP on the digits)",
        key_checks=("parity_sync", "parity_ddp", "noise_floor_exact_m1", "noise_floor_bound_m1"),
    ),
    LensEntry(
        "double-descent",
        "double_descent",
        "multilens.lenses.double_descent",
        "Double descent: min-norm risk against exact theory; random features, MLP widths and the shared family",
        "min-norm least squares risk against exact finite-sample and asymptotic theory; random features and MLP widths;"
        " the shared data family's interpolation threshold and its SGD peak at two batch sizes",
        "Subject(regression=GaussianDesign(n, sigma2, r2) or Regression(x, y), classification=Classification("
        "x_train, y_train, x_test, y_test), family=FamilySpec(...)): a design X and targets y, features and labels, "
        "and/or a data family",
        produces={"double_descent.interpolation_ratio": float},
        key_checks=(
            "double_descent.coverage",
            "double_descent.peak_location",
            "double_descent.rf_threshold",
            "double_descent.family_threshold",
        ),
    ),
    LensEntry(
        "implicit-bias",
        "implicit_bias",
        "multilens.lenses.implicit_bias",
        "Implicit bias: GD to the pseudoinverse and to the max-margin SVM",
        "GD to the pseudoinverse and to the max-margin SVM; optimizers compared at matched budgets",
        "arrays: under-determined least-squares designs (X, y) and linearly separable sets (X, labels in {-1, 1}),"
        " optionally with held-out points (implicit_bias.Subject)",
        produces={"implicit_bias.linear_classifier": dict},
        key_checks=("ls_converges_to_pinv", "soudry_gap_prediction", "ls_null_component_risk"),
    ),
    LensEntry(
        "spectral-bias",
        "spectral_bias",
        "multilens.lenses.spectral_bias",
        "Spectral bias: kernel gradient flow and an MLP's per-frequency fitting times",
        "kernel gradient flow modes and an MLP's per-frequency fitting times against the NTK",
        "a 1-D regression target: equispaced inputs and values, optionally the frequencies to follow and a"
        " model_builder(d_in, seed) for the MLP part (spectral_bias.Subject)",
        key_checks=("kernel_continuous_within_bound", "kernel_first_order_in_eta", "mlp_low_frequency_first"),
    ),
    LensEntry(
        "filters",
        "filters",
        "multilens.lenses.filters",
        "Filters: early-stopped GD and ridge as spectral filters",
        "per-mode spectral filters of early-stopped GD and ridge on an ill-posed inverse problem",
        "InverseProblem(a, y, x_true=None, noise_sigma=None): a forward operator A, observations y (one column per "
        "noisy observation) and, when known, the true signal and the noise std",
        key_checks=("filters.gap_within_continuum_bound.operator", "filters.no_single_lambda.operator"),
    ),
    LensEntry(
        "calibration",
        "calibration",
        "multilens.lenses.calibration",
        "Calibration: ECE, temperature scaling, selective risk, and drift past interpolation (C.15)",
        "calibration metrics with intervals, temperature scaling, risk-coverage, subgroups, drift past interpolation",
        "predictions: validation and test labels with logits or probabilities (optional groups, shifted test "
        "predictions, a trajectory of checkpoints)",
        uses={"allocation.model_path": str},
        key_checks=("temperature_transfers_to_test", "debiased_error_zero_when_calibrated"),
    ),
    LensEntry(
        "shift",
        "shift",
        "multilens.lenses.shift",
        "Shift: importance weighting, label-shift correction, worst-group accuracy, shift detection",
        "importance-weighted risk and ESS (B.8), BBSE/EM priors (B.18), A.6, A.17, A.20, MMD and classifier tests",
        "arrays: source losses and source/target features; source-validation and target probabilities; grouped "
        "train/test data; source and target samples",
        key_checks=("iw_risk_true_covers_target_risk", "target_priors_covered"),
    ),
    LensEntry(
        "representation",
        "representation",
        "multilens.lenses.representation",
        "Representation: covariance spectra, collapse criteria, probes and SSL objectives",
        "covariance spectra (PR, RankMe, MP null), class/domain subspaces, probes, collapse checks, SSL collapse",
        "arrays (train/held-out representations with labels, optional domains and checkpoints) or a torch model "
        "and the module whose output is the representation (RepresentationSubject.from_model)",
        uses={"allocation.model_path": str},
        key_checks=(
            "main_probe_above_chance",
            "main_rank_above_complete_collapse",
            "b13_rank1_risk_above_bayes_plus_delta",
        ),
    ),
    LensEntry(
        "stability",
        "stability",
        "multilens.lenses.stability",
        "Stability: replace-one retraining vs 2L^2/(lambda n), the expected gap, SGD stability",
        "replace-one stability vs the bound, slopes in n and lambda, expected gap, SGD, duplicates, memorization; "
        "replace-one and the gap on the shared data family",
        "tasks: a data pool (x, y in {-1, +1}), lambda, n and a trainer with fit/losses/lipschitz/smoothness "
        "(default: L2-regularised logistic regression solved by Newton's method to a tolerance), and/or a data "
        "family (FamilySpec) for the `family` part",
        key_checks=(
            "digits_loss_stability_bound",
            "digits_gap_within_stability_bound",
            "digits_slope_n_covers_minus_one",
            "family_loss_stability_bound",
        ),
    ),
    LensEntry(
        "robustness",
        "robustness",
        "multilens.lenses.robustness",
        "Robustness: checked attacks, Lipschitz bounds per stage, certified radii and the release gates' inputs",
        "PGD/FGSM/square attacks with sanity checks and an exact linear reference, Lipschitz bounds, "
        "randomized smoothing, an FNR certificate, A.8 along training, corruptions, transfer",
        "a classifier (torch model returning logits), held-out inputs and integer labels, and the valid input box",
        uses={"allocation.model_path": str, "implicit_bias.linear_classifier": dict},
        produces={"robustness.lipschitz_stages": list, "robustness.fnr_upper": float},
        key_checks=(
            "linear_linf_box_pgd_matches_exact",
            "lipschitz_lower_le_upper_end_to_end",
            "eps0_reproduces_clean_linf",
        ),
    ),
    LensEntry(
        "compression",
        "compression",
        "multilens.lenses.compression",
        "Compression: per-layer SVD, tail energy, SVD vs magnitude vs random pruning and recovery",
        "per-layer SVD spectra, Eckart-Young, tail energy vs excess loss, pruning at matched counts and retraining",
        "CompressionSubject(models=((name, model), ...), loss_fn, train=(x, y), holdout=(x, y)): trained torch models "
        "(nn.Linear layers are compressed, others left alone), their mean loss and data; or a multilens.Subject",
        uses={"allocation.model_path": str, "curvature.lambda_max": float, "curvature.lr_max": float},
        key_checks=(
            "eckart_young_whitened",
            "tail_energy_predicts_excess_loss",
            "svd_loses_on_high_rank_noise",
            "loss_jump_quadratic_bound",
        ),
    ),
    LensEntry(
        "constraints",
        "constraints",
        "multilens.lenses.constraints",
        "Constraints: primal-dual training with held-out violations, shadow prices, O(1/sqrt T), Pareto fronts",
        "constrained training (GDA, augmented Lagrangian) with true vs proxy rates on held-out data; duality checks",
        "ConstrainedSubject(tasks=(Task(name, model, loss_fn, train=(x, y, g), holdout=(x, y, g), constraints), ...), "
        "qp=QP(Q, c, A, b), population_data=(x_train, y_train, x_test, y_test)); or a multilens.Subject whose inputs "
        "carry the group in column `group_column`",
        key_checks=("held_out_violation", "shadow_prices", "rate_1_over_sqrt_T", "infeasibility_alarm"),
    ),
)


def lens_names() -> list[str]:
    return [e.name for e in LENSES]


def get_lens(name: str) -> LensEntry:
    for e in LENSES:
        if name in (e.name, e.section):
            return e
    raise ConfigError(f"unknown lens `{name}`; choose one of: {', '.join(lens_names())}.")


def by_section(section: str) -> LensEntry | None:
    return next((e for e in LENSES if e.section == section), None)
