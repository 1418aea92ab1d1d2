"""DPT decoder (Ranftl et al. 2021) for ViT encoders, as UniMatch V2 (LiheYoung/UniMatch-V2) builds it.

Four token maps at the patch stride are projected (1x1) and brought to strides 4/14, 8/14, 1 and 2 of the patch grid
(transposed convolutions x4 and x2, identity, a stride-2 convolution), each reduced to ``features`` channels (3x3,
no bias), and fused from the coarsest up by residual fusion blocks (two residual conv units, bilinear x2 resize with
align_corners=True, 1x1 conv). A 3x3 convolution + ReLU ends the decoder; the Segmentor's 1x1 classifier and its
bilinear resize to the input size follow (UniMatch V2's last layers are the same, its final resize uses
align_corners=True).

UniMatch V2's sizes: ViT-S features 64, projections [48, 96, 192, 384]; ViT-B features 128, [96, 192, 384, 768];
no batch norm.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ..assemble import assemble_segmentor, check_num_classes
from ..encoders import build_encoder
from ..registries import register_model
from ..segmentor import Decoder, Segmentor

# UniMatch V2's settings per encoder width: (features, projection channels)
DPT_SIZES = {384: (64, (48, 96, 192, 384)), 768: (128, (96, 192, 384, 768))}


class ResidualConvUnit(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """(coarser path [+ residual unit of the skip]) -> residual unit -> resize -> 1x1 conv."""

    def __init__(self, channels: int, with_skip: bool = True) -> None:
        super().__init__()
        self.skip_unit = ResidualConvUnit(channels) if with_skip else None
        self.unit = ResidualConvUnit(channels)
        self.out_conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, skip: Optional[torch.Tensor] = None,
                size: Optional[Sequence[int]] = None) -> torch.Tensor:
        if self.skip_unit is not None and skip is not None:
            x = x + self.skip_unit(skip)
        x = self.unit(x)
        x = F.interpolate(x, size=size, scale_factor=None if size is not None else 2, mode="bilinear",
                          align_corners=True)
        return self.out_conv(x)


class DPTDecoder(Decoder):
    """Reassemble four patch-grid maps at four scales and fuse them; ``out_channels`` = ``features``."""

    def __init__(self, in_channels: List[int], features: int, projections: Sequence[int]) -> None:
        super().__init__()
        if len(in_channels) != 4 or len(projections) != 4:
            raise ConfigError(f"dpt: needs 4 encoder maps and 4 projection widths, got {len(in_channels)} maps "
                              f"and {list(projections)}")
        p = list(projections)
        self.projects = nn.ModuleList(nn.Conv2d(c, o, 1) for c, o in zip(in_channels, p))
        self.resize = nn.ModuleList([
            nn.ConvTranspose2d(p[0], p[0], kernel_size=4, stride=4), nn.ConvTranspose2d(p[1], p[1], kernel_size=2, stride=2),
            nn.Identity(), nn.Conv2d(p[3], p[3], kernel_size=3, stride=2, padding=1),
        ])
        self.reduce = nn.ModuleList(nn.Conv2d(o, features, 3, padding=1, bias=False) for o in p)
        self.fuse = nn.ModuleList(FusionBlock(features, with_skip=i < 3) for i in range(4))  # the coarsest has none
        self.head = nn.Sequential(nn.Conv2d(features, features, 3, padding=1), nn.ReLU(inplace=True))
        self.out_channels = features

    def forward(self, feats: List[torch.Tensor]) -> torch.Tensor:
        maps = [reduce(resize(project(f))) for f, project, resize, reduce in
                zip(feats, self.projects, self.resize, self.reduce)]
        x = self.fuse[3](maps[3], size=maps[2].shape[-2:])
        x = self.fuse[2](x, maps[2], size=maps[1].shape[-2:])
        x = self.fuse[1](x, maps[1], size=maps[0].shape[-2:])
        x = self.fuse[0](x, maps[0])
        return self.head(x)


@register_model("dpt")
def dpt(num_classes: int = 19, encoder: str = "dinov2_vits14", output_stride: int = 14, pretrained: Optional[str] = None,
        features: Optional[int] = None, projections: Optional[Sequence[int]] = None, dropout: float = 0.0) -> Segmentor:
    """DPT on a ViT encoder (dinov2_vits14, dinov2_vitb14); ``size_divisor`` 14 (the patch size).

    output_stride: 14 only (a ViT has one stride, its patch size); features / projections: None = UniMatch V2's values
    for the encoder's width; dropout: Dropout2d before the classifier (UniMatch V2 has none).
    """
    check_num_classes(num_classes)
    if output_stride != 14:
        raise ConfigError(f"model dpt: output_stride {output_stride!r}; a ViT encoder has one stride, its patch size 14")
    enc = build_encoder(encoder, 32, pretrained)  # a ViT keeps its patch stride; 32 is valid for any CNN
    if getattr(enc, "patch_size", None) is None:
        raise ConfigError(f"model dpt: encoder {encoder!r} is not a ViT; use dinov2_vits14 or dinov2_vitb14 "
                          "(CNN encoders go with deeplabv3plus, unet, fcn, pspnet, unetplusplus)")
    default_features, default_projections = DPT_SIZES.get(enc.out_channels[0], DPT_SIZES[384])  # else ViT-S's
    features = int(features or default_features)
    projections = [int(c) for c in (projections or default_projections)]
    dec = DPTDecoder(enc.out_channels, features, projections)
    return assemble_segmentor("dpt", encoder, enc, dec, num_classes, enc.patch_size, dropout,
                              {"features": features, "projections": projections})
