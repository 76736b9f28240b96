"""``multilens diagnose`` on a saved checkpoint: the app-factory pattern.

    python examples/diagnose_checkpoint.py                        # trains and saves a checkpoint
    multilens diagnose examples/diagnose_checkpoint.py:subject    # the report of the saved model

``subject()`` loads the weights with ``torch.load(..., weights_only=True)`` (never a pickle of code).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import multilens as ml  # noqa: E402
from convnet import ConvNet, digits_loaders  # noqa: E402

CHECKPOINT = Path(os.environ.get("MULTILENS_EXAMPLE_CKPT", "runs/example-checkpoint/convnet.pt"))


def train_and_save(path: Path = CHECKPOINT, epochs: int = 3) -> Path:
    torch.manual_seed(0)
    train, _ = digits_loaders()
    model = ConvNet()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        for x, y in train:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


def subject() -> ml.Subject:
    """The factory `multilens diagnose` calls: the saved model and its data."""
    if not CHECKPOINT.is_file():
        train_and_save()
    model = ConvNet()
    model.load_state_dict(torch.load(CHECKPOINT, weights_only=True))
    model.eval()
    train, holdout = digits_loaders()
    return ml.Subject(model, F.cross_entropy, train=train, holdout=holdout, name="saved ConvNet")


if __name__ == "__main__":
    print(train_and_save())
