"""Convolutional feature map -> token set, shared by the image encoders (DenseNet, SFCN)."""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from amage_core.models.spec import Encoding


def trunk_output(build: Callable[[], nn.Module], t1_shape: tuple[int, int, int]) -> tuple[int, tuple[int, ...]]:
    """Channels and grid of a trunk's output for a (1, 1, *t1_shape) input, computed on the
    ``meta`` device (no memory, no arithmetic): ``build`` makes a fresh trunk."""
    try:
        with torch.device("meta"):
            out = build().eval()(torch.empty(1, 1, *t1_shape))
    except RuntimeError as exc:        # a pooling layer met a grid smaller than its kernel
        raise ValueError(f"T1 grid {t1_shape} is too small for this trunk: {exc}") from None
    grid = tuple(out.shape[2:])
    if math.prod(grid) < 1:
        raise ValueError(f"T1 grid {t1_shape} is too small for this trunk (output grid {grid})")
    return out.shape[1], grid


class MaxPool3d(nn.MaxPool3d):
    """``nn.MaxPool3d`` that pools in channels-last memory on the CPU when no gradient is needed
    (evaluation, prediction, encoding, attribution baselines) and returns a contiguous tensor.
    PyTorch's channels-first CPU forward kernel is about 5x slower: the demo DenseNet's forward
    pass takes 17 ms instead of 29 for 16 volumes. A maximum has no rounding, so the values are the
    same. With a gradient (its backward is slower in channels-last) and elsewhere (CUDA) it is
    ``nn.MaxPool3d``."""

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type != "cpu" or x.dim() != 5 or (torch.is_grad_enabled() and x.requires_grad):
            return super().forward(x)
        return super().forward(x.contiguous(memory_format=torch.channels_last_3d)).contiguous()


class GridTokens(nn.Module):
    """One token per cell of the feature map (a linear projection of its channels)."""

    def __init__(self, channels: int, out_dim: int, dropout: float) -> None:
        super().__init__()
        self.proj = nn.Linear(channels, out_dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, fmap: Tensor) -> Encoding:
        """Shapes: fmap (B, C, d, h, w) -> tokens (B, T_s = d*h*w, out_dim), embedding (B, out_dim)
        (the token mean)."""
        tokens = self.drop(self.proj(fmap.flatten(2).transpose(1, 2)))
        return Encoding(tokens=tokens, embedding=tokens.mean(dim=1))
