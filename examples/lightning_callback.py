"""The same conv net under PyTorch Lightning, with the multilens callback.

python examples/lightning_callback.py      # writes runs/example-lightning/report.html
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from convnet import ConvNet, digits_loaders  # noqa: E402
from multilens.integrations.lightning import MultilensCallback  # noqa: E402


class LitConvNet(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = ConvNet()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=3e-3)


def main(steps: int = 200, every: int = 100, out: str = "runs/example-lightning", profile: str = "smoke") -> object:
    pl.seed_everything(0, verbose=False)
    train, _ = digits_loaders()
    cb = MultilensCallback(F.cross_entropy, lenses=("curvature",), every=every, out=out, profile=profile)
    trainer = pl.Trainer(
        max_steps=steps,
        callbacks=[cb],
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(LitConvNet(), train)
    return cb.report


if __name__ == "__main__":
    print(main().paths["report"])
