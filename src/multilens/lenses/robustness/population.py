"""The bundled subject's training population (linear, MLP, PGD- and TRADES-trained MLPs, transfer source) as tasks.

Each member is a pure task of a JSON-able spec (``train_member``: role, seed, the subject's
settings fields) returning the trained weights and checkpoints as plain lists, so the population
can go through ``runtime.executor.map_unordered`` (a process pool or a Ray cluster) or run in this
process; float32 weights survive the JSON round trip exactly, so the numbers are the same either
way (each member draws only from its own seeds).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from multilens.seeding import derive_seed

TASK = "multilens.lenses.robustness.population:train_member"
ROLES = ("linear", "mlp", "mlp_at", "trades", "source")
LENS = "robustness"


def _state(model: nn.Module) -> dict[str, Any]:
    return {
        k: {"shape": list(v.shape), "values": v.detach().reshape(-1).tolist()} for k, v in model.state_dict().items()
    }


def load_state(model: nn.Module, state: dict[str, Any]) -> nn.Module:
    sd = {k: torch.tensor(v["values"], dtype=torch.float32).reshape(v["shape"]) for k, v in state.items()}
    model.load_state_dict(sd)
    return model.eval()


def member_model(role: str, fields: dict[str, Any], seed: int) -> nn.Module:
    """The untrained model of a member (the same initialisation for mlp, mlp_at and trades)."""
    from multilens.lenses.robustness.lens import mlp

    if role == "linear":
        return mlp(64, (), 10, derive_seed(seed, LENS, "linear"))
    if role == "source":
        return mlp(64, tuple(fields["widths"]), 10, derive_seed(seed, LENS, "source"))
    return mlp(64, tuple(fields["widths"]), 10, derive_seed(seed, LENS, "mlp"))


def train_member(spec: dict[str, Any]) -> dict[str, Any]:
    """Train one member of the population; {"state": weights, "checkpoints": [{family, epoch, state}]}."""
    from multilens.lenses.robustness.lens import digits_box, train_classifier
    from multilens.lenses.robustness.settings import Settings

    role, seed, fields = spec["role"], int(spec["seed"]), dict(spec["fields"])
    if role not in ROLES:
        raise ValueError(f"`role` must be one of {', '.join(ROLES)}; got {role!r}")
    s = Settings(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
    xtr, ytr, _, _ = digits_box(seed, s.test_fraction)
    if s.n_train:
        xtr, ytr = xtr[: s.n_train], ytr[: s.n_train]
    model = member_model(role, fields, seed)
    kw: dict[str, Any] = {}
    if role == "linear":
        train_seed = derive_seed(seed, LENS, "train_linear")
    elif role == "source":
        train_seed = derive_seed(seed, LENS, "train_source")
    else:
        train_seed = derive_seed(seed, LENS, "train_mlp")
        kw["n_checkpoints"] = s.checkpoints
        if role == "mlp_at":
            kw |= {"adv_eps": s.at_eps, "family": "adversarial"}
        elif role == "trades":
            kw |= {"adv_eps": s.at_eps, "family": "trades", "trades_beta": s.trades_beta}
    ckpts = train_classifier(model, xtr, ytr, s, seed=train_seed, **kw)
    return {
        "state": _state(model),
        "checkpoints": [{"family": c.family, "epoch": c.epoch, "state": _state(c.model)} for c in ckpts],
    }


def train_population(specs: Sequence[dict[str, Any]], executor: Any = None) -> list[dict[str, Any]]:
    """The members' results in spec order: through ``executor.map_unordered`` when given, else in this process."""
    if executor is None:
        return [train_member(s) for s in specs]
    out: list[dict[str, Any] | None] = [None] * len(specs)
    for i, res in executor.map_unordered(TASK, list(specs)):
        if not res.get("ok"):
            raise RuntimeError(f"robustness: training {specs[i]['role']} failed: {res.get('error', '')}".strip())
        out[i] = res["result"]
    return [r for r in out if r is not None]
