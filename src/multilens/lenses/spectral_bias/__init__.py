"""Spectral-bias lens: exact kernel gradient flow, per-frequency fitting of an MLP and the NTK's
prediction of it, and Fourier features as the what-if (seed theorem at line 162; worked example 3;
exercises B.9, C.7)."""

from multilens.lenses.spectral_bias.config import SpectralBiasConfig
from multilens.lenses.spectral_bias.lens import run_spectral_bias
from multilens.lenses.spectral_bias.phase import SpectralBiasPhase

__all__ = ["SpectralBiasConfig", "SpectralBiasPhase", "run_spectral_bias"]
