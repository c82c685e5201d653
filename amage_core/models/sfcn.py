"""sMRI encoder: SFCN (Peng et al. 2021, "Accurate brain age prediction with lightweight deep neural
networks") trunk -> spatial tokens + pooled embedding.

SFCN's blocks: Conv3d 3x3x3 -> BatchNorm -> MaxPool 2 -> ReLU for every block but the last, which is
Conv3d 1x1x1 -> BatchNorm -> ReLU (max-pools: :class:`~amage_core.models.tokens.MaxPool3d`). The
paper's channels are (32, 64, 128, 256, 256, 64) on a 160x192x160 grid; its soft-classification head
(age bins) is replaced here by tokens + a regression head, as for the DenseNet branch.
"""
from __future__ import annotations

import math
from collections import OrderedDict

from torch import Tensor, nn

from amage_core.config import SFCNConfig
from amage_core.models.spec import Encoding
from amage_core.models.tokens import GridTokens, MaxPool3d, trunk_output

POOL = 2          # SFCN's max-pool kernel and stride
KERNEL = 3        # SFCN's convolution kernel in every block but the last (1x1x1)


def sfcn_trunk(cfg: SFCNConfig) -> nn.Sequential:
    """(B, 1, D, H, W) -> (B, channels[-1], D / 2^(n-1), ...) with n = len(channels)."""
    if not cfg.channels:
        raise ValueError("sfcn.channels must list at least one block")
    blocks: list[tuple[str, nn.Module]] = []
    in_ch = 1
    for i, out_ch in enumerate(cfg.channels):
        last = i == len(cfg.channels) - 1
        kernel = 1 if last else KERNEL
        layers: list[tuple[str, nn.Module]] = [
            ("conv", nn.Conv3d(in_ch, out_ch, kernel_size=kernel, padding=kernel // 2)),
            ("norm", nn.BatchNorm3d(out_ch)),
        ]
        if not last:
            layers.append(("pool", MaxPool3d(POOL, stride=POOL)))
        layers.append(("relu", nn.ReLU(inplace=True)))
        blocks.append((f"block{i + 1}", nn.Sequential(OrderedDict(layers))))
        in_ch = out_ch
    return nn.Sequential(OrderedDict(blocks))


class SFCNEncoder(nn.Module):
    """T1 volume -> (B, T_s, out_dim) tokens and (B, out_dim) embedding."""

    def __init__(self, cfg: SFCNConfig, t1_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.features = sfcn_trunk(cfg)
        channels, self.grid = trunk_output(lambda: sfcn_trunk(cfg), t1_shape)
        self.tokens = GridTokens(channels, cfg.out_dim, cfg.dropout)
        self.n_tokens = math.prod(self.grid)
        self.token_dim = cfg.out_dim
        self.embedding_dim = cfg.out_dim

    def forward(self, t1: Tensor) -> Encoding:
        """Shapes: t1 (B, 1, D, H, W) -> tokens (B, T_s, out_dim), embedding (B, out_dim)."""
        return self.tokens(self.features(t1))
