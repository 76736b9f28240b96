"""``MultilensCallback`` for the Hugging Face ``Trainer``: the Monitor at ``on_step_end``.

::

    from multilens.integrations.transformers import MultilensCallback
    cb = MultilensCallback(data=(input_ids, labels), lenses=("curvature",), every=50, out="runs/hf")
    Trainer(model=model, args=args, train_dataset=ds, callbacks=[cb]).train()

The model the Trainer passes may be wrapped (DDP's ``.module``, ``torch.compile``'s ``_orig_mod``):
it is unwrapped. Only the world-process-zero writes. The default ``forward_fn`` calls
``model(input_ids=x).logits`` and the default loss is cross-entropy over those logits, which fits
sequence classification; pass your own for other heads. The callback never changes
``TrainerControl``. Curvature needs double backward: build attention models with
``attn_implementation="eager"`` (PyTorch's CPU scaled-dot-product kernels have no second derivative).
"""

from __future__ import annotations

from typing import Any

from multilens.errors import ConfigError

try:
    from transformers import TrainerCallback as _Base
except ImportError:  # pragma: no cover - exercised only without the extra
    _Base = object


def unwrap(model: Any) -> Any:
    """The user's module under DDP/DataParallel (``.module``) and ``torch.compile`` (``._orig_mod``)."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif type(model).__name__ in ("DistributedDataParallel", "DataParallel") and hasattr(model, "module"):
            model = model.module
        else:
            return model


def logits_forward(model: Any, x: Any) -> Any:
    return model(input_ids=x).logits


class MultilensCallback(_Base):  # type: ignore[misc, valid-type]
    """A ``transformers.TrainerCallback`` running the multilens Monitor (see the module docstring)."""

    def __init__(
        self,
        data: Any,
        lenses: tuple[str, ...] = ("curvature",),
        *,
        every: int = 50,
        out: str = "runs/hf",
        loss_fn: Any = None,
        forward_fn: Any = logits_forward,
        seed: int = 0,
        profile: str = "smoke",
        settings: dict[str, Any] | None = None,
    ) -> None:
        if _Base is object:
            raise ConfigError("the Hugging Face callback needs transformers: pip install 'multilens[hf]'.")
        import torch.nn.functional as F

        self.data = data
        self.lenses = tuple(lenses)
        self.every = every
        self.out = out
        self.loss_fn = loss_fn or F.cross_entropy
        self.forward_fn = forward_fn
        self.seed = seed
        self.profile = profile
        self.settings = settings
        self.monitor: Any = None
        self.report: Any = None

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or model is None:
            return
        if self.monitor is None:
            from multilens.monitor import Monitor
            from multilens.subject import Subject

            m = unwrap(model)
            subject = Subject(m, self.loss_fn, train=self.data, forward_fn=self.forward_fn, name=type(m).__name__)
            self.monitor = Monitor(
                subject,
                self.lenses,
                every=self.every,
                out=self.out,
                seed=self.seed,
                profile=self.profile,
                settings=self.settings,
            )
        self.monitor.step(int(state.global_step))

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.monitor is not None and state.is_world_process_zero:
            self.report = self.monitor.close()
