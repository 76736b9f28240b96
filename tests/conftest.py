"""Shared test fixtures: an explicit seed and single-threaded torch (the CI box has 2 cores)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

# Tests share 2 cores with each other's subprocesses; more intra-op threads only thrash.
torch.set_num_threads(1)


@pytest.fixture
def seed() -> int:
    return 12345


@pytest.fixture
def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)
