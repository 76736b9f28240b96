"""Compression operators on a model's nn.Linear layers: the public face of the compression lens.

Each returns a NEW model; the input is never modified.

    >>> from multilens.compression import svd_truncate, magnitude_prune, random_prune, layer_spectra
    >>> small = svd_truncate(model, energy=0.9)          # or rank=8, or rank={"0": 8, "2": 4}
    >>> pruned = magnitude_prune(model, amount=0.75)     # or keep={"0": 500}
    >>> rand = random_prune(model, amount=0.75, seed=0)
    >>> [(s.name, s.stable_rank, s.tail_energy(8)) for s in layer_spectra(model)]

The whole lens runs through :func:`multilens.lenses.compression.measure`.
"""

from multilens.lenses.compression.ops import (
    LayerSpectrum,
    LowRankLinear,
    apply_masks,
    count_weights,
    layer_spectra,
    magnitude_prune,
    matched_keep,
    random_prune,
    svd_truncate,
)

__all__ = [
    "LayerSpectrum",
    "LowRankLinear",
    "apply_masks",
    "count_weights",
    "layer_spectra",
    "magnitude_prune",
    "matched_keep",
    "random_prune",
    "svd_truncate",
]
