"""PSPNet decoder (Zhao et al. 2017): pyramid pooling over bins 1, 2, 3, 6 on the last encoder feature.

Each bin: exact adaptive average pooling (``pyramid_pooling.py``, ONNX-exportable at any size) -> 1x1 conv to
``in/4`` -> bilinear upsample; the branches are concatenated with the feature and fused by a 3x3 ConvBNReLU.
The bin-1 branch has no BatchNorm (bias + ReLU instead): with a batch of one image BatchNorm cannot normalise a
single value per channel, and training must work at any batch size.
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
from .pyramid_pooling import adaptive_avg_pool2d_exportable

PSP_BINS = (1, 2, 3, 6)


class PyramidPoolingModule(nn.Module):
    """Pool to each bin size, reduce channels, upsample back; returns ``cat([x, branches...])``."""

    def __init__(self, in_channels: int, bins: Sequence[int] = PSP_BINS) -> None:
        super().__init__()
        self.bins = tuple(bins)
        reduced = max(in_channels // len(self.bins), 8)
        self.stages = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_channels, reduced, 1, bias=True), nn.ReLU(inplace=True)) if b == 1
            else ConvBNReLU(in_channels, reduced, 1)
            for b in self.bins
        )
        self.out_channels = in_channels + reduced * len(self.bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        outs = [x]
        for b, stage in zip(self.bins, self.stages):
            pooled = stage(adaptive_avg_pool2d_exportable(x, b))
            outs.append(F.interpolate(pooled, size=size, mode="bilinear", align_corners=False))
        return torch.cat(outs, dim=1)


class PSPDecoder(Decoder):
    """Pyramid pooling module + 3x3 ConvBNReLU to ``channels``."""

    def __init__(self, in_channels: List[int], channels: int = 512, bins: Sequence[int] = PSP_BINS) -> None:
        super().__init__()
        self.ppm = PyramidPoolingModule(in_channels[-1], bins)
        self.bottleneck = ConvBNReLU(self.ppm.out_channels, channels, 3)
        self.out_channels = channels

    def forward(self, feats: List[torch.Tensor]) -> torch.Tensor:
        return self.bottleneck(self.ppm(feats[-1]))


@register_model("pspnet")
def pspnet(num_classes: int = 19, encoder: str = "resnet18", output_stride: int = 16,
           pretrained: Optional[str] = None, channels: int = 512, bins: Sequence[int] = PSP_BINS,
           dropout: float = 0.1) -> Segmentor:
    """PSPNet; ``size_divisor`` = output stride."""
    check_num_classes(num_classes)
    enc = build_encoder(encoder, output_stride, pretrained)
    dec = PSPDecoder(enc.out_channels, channels, tuple(bins))
    return assemble_segmentor("pspnet", encoder, enc, dec, num_classes, output_stride, dropout,
                              {"channels": channels, "bins": list(bins)})
