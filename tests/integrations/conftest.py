"""Shared pieces of the your-own-model tests: the examples' conv net and a fast curvature setting."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
sys.path.insert(0, str(EXAMPLES))

# Curvature on a user's model, small enough for the test suite: top-2 eigenvalues, trace and margin.
FAST_CURVATURE = {
    "curvature": {
        "hessian_examples": 128,
        "k": 2,
        "density": False,
        "per_layer": False,
        "sharpness": False,
        "invariance": False,
        "landscape": False,
    }
}


@pytest.fixture
def fast_settings() -> dict:
    return FAST_CURVATURE
