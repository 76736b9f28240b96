"""Distribution shift on anyone's arrays: importance weights, label-shift priors, shift tests.

    >>> from multilens import shift
    >>> iw = shift.importance_weights(x_source, x_target, seed=0)
    >>> shift.weighted_risk(losses, iw.weights)            # Estimate with its interval
    >>> shift.bbse(val_labels, val_probs, target_probs)     # priors with simultaneous intervals
    >>> shift.mmd_test(x_source, x_target, n_perm=500, seed=0).p_value

The lens (B.8, B.18, A.6, A.17, A.20 against their predictions) is :mod:`multilens.lenses.shift`.
"""

from multilens.lenses.shift.api import (
    ImportanceWeights,
    PriorShift,
    bbse,
    correct_posteriors,
    domain_classifier_test,
    em_priors,
    importance_weights,
    kish_ess,
    mmd_test,
    weighted_risk,
)

__all__ = [
    "ImportanceWeights",
    "PriorShift",
    "bbse",
    "correct_posteriors",
    "domain_classifier_test",
    "em_priors",
    "importance_weights",
    "kish_ess",
    "mmd_test",
    "weighted_risk",
]
