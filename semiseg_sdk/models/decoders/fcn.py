"""FCN head (Long et al. 2015, torchvision's ``FCNHead``): one 3x3 conv on the last encoder feature."""
from __future__ import annotations

from typing import List, Optional

import torch

from ..assemble import assemble_segmentor, check_num_classes
from ..conv_blocks import ConvBNReLU
from ..encoders import build_encoder
from ..registries import register_model
from ..segmentor import Decoder, Segmentor


class FCNDecoder(Decoder):
    """``ConvBNReLU(3x3)`` from the stride-``output_stride`` feature to ``channels`` (default in/4)."""

    def __init__(self, in_channels: List[int], channels: Optional[int] = None) -> None:
        super().__init__()
        self.out_channels = channels or max(in_channels[-1] // 4, 8)
        self.block = ConvBNReLU(in_channels[-1], self.out_channels, 3)

    def forward(self, feats: List[torch.Tensor]) -> torch.Tensor:
        return self.block(feats[-1])


@register_model("fcn")
def fcn(num_classes: int = 19, encoder: str = "resnet18", output_stride: int = 16, pretrained: Optional[str] = None,
        channels: Optional[int] = None, dropout: float = 0.1) -> Segmentor:
    """FCN: encoder at ``output_stride`` + a 3x3 conv head; ``size_divisor`` = output stride."""
    check_num_classes(num_classes)
    enc = build_encoder(encoder, output_stride, pretrained)
    dec = FCNDecoder(enc.out_channels, channels)
    return assemble_segmentor("fcn", encoder, enc, dec, num_classes, output_stride, dropout,
                              {"channels": dec.out_channels})
