"""One deterministic training loop for every lens."""

from multilens.train.loop import TrainConfig, TrainResult, evaluate, train_model

__all__ = ["TrainConfig", "TrainResult", "evaluate", "train_model"]
