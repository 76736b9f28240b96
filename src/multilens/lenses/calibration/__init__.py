"""Calibration lens (being built): metrics, temperature scaling and selective prediction on arrays."""
