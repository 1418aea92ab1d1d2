"""DeepLabV3+ decoder (Chen et al. 2018): ASPP on the last feature + a low-level skip from stride 4.

ASPP: a 1x1 branch, three 3x3 atrous branches (rates 6/12/18 at output stride 16, doubled at 8, halved at 32) and an
image-pooling branch (global mean -> 1x1 conv -> ReLU, broadcast back), projected to ``channels`` with dropout 0.5
(as in torchvision's ASPP; ST++'s uses ``Dropout2d(0.5)``, UniMatch's DeepLab-v3+ has no dropout layer). The pooling
branch has no BatchNorm so that a batch of one image trains. The decoder reduces the stride-4 feature to 48
channels, concatenates the upsampled ASPP output and applies two 3x3 ConvBNReLU.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..assemble import assemble_segmentor, check_num_classes
from ..conv_blocks import ConvBNReLU
from ..encoders import build_encoder
from ..registries import register_model
from ..segmentor import Decoder, Segmentor
from .unet import upsample_to

BASE_RATES = (6, 12, 18)  # at output stride 16


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling with an image-pooling branch."""

    def __init__(self, in_channels: int, channels: int, rates: Sequence[int], dropout: float = 0.5) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [ConvBNReLU(in_channels, channels, 1)] + [ConvBNReLU(in_channels, channels, 3, dilation=r) for r in rates]
        )
        self.image_pool = nn.Sequential(nn.Conv2d(in_channels, channels, 1, bias=True), nn.ReLU(inplace=True))
        self.project = nn.Sequential(ConvBNReLU(channels * (len(rates) + 2), channels, 1), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [branch(x) for branch in self.branches]
        pooled = self.image_pool(x.mean(dim=(2, 3), keepdim=True))
        outs.append(F.interpolate(pooled, size=x.shape[-2:], mode="bilinear", align_corners=False))
        return self.project(torch.cat(outs, dim=1))


class DeepLabV3PlusDecoder(Decoder):
    """ASPP (stride ``output_stride``) + stride-4 skip; ``out_channels`` = ``channels``."""

    def __init__(self, in_channels: List[int], output_stride: int, channels: int = 256, skip_channels: int = 48) -> None:
        super().__init__()
        rates = [r * 16 // output_stride for r in BASE_RATES]
        self.aspp = ASPP(in_channels[-1], channels, rates)
        self.reduce_skip = ConvBNReLU(in_channels[1], skip_channels, 1)
        self.fuse = nn.Sequential(ConvBNReLU(channels + skip_channels, channels, 3), ConvBNReLU(channels, channels, 3))
        self.out_channels = channels

    def forward(self, feats: List[torch.Tensor]) -> torch.Tensor:
        skip = self.reduce_skip(feats[1])
        x = upsample_to(self.aspp(feats[-1]), skip)
        return self.fuse(torch.cat([x, skip], dim=1))


@register_model("deeplabv3plus")
def deeplabv3plus(num_classes: int = 19, encoder: str = "resnet18", output_stride: int = 16,
                  pretrained: Optional[str] = None, channels: int = 256, dropout: float = 0.1) -> Segmentor:
    """DeepLabV3+; ``size_divisor`` = output stride."""
    check_num_classes(num_classes)
    enc = build_encoder(encoder, output_stride, pretrained)
    dec = DeepLabV3PlusDecoder(enc.out_channels, output_stride, channels)
    return assemble_segmentor("deeplabv3plus", encoder, enc, dec, num_classes, output_stride, dropout,
                              {"channels": channels})
