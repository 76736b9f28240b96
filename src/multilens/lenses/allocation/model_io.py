"""The main model on disk: ``model.safetensors`` + ``spec.json`` in one folder, and the Subject built from it.

The folder (``allocation.model_path``, the hand-off to the model-facing lenses) holds

* ``model.safetensors``: the trained weights (float32, the state dict of ``build_mlp(spec)``);
* ``spec.json``: ``{"format": 1, "mlp": MLPSpec fields, "family": FamilySpec.to_dict(), "recipe":
  {optimizer, lr, batch_size, schedule, depth, activation}, "width", "d", "seed", "split",
  "weights_sha256", "multilens_version"}``.

Both files are written atomically (temp file in the folder + ``os.replace``), weights first, so
a complete ``spec.json`` always names weights that are on disk; :func:`load_main_model` checks the
weights' sha256 against it. :func:`main_subject` turns the folder into a :class:`multilens.Subject`:
the model, the mean cross-entropy, the model's own training examples (``family.train(d, seed)``,
regenerated from the spec, or their first ``n_train``), the family's ``test`` (or ``val``) split as
held-out data, the penultimate activation as ``embed`` and the valid input box ``[-1, 1]``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

import multilens
from multilens.data.family import FamilySpec
from multilens.errors import ConfigError
from multilens.io import atomic_write_json, current_umask
from multilens.models import MLPSpec, build_mlp
from multilens.subject import Subject

FORMAT = 1
WEIGHTS = "model.safetensors"
SPEC = "spec.json"
INPUT_RANGE = (-1.0, 1.0)  # the family's inputs are uniform on [-1, 1]^d_in


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_main_model(folder: str | Path, model: nn.Module, meta: dict[str, Any]) -> Path:
    """Write ``model`` and its ``meta`` (mlp, family, recipe, width, d, seed, split) atomically into ``folder``."""
    folder = Path(folder)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    blob = st_save(state, metadata={"format": str(FORMAT)})
    _atomic_write_bytes(folder / WEIGHTS, blob)
    spec = dict(meta) | {
        "format": FORMAT,
        "weights": WEIGHTS,
        "weights_sha256": hashlib.sha256(blob).hexdigest(),
        "multilens_version": multilens.__version__,
    }
    atomic_write_json(folder / SPEC, spec)
    return folder


def read_spec(path: str | Path) -> dict[str, Any]:
    import json

    p = Path(path) / SPEC
    if not p.is_file():
        raise ConfigError(f"`{path}` holds no main model: `{SPEC}` is missing (expected {SPEC} + {WEIGHTS}).")
    return json.loads(p.read_text(encoding="utf-8"))


def load_main_model(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode, spec dict) of a folder written by :func:`save_main_model`."""
    spec = read_spec(path)
    if spec.get("format") != FORMAT:
        raise ConfigError(f"`{path}`: main-model format {spec.get('format')!r} is not supported (expected {FORMAT}).")
    blob = (Path(path) / spec.get("weights", WEIGHTS)).read_bytes()
    if hashlib.sha256(blob).hexdigest() != spec["weights_sha256"]:
        raise ConfigError(f"`{path}`: the weights do not match the sha256 recorded in {SPEC}; the folder is corrupt.")
    m = spec["mlp"]
    mspec = MLPSpec(int(m["d_in"]), tuple(int(w) for w in m["widths"]), int(m["d_out"]), m["activation"], m["bias"])
    model = build_mlp(mspec, seed=0)
    model.load_state_dict(st_load(blob), strict=True)
    return model.eval(), spec


def main_subject(path: str | Path, *, n_train: int | None = None, split: str = "test") -> Subject:
    """The main model as a :class:`multilens.Subject` (see the module docstring).

    ``n_train``: keep the first ``n_train`` of the model's training examples (None: all ``d``).
    ``split``: the held-out data, ``"test"`` or ``"val"`` of the family.
    """
    if split not in ("test", "val"):
        raise ConfigError(f"`split` must be 'test' or 'val'; got {split!r}.")
    model, spec = load_main_model(path)
    family = FamilySpec.from_dict(dict(spec["family"]))
    d = int(spec["d"])
    n = d if not n_train else min(int(n_train), d)
    x, y = family.train(n, int(spec["seed"]))  # nested draws: the first n of the d the model was trained on
    holdout = family.val() if split == "val" else family.test()
    layers = list(dict(model.named_children()))
    embed = layers[-2] if len(layers) >= 2 else None  # the last hidden activation
    name = (
        f"main model (allocation: width {spec['width']} x depth {spec['recipe']['depth']}, D = {d}, "
        f"seed {spec['seed']}; {n} of its training examples, family {split} split)"
    )
    return Subject(model, nn.functional.cross_entropy, train=(x, y), holdout=holdout, embed=embed,
                   input_range=INPUT_RANGE, name=name)  # fmt: skip


def describe(path: str | Path) -> dict[str, Any]:
    """A short provenance record of the main model folder (for the consumers' result data)."""
    spec = read_spec(path)
    return {
        "source": "allocation.model_path (the compute-optimal model of the scaling phase, trained by the allocation "
        "lens)",
        "path": str(path),
        "width": spec.get("width"),
        "depth": spec.get("recipe", {}).get("depth"),
        "d": spec.get("d"),
        "seed": spec.get("seed"),
        "weights_sha256": spec.get("weights_sha256"),
    }


def state_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
