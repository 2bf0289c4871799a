"""Read official PyTorch checkpoints into fdn params."""

from fdn.convert.controller import controller_params_from_torch

__all__ = ["controller_params_from_torch"]
