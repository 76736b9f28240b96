"""Explicit random state: every stochastic function takes ``seed`` (int or Generator).

The library never touches global RNG state (no ``np.random.seed``/``torch.manual_seed``);
torch code uses a local ``torch.Generator`` built here.
"""

from __future__ import annotations

import numpy as np
import torch

from multilens.errors import ConfigError

SeedLike = int | np.random.Generator


def as_generator(seed: SeedLike) -> np.random.Generator:
    """A NumPy Generator from an int seed (or the Generator itself)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"`seed` must be an int >= 0 or a numpy Generator; got {seed!r}.")
    return np.random.default_rng(int(seed))


def torch_generator(seed: SeedLike) -> torch.Generator:
    """A CPU torch.Generator seeded from ``seed`` (a Generator contributes one draw)."""
    if isinstance(seed, np.random.Generator):
        s = int(seed.integers(0, 2**63 - 1))
    else:
        as_generator(seed)  # validates
        s = int(seed)
    g = torch.Generator(device="cpu")
    g.manual_seed(s)
    return g


def derive_seed(seed: int, *keys: object) -> int:
    """A child seed from a parent seed and any labels, stable across processes."""
    ss = np.random.SeedSequence([int(seed), *[abs(hash_str(str(k))) for k in keys]])
    return int(ss.generate_state(1, dtype=np.uint32)[0])


def hash_str(s: str) -> int:
    """A process-independent 31-bit hash of a string (Python's hash() is salted)."""
    import hashlib

    return int.from_bytes(hashlib.sha256(s.encode()).digest()[:4], "little") & 0x7FFFFFFF
