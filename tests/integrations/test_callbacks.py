"""The Lightning and Hugging Face callbacks in a real (tiny, CPU) fit; skipped only when the extra is missing."""

from __future__ import annotations

import warnings

import pytest


def test_lightning_callback_in_trainer_fit(tmp_path, fast_settings):
    pytest.importorskip("pytorch_lightning", reason="extra `lightning` not installed")
    import lightning_callback as ex
    import multilens.integrations.lightning as integ

    orig = integ.MultilensCallback

    def cb(*a, **kw):
        return orig(*a, **(kw | {"settings": fast_settings}))

    with warnings.catch_warnings():
        # Lightning's advice about dataloader workers and logging is not ours to fix in a test.
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*LightningModule.log.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated.*", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="pytorch_lightning")
        warnings.filterwarnings("ignore", category=UserWarning, module="lightning_fabric")
        ex.MultilensCallback = cb
        try:
            rep = ex.main(steps=6, every=3, out=str(tmp_path / "pl"))
        finally:
            ex.MultilensCallback = orig
    assert rep is not None and rep.paths["report"].is_file()
    assert rep.summary["monitor"]["measurements"] == 2  # global steps 3 and 6 (Lightning counts from 1)


def test_lightning_callback_subclasses_the_installed_namespace():
    pl = pytest.importorskip("pytorch_lightning", reason="extra `lightning` not installed")
    import torch.nn.functional as F

    from multilens.integrations.lightning import MultilensCallback

    cb = MultilensCallback(F.cross_entropy)
    assert isinstance(cb, pl.Callback)
    assert cb.state_key.startswith("MultilensCallback[")


def test_hf_trainer_callback(tmp_path, fast_settings):
    pytest.importorskip("transformers", reason="extra `hf` not installed")
    pytest.importorskip("accelerate", reason="extra `hf` not installed")
    import hf_trainer as ex
    import multilens.integrations.transformers as integ

    orig = integ.MultilensCallback

    def cb(*a, **kw):
        return orig(*a, **(kw | {"settings": fast_settings}))

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="transformers")
        ex.MultilensCallback = cb
        try:
            rep = ex.main(steps=4, every=2, out=str(tmp_path / "hf"))
        finally:
            ex.MultilensCallback = orig
    assert rep is not None and rep.paths["report"].is_file()
    assert rep.summary["monitor"]["measurements"] == 2
    assert rep.summary["subject"]["model_class"] == "BertForSequenceClassification"
