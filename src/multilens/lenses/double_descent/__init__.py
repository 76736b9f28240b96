"""Double-descent lens: min-norm risk vs gamma against exact theory, random features and MLPs on digits."""

from multilens.lenses.double_descent.config import DoubleDescentConfig
from multilens.lenses.double_descent.lens import run_double_descent
from multilens.lenses.double_descent.phase import DoubleDescentPhase

__all__ = ["DoubleDescentConfig", "DoubleDescentPhase", "run_double_descent"]
