"""Integrations with the tools users already train and track with (all optional extras).

* :mod:`multilens.integrations.lightning`: ``MultilensCallback`` for PyTorch Lightning (extra ``lightning``);
* :mod:`multilens.integrations.transformers`: ``MultilensCallback`` for the Hugging Face ``Trainer`` (extra ``hf``);
* :mod:`multilens.integrations.mlflow`: ``export_run`` of a run directory to MLflow (extra ``mlflow``).

Each module imports its framework lazily and says which extra to install when it is missing.
"""
