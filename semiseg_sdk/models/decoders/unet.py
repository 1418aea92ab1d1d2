"""U-Net decoder (Ronneberger et al. 2015, in the encoder/decoder form of segmentation_models_pytorch).

From the deepest feature up: upsample to the next skip's size (bilinear), concatenate, two 3x3 ConvBNReLU.
Four blocks use the stride 16, 8, 4 and 2 skips; the classifier runs at stride 2 and the Segmentor upsamples.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ..assemble import assemble_segmentor, check_num_classes
from ..conv_blocks import ConvBNReLU
from ..encoders import build_encoder
from ..registries import register_model
from ..segmentor import Decoder, Segmentor

UNET_CHANNELS = (256, 128, 64, 32)


def upsample_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Bilinear (align_corners=False) resize of ``x`` to ``ref``'s height and width (dynamic in ONNX)."""
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


class DoubleConv(nn.Sequential):
    """Two 3x3 ConvBNReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(ConvBNReLU(cin, cout, 3), ConvBNReLU(cout, cout, 3))


class UNetDecoder(Decoder):
    """Four up-blocks with skips from the stride 16, 8, 4, 2 features; ``channels`` per block, deepest first."""

    def __init__(self, in_channels: List[int], channels: Sequence[int] = UNET_CHANNELS) -> None:
        super().__init__()
        if len(channels) != 4:
            raise ConfigError(f"unet: channels needs 4 values (one per up-block), got {list(channels)}")
        blocks, cin = [], in_channels[4]
        for skip, cout in zip(in_channels[3::-1], channels):
            blocks.append(DoubleConv(cin + skip, cout))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = channels[-1]

    def forward(self, feats: List[torch.Tensor]) -> torch.Tensor:
        x = feats[4]
        for block, skip in zip(self.blocks, feats[3::-1]):
            x = block(torch.cat([upsample_to(x, skip), skip], dim=1))
        return x


@register_model("unet")
def unet(num_classes: int = 19, encoder: str = "resnet18", output_stride: int = 32, pretrained: Optional[str] = None,
         channels: Sequence[int] = UNET_CHANNELS, dropout: float = 0.1) -> Segmentor:
    """U-Net; ``size_divisor`` 32 (every encoder stage halves the size, skips must line up)."""
    check_num_classes(num_classes)
    enc = build_encoder(encoder, output_stride, pretrained)
    dec = UNetDecoder(enc.out_channels, tuple(channels))
    return assemble_segmentor("unet", encoder, enc, dec, num_classes, 32, dropout, {"channels": list(channels)})
