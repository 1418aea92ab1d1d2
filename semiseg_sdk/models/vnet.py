"""V-Net (Milletari et al. 2016) for 3D volumes (N, C, D, H, W): residual 5x5x5 stages, stride-2 down/up-convs.

Widths base, 2, 4, 8, 16 x base (16 -> 256 by default); conv counts per stage as in the paper (down 1, 2, 3, 2;
up 2, 2, 1, 1), each conv ``Conv3d -> BatchNorm3d -> PReLU``. The paper's final 5x5x5 conv + 1x1 conv is a single
1x1x1 classifier here. Not a Segmentor (no RGB normalisation): inputs are used as given.
Depth, height and width must be divisible by 16 (``size_divisor``); training with a batch of one volume
needs one side of at least 32 (BatchNorm needs more than one value per channel at the 1/16 stage).
"""
from __future__ import annotations

from typing import Any, Dict

import torch
from torch import nn

from .assemble import check_num_classes
from .registries import register_model


class ConvBNPReLU3d(nn.Sequential):
    """``Conv3d(k, 'same') -> BatchNorm3d -> PReLU``."""

    def __init__(self, cin: int, cout: int, kernel: int = 5) -> None:
        super().__init__(nn.Conv3d(cin, cout, kernel, padding=kernel // 2, bias=False), nn.BatchNorm3d(cout),
                         nn.PReLU(cout))


class ResidualStage(nn.Module):
    """``PReLU(convs(x) + x)`` with ``n_convs`` 5x5x5 convs."""

    def __init__(self, channels: int, n_convs: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(*[ConvBNPReLU3d(channels, channels) for _ in range(n_convs)])
        self.act = nn.PReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.convs(x) + x)


class DownStage(nn.Module):
    """2x2x2 stride-2 conv doubling channels, then a residual stage."""

    def __init__(self, cin: int, n_convs: int) -> None:
        super().__init__()
        self.down = nn.Sequential(nn.Conv3d(cin, 2 * cin, 2, stride=2, bias=False), nn.BatchNorm3d(2 * cin),
                                  nn.PReLU(2 * cin))
        self.stage = ResidualStage(2 * cin, n_convs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage(self.down(x))


class UpStage(nn.Module):
    """2x2x2 stride-2 transposed conv to ``cout // 2``, concatenated with the skip, then a residual stage."""

    def __init__(self, cin: int, cout: int, n_convs: int) -> None:
        super().__init__()
        self.up = nn.Sequential(nn.ConvTranspose3d(cin, cout // 2, 2, stride=2, bias=False),
                                nn.BatchNorm3d(cout // 2), nn.PReLU(cout // 2))
        self.stage = ResidualStage(cout, n_convs)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.stage(torch.cat([self.up(x), skip], dim=1))


class VNet(nn.Module):
    """V-Net: ``forward(x) -> logits (N, num_classes, D, H, W)``; ``spec`` rebuilds it via ``build_model``."""

    size_divisor = 16

    def __init__(self, num_classes: int = 2, in_channels: int = 1, base_channels: int = 16) -> None:
        super().__init__()
        b = base_channels
        self.num_classes = num_classes
        self.spec: Dict[str, Any] = {"name": "vnet", "num_classes": num_classes, "in_channels": in_channels,
                                     "base_channels": base_channels}
        self.stem = ConvBNPReLU3d(in_channels, b)
        self.stem_act = nn.PReLU(b)
        # The paper adds the input repeated to 16 channels; a 1x1x1 projection does it for any channel count.
        self.stem_skip = nn.Conv3d(in_channels, b, 1, bias=False) if b % in_channels else None
        self.downs = nn.ModuleList([DownStage(b, 1), DownStage(2 * b, 2), DownStage(4 * b, 3), DownStage(8 * b, 2)])
        self.ups = nn.ModuleList([UpStage(16 * b, 16 * b, 2), UpStage(16 * b, 8 * b, 2), UpStage(8 * b, 4 * b, 1),
                                  UpStage(4 * b, 2 * b, 1)])
        self.classifier = nn.Conv3d(2 * b, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stem_skip is None:
            skip = x.repeat(1, self.stem[0].out_channels // x.shape[1], 1, 1, 1)
        else:
            skip = self.stem_skip(x)
        x = self.stem_act(self.stem(x) + skip)
        skips = [x]
        for down in self.downs:
            x = down(x)
            skips.append(x)
        for up, skip in zip(self.ups, reversed(skips[:-1])):
            x = up(x, skip)
        return self.classifier(x)


@register_model("vnet")
def vnet(num_classes: int = 2, in_channels: int = 1, base_channels: int = 16) -> VNet:
    """3D V-Net (``size_divisor`` 16)."""
    check_num_classes(num_classes)
    return VNet(num_classes, in_channels, base_channels)


vnet.spatial_dims = 3  # type: ignore[attr-defined]  (list_models(dims=2) leaves it out)
