"""Implicit-bias lens: GD's pseudoinverse limit, the SVM direction of separable logistic regression,
and optimizers compared at matched budgets (seed theorem at line 152; worked examples 2 and 4;
exercises B.1, B.11, C.2)."""

from multilens.lenses.implicit_bias.config import ImplicitBiasConfig
from multilens.lenses.implicit_bias.lens import run_implicit_bias
from multilens.lenses.implicit_bias.phase import ImplicitBiasPhase

__all__ = ["ImplicitBiasConfig", "ImplicitBiasPhase", "run_implicit_bias"]
