"""Spectral-filters lens: early-stopped gradient descent vs ridge as filters on singular values."""

from multilens.lenses.filters.config import FiltersConfig
from multilens.lenses.filters.lens import run_filters
from multilens.lenses.filters.phase import FiltersPhase

__all__ = ["FiltersConfig", "FiltersPhase", "run_filters"]
