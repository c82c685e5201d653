"""sMRI encoder: MONAI's 3D ``DenseNet`` feature trunk -> spatial tokens + pooled embedding.

The trunk is MONAI's ``DenseNet(...).features`` (its classification layers are not built into the
model); a ReLU follows the final BatchNorm (as in MONAI's own head), then every cell of the output
grid becomes a token (:class:`~amage_core.models.tokens.GridTokens`). DenseNet121 = init_features
64, growth_rate 32, block_config (6, 12, 24, 16), bn_size 4: 1024 channels, a 4^3 grid at 128^3.

``checkpointing`` recomputes each dense block in the backward pass (torch.utils.checkpoint) while
training, trading compute for activation memory; BatchNorm running statistics inside a block are
then updated twice per step (the recomputation runs it again), as in torchvision's memory-efficient
DenseNet.
"""
from __future__ import annotations

import math

import torch
from monai.networks.nets import DenseNet
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from amage_core.config import DenseNetConfig
from amage_core.models.spec import Encoding
from amage_core.models.tokens import GridTokens, MaxPool3d, trunk_output

MIN_PAPER_STEM_GRID = 8


def densenet_trunk(cfg: DenseNetConfig) -> nn.Sequential:
    """MONAI 3D DenseNet ``features``: (B, 1, D, H, W) -> (B, C, d, h, w).

    ``cfg.stem="small"`` replaces MONAI's stem convolution (7^3, stride 2) by a 3^3 stride-1 one,
    keeping its BatchNorm, ReLU and max-pool: the stem halves the grid instead of quartering it.
    The stem's max-pool is :class:`~amage_core.models.tokens.MaxPool3d` (the same values, faster
    on the CPU)."""
    net = DenseNet(
        spatial_dims=3, in_channels=1, out_channels=1, init_features=cfg.init_features,
        growth_rate=cfg.growth_rate, block_config=cfg.block_config, bn_size=cfg.bn_size,
        dropout_prob=cfg.dropout,
    )
    pool = net.features.pool0
    net.features.pool0 = MaxPool3d(pool.kernel_size, stride=pool.stride, padding=pool.padding)
    if cfg.stem == "small":
        net.features.conv0 = nn.Conv3d(1, cfg.init_features, kernel_size=3, stride=1, padding=1, bias=False)
    return net.features


class DenseNetEncoder(nn.Module):
    """T1 volume -> (B, T_s, out_dim) tokens and (B, out_dim) embedding."""

    def __init__(self, cfg: DenseNetConfig, t1_shape: tuple[int, int, int]) -> None:
        super().__init__()
        if cfg.stem == "paper" and min(t1_shape) < MIN_PAPER_STEM_GRID:
            # the 7^3 stride-2 stem on a grid under 8 voxels hits a oneDNN bug (PyTorch 2.13, CPU):
            # its weight gradient reads uninitialised memory (NaN or a small random error)
            raise ValueError(f"T1 grid {tuple(t1_shape)} is too small for the DenseNet's 7^3 stem: "
                             f"at least {MIN_PAPER_STEM_GRID} voxels per axis, or densenet.stem: small")
        self.cfg = cfg
        self.features = densenet_trunk(cfg)
        self.act = nn.ReLU()
        channels, self.grid = trunk_output(lambda: densenet_trunk(cfg), t1_shape)
        self.tokens = GridTokens(channels, cfg.out_dim, cfg.dropout)
        self.n_tokens = math.prod(self.grid)
        self.token_dim = cfg.out_dim
        self.embedding_dim = cfg.out_dim

    def forward(self, t1: Tensor) -> Encoding:
        """Shapes: t1 (B, 1, D, H, W) -> tokens (B, T_s, out_dim), embedding (B, out_dim)."""
        recompute = self.cfg.checkpointing and self.training and torch.is_grad_enabled()
        x = t1
        for name, stage in self.features.named_children():
            if recompute and name.startswith("denseblock"):
                x = checkpoint(stage, x, use_reentrant=False)
            else:
                x = stage(x)
        return self.tokens(self.act(x))
