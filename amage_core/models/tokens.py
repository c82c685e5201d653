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
    """``nn.MaxPool3d`` whose CPU forward pass pools in channels-last memory and returns contiguous
    tensors. PyTorch's channels-first CPU forward kernel is about 4x slower (7.6 ms against 2.2 for
    the demo DenseNet's stem pool of 16 volumes, a fifth of a training step); its channels-last
    backward is slower too. So with a gradient the maximum's indices come from the channels-last
    forward and the backward is PyTorch's channels-first one (:class:`_ChannelsLastMaxPool`). Both
    kernels pick the same element of a window (ties included), so values and gradients are
    bitwise those of ``nn.MaxPool3d``. Elsewhere (CUDA, ``return_indices``) it is ``nn.MaxPool3d``."""

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type != "cpu" or x.dim() != 5 or self.return_indices:
            return super().forward(x)
        if torch.is_grad_enabled() and x.requires_grad:
            options = (_triple(self.kernel_size), _triple(self.stride or self.kernel_size),
                       _triple(self.padding), _triple(self.dilation), self.ceil_mode)
            return _ChannelsLastMaxPool.apply(x, options)
        return super().forward(_channels_last(x)).contiguous()


def _channels_last(x: Tensor) -> Tensor:
    return x.contiguous(memory_format=torch.channels_last_3d)


def _triple(value) -> list[int]:
    return list(value) if isinstance(value, (tuple, list)) else [int(value)] * 3


class _ChannelsLastMaxPool(torch.autograd.Function):
    """Max-pool: (B, C, D, H, W) -> (B, C, d, h, w); forward in channels-last memory, backward
    with PyTorch's channels-first kernel from the forward's indices (see :class:`MaxPool3d`)."""

    @staticmethod
    def forward(ctx, x: Tensor, options: tuple) -> Tensor:
        values, indices = torch.ops.aten.max_pool3d_with_indices(_channels_last(x), *options)
        values, indices = values.contiguous(), indices.contiguous()
        ctx.save_for_backward(x, indices)
        ctx.options = options
        return values

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        x, indices = ctx.saved_tensors
        return torch.ops.aten.max_pool3d_with_indices_backward(
            grad.contiguous(), x.contiguous(), *ctx.options, indices), None


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
