"""One training of the allocation lens: a pure function of a JSON spec (run in process or by an executor).

The recipe mirrors one run of the scaling phase's sweep on the shared data family
(:class:`multilens.data.family.FamilySpec`), so the law fitted on that sweep applies to it: a
depth-``depth`` ReLU MLP ``d_in -> width x depth -> n_classes`` initialised from
``derive_seed(seed, "init")``, trained for ONE pass over ``d`` fresh examples ``family.train(d, seed)``
with :func:`multilens.train.train_model` (cross-entropy, ``TrainConfig(loss="ce", epochs=1,
optimizer, lr, batch_size, schedule)``, example order from ``derive_seed(seed, "order")``), and
evaluated on the family's fixed ``test`` (or ``val``) split.

The spec::

    {"width": int, "depth": int, "activation": "relu", "d": int, "seed": int,
     "family": FamilySpec.to_dict(), "train": {"optimizer", "lr", "batch_size", "schedule"},
     "split": "test" | "val", "max_train_eval": int (0: all d), "n_population": int (0: none),
     "return_weights": bool}

The result holds the held-out loss and accuracy, the loss on the model's own training examples
(evaluated after training, in eval mode), the loss on ``n_population`` fresh examples of the family
(a stream no run trains on: the population loss for the generalization gap), the step count and,
when ``return_weights``, the trained weights as base64 float32 bytes (bit-exact through JSON:
:func:`weights_from_json`).
"""

from __future__ import annotations

import base64
import math
import time
from typing import Any

import numpy as np
import torch

from multilens.data.family import FamilySpec
from multilens.models import MLPSpec, build_mlp, n_params
from multilens.seeding import derive_seed
from multilens.train import TrainConfig, evaluate, train_model

TASK = "multilens.lenses.allocation.train:train_one"


def mlp_spec(spec: dict[str, Any], family: FamilySpec) -> MLPSpec:
    return MLPSpec(family.d_in, (int(spec["width"]),) * int(spec["depth"]), family.n_classes, spec["activation"])


def train_config(spec: dict[str, Any]) -> TrainConfig:
    t = spec["train"]
    return TrainConfig(
        loss="ce",
        epochs=1,
        optimizer=t["optimizer"],
        lr=float(t["lr"]),
        batch_size=int(t["batch_size"]),
        schedule=t["schedule"],
    )


def trained_model(spec: dict[str, Any]) -> tuple[torch.nn.Module, Any, tuple[torch.Tensor, torch.Tensor]]:
    """(model, TrainResult, its training examples) for one spec: the exact recipe of the module docstring."""
    family = FamilySpec.from_dict(dict(spec["family"]))
    seed = int(spec["seed"])
    x, y = family.train(int(spec["d"]), seed)
    model = build_mlp(mlp_spec(spec, family), seed=derive_seed(seed, "init"))
    tr = train_model(model, x, y, train_config(spec), seed=derive_seed(seed, "order"))
    return model.eval(), tr, (x, y)


def split_of(family: FamilySpec, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    if split == "val":
        return family.val()
    return family.test()


def weights_to_json(model: torch.nn.Module) -> dict[str, Any]:
    out = {}
    for k, v in model.state_dict().items():
        a = np.ascontiguousarray(v.detach().cpu().numpy().astype(np.float32))
        out[k] = {"shape": list(a.shape), "b64": base64.b64encode(a.tobytes()).decode("ascii")}
    return out


def weights_from_json(w: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {
        k: torch.from_numpy(np.frombuffer(base64.b64decode(v["b64"]), dtype=np.float32).copy().reshape(v["shape"]))
        for k, v in w.items()
    }


def train_one(spec: dict[str, Any]) -> dict[str, Any]:
    """Train one model of the allocation and measure it. Pure function of ``spec``."""
    t0 = time.perf_counter()
    family = FamilySpec.from_dict(dict(spec["family"]))
    model, tr, (x, y) = trained_model(spec)
    xt, yt = split_of(family, spec.get("split", "test"))
    ev = evaluate(model, xt, yt, "ce")
    with torch.no_grad():  # per-example losses on the fixed split: their spread is the split's sampling error
        per = torch.nn.functional.cross_entropy(model(xt), yt, reduction="none").double()
        # Paired with the Bayes predictor (the teacher's softmax) on the same labels: E[per - bayes | x] = KL >= 0.
        excess = per - torch.nn.functional.cross_entropy(family.logits(xt).double(), yt, reduction="none")
    m = int(spec.get("max_train_eval", 0) or 0)
    own = evaluate(model, x[:m] if m else x, y[:m] if m else y, "ce")
    n_pop = int(spec.get("n_population", 0) or 0)
    if n_pop:  # a fresh sample of the family (a stream no run trains on): the population loss, for the gap
        xp, yp = family.train(n_pop, derive_seed(int(spec["seed"]), "allocation-population"))
        pop = evaluate(model, xp, yp, "ce")["loss"]
    fin = lambda v: v if math.isfinite(v) else None  # noqa: E731
    out: dict[str, Any] = {
        "seed": int(spec["seed"]),
        "width": int(spec["width"]),
        "d": int(spec["d"]),
        "N": n_params(mlp_spec(spec, family)),
        "examples_seen": int(tr.examples_seen),
        "steps": int(tr.steps),
        "diverged": bool(tr.diverged),
        "test_loss": None if tr.diverged else fin(ev["loss"]),
        "test_accuracy": None if tr.diverged else fin(ev["accuracy"]),
        "test_loss_sd": None if tr.diverged else fin(float(per.std())),
        "n_test": int(xt.shape[0]),
        "excess_over_bayes": None if tr.diverged else fin(float(excess.mean())),
        "excess_over_bayes_sd": None if tr.diverged else fin(float(excess.std())),
        "train_loss": None if tr.diverged else fin(own["loss"]),
        "train_accuracy": None if tr.diverged else fin(own["accuracy"]),
        "n_train_eval": int(m or x.shape[0]),
        "population_loss": (None if tr.diverged else fin(pop)) if n_pop else None,
        "n_population": n_pop,
        "last_batch_loss": fin(tr.final_train_loss),
        "train_wall_time_s": time.perf_counter() - t0,
    }
    if spec.get("return_weights"):
        out["weights"] = weights_to_json(model)
    return out
