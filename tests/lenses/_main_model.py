"""A tiny saved main model (the allocation lens's hand-off) for the consumer lenses' tests."""

from __future__ import annotations

from pathlib import Path

from multilens.data.family import FamilySpec
from multilens.lenses.allocation import save_main_model
from multilens.lenses.allocation import train as T

FAMILY = FamilySpec(n_val=256, n_test=512, n_bayes=4096).to_dict()


def tiny_main_model(folder: Path, width: int = 8, d: int = 512, seed: int = 7) -> str:
    """Train a width-``width`` depth-1 MLP on ``d`` family examples (the allocation recipe) and save it."""
    spec = {"width": width, "depth": 1, "activation": "relu", "d": d, "seed": seed, "family": FAMILY,
            "train": {"optimizer": "adam", "lr": 1e-2, "batch_size": 32, "schedule": "cosine"},
            "split": "test", "max_train_eval": 0, "return_weights": False}  # fmt: skip
    model, _, _ = T.trained_model(spec)
    fam = FamilySpec.from_dict(FAMILY)
    mspec = T.mlp_spec(spec, fam)
    meta = {"mlp": {"d_in": mspec.d_in, "widths": list(mspec.widths), "d_out": mspec.d_out,
                    "activation": mspec.activation, "bias": mspec.bias},
            "family": FAMILY, "recipe": {"optimizer": "adam", "batch_size": 32, "schedule": "cosine", "depth": 1,
                                         "activation": "relu", "lr": 1e-2},
            "width": width, "d": d, "seed": seed, "split": "test", "train_spec": spec}  # fmt: skip
    save_main_model(folder, model, meta)
    return str(folder)
