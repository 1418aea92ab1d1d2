"""UNet++ decoder (Zhou et al. 2018): nested, densely connected skip pathways.

Node ``X[i][j]`` (level i = stride 2**(i+1), column j) fuses every earlier node of its level with the upsampled node
``X[i+1][j-1]``: ``X[i][j] = DoubleConv(cat(X[i][0], ..., X[i][j-1], up(X[i+1][j-1])))``, with ``X[i][0]`` the
encoder features. The output is ``X[0][4]`` at stride 2 (no deep supervision).
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
from torch import nn

from ...errors import ConfigError
from ..assemble import assemble_segmentor, check_num_classes
from ..encoders import build_encoder
from ..registries import register_model
from ..segmentor import Decoder, Segmentor
from .unet import UNET_CHANNELS, DoubleConv, upsample_to


class UNetPlusPlusDecoder(Decoder):
    """Nested decoder; ``channels`` = width of the nodes at strides 16, 8, 4, 2 (deepest first, like U-Net)."""

    def __init__(self, in_channels: List[int], channels: Sequence[int] = UNET_CHANNELS) -> None:
        super().__init__()
        if len(channels) != 4:
            raise ConfigError(f"unetplusplus: channels needs 4 values (strides 16, 8, 4, 2), got {list(channels)}")
        width = list(channels)[::-1]  # width[i] for level i (stride 2, 4, 8, 16)

        def node_channels(i: int, j: int) -> int:
            return in_channels[i] if j == 0 else width[i]

        self.nodes = nn.ModuleDict()
        for j in range(1, 5):
            for i in range(0, 5 - j):
                cin = sum(node_channels(i, k) for k in range(j)) + node_channels(i + 1, j - 1)
                self.nodes[f"x{i}_{j}"] = DoubleConv(cin, width[i])
        self.out_channels = width[0]

    def forward(self, feats: List[torch.Tensor]) -> torch.Tensor:
        grid = [[f] for f in feats]  # grid[i][j] = X[i][j]
        for j in range(1, 5):
            for i in range(0, 5 - j):
                up = upsample_to(grid[i + 1][j - 1], grid[i][0])
                grid[i].append(self.nodes[f"x{i}_{j}"](torch.cat(grid[i][:j] + [up], dim=1)))
        return grid[0][4]


@register_model("unetplusplus")
def unetplusplus(num_classes: int = 19, encoder: str = "resnet18", output_stride: int = 32,
                 pretrained: Optional[str] = None, channels: Sequence[int] = UNET_CHANNELS,
                 dropout: float = 0.1) -> Segmentor:
    """UNet++; ``size_divisor`` 32."""
    check_num_classes(num_classes)
    enc = build_encoder(encoder, output_stride, pretrained)
    dec = UNetPlusPlusDecoder(enc.out_channels, tuple(channels))
    return assemble_segmentor("unetplusplus", encoder, enc, dec, num_classes, 32, dropout,
                              {"channels": list(channels)})
