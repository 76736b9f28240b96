"""``MultilensCallback`` for PyTorch Lightning: the Monitor inside ``Trainer.fit``.

::

    from multilens.integrations.lightning import MultilensCallback
    cb = MultilensCallback(loss_fn=torch.nn.functional.cross_entropy, lenses=("curvature",), every=50,
                           out="runs/lightning")
    trainer = pl.Trainer(callbacks=[cb], ...); trainer.fit(module, loader)

Measurements run in ``on_train_batch_end`` (a train hook: Lightning runs validation under
``torch.inference_mode()``, where no Hessian-vector product or attack gradient can be taken), on
a copy of the module and a fixed batch (``data=``, or the first training batch seen), inside
:func:`~multilens.subject.untouched`. The report is written in ``on_train_end``. The callback is
stateful (``state_dict``/``load_state_dict``) so a resumed fit resumes the Monitor.

Works with ``pytorch_lightning`` and ``lightning.pytorch``: the class is built at call time as a
subclass of every installed namespace's ``Callback``, so either Trainer accepts it.
"""

from __future__ import annotations

import importlib
from typing import Any

from multilens.errors import ConfigError


def _callback_bases() -> tuple[type, ...]:
    bases = []
    for mod in ("lightning.pytorch", "pytorch_lightning"):
        try:
            bases.append(importlib.import_module(mod).Callback)
        except ImportError:
            continue
    if not bases:
        raise ConfigError("the Lightning callback needs pytorch-lightning: pip install 'multilens[lightning]'.")
    return tuple(dict.fromkeys(bases))


class _Impl:
    """The hooks; mixed into the installed Lightning namespaces' ``Callback`` by ``MultilensCallback``."""

    def __init__(
        self,
        loss_fn: Any,
        lenses: tuple[str, ...] = ("curvature",),
        *,
        every: int = 50,
        out: str = "runs/lightning",
        data: Any = None,
        seed: int = 0,
        profile: str = "smoke",
        settings: dict[str, Any] | None = None,
        forward_fn: Any = None,
    ) -> None:
        self.loss_fn = loss_fn
        self.lenses = tuple(lenses)
        self.every = every
        self.out = out
        self.data = data
        self.seed = seed
        self.profile = profile
        self.settings = settings
        self.forward_fn = forward_fn
        self.monitor: Any = None
        self._pending_state: dict[str, Any] | None = None
        self.report: Any = None

    @property
    def state_key(self) -> str:
        return f"MultilensCallback[{','.join(self.lenses)}@{self.out}]"

    def _ensure_monitor(self, pl_module: Any, batch: Any) -> None:
        if self.monitor is not None:
            return
        from multilens.monitor import Monitor
        from multilens.subject import Subject

        data = self.data
        if data is None:
            x, y = batch[0], batch[1]
            data = (x.detach().clone(), y.detach().clone())
        subject = Subject(
            pl_module, self.loss_fn, train=data, forward_fn=self.forward_fn, name=type(pl_module).__name__
        )
        self.monitor = Monitor(
            subject,
            self.lenses,
            every=self.every,
            out=self.out,
            seed=self.seed,
            profile=self.profile,
            settings=self.settings,
        )
        if self._pending_state is not None:
            self.monitor.load_state_dict(self._pending_state)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not trainer.is_global_zero:
            return
        self._ensure_monitor(pl_module, batch)
        self.monitor.step(int(trainer.global_step))

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self.monitor is not None and trainer.is_global_zero:
            self.report = self.monitor.close()

    def state_dict(self) -> dict[str, Any]:
        return self.monitor.state_dict() if self.monitor is not None else (self._pending_state or {})

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending_state = dict(state_dict) if state_dict else None
        if self.monitor is not None and self._pending_state:
            self.monitor.load_state_dict(self._pending_state)


def MultilensCallback(*args: Any, **kwargs: Any) -> Any:  # noqa: N802 - a class-like factory
    """A Lightning ``Callback`` running the multilens Monitor (see the module docstring)."""
    cls = type("MultilensCallback", (_Impl, *_callback_bases()), {})
    return cls(*args, **kwargs)
