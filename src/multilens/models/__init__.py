"""Small torch models with exact parameter and FLOP counts."""

from multilens.models.mlp import MLPSpec, build_mlp, forward_flops, n_params

__all__ = ["MLPSpec", "build_mlp", "forward_flops", "n_params"]
