"""A very small encoder (channels 8, 16, 24, 32, 48) so the models x methods test matrix runs in seconds on CPU."""
from __future__ import annotations

from typing import List

import torch
from torch import nn

from ..conv_blocks import ConvBNReLU, strides_and_dilations
from ..registries import register_encoder
from ..segmentor import IMAGENET_MEAN, IMAGENET_STD, Encoder

TINY_CHANNELS = (8, 16, 24, 32, 48)


class TinyEncoder(Encoder):
    """Five stages of ``ConvBNReLU(stride 2) + ConvBNReLU``; no pretrained weights exist for it."""

    ignored_pretrained_prefixes: tuple = ()
    input_mean = IMAGENET_MEAN
    input_std = IMAGENET_STD

    def __init__(self, output_stride: int = 32, channels: tuple = TINY_CHANNELS) -> None:
        super().__init__()
        plan = strides_and_dilations([2] * len(channels), output_stride)
        self.output_stride = output_stride
        stages, cin, r, reductions = [], 3, 1, []
        for cout, (stride, dilation, first_dilation) in zip(channels, plan):
            stages.append(nn.Sequential(
                ConvBNReLU(cin, cout, 3, stride, first_dilation),
                ConvBNReLU(cout, cout, 3, 1, dilation),
            ))
            cin, r = cout, r * stride
            reductions.append(r)
        self.stages = nn.ModuleList(stages)
        self.out_channels = list(channels)
        self.reductions = reductions

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


@register_encoder("tiny")
def tiny(output_stride: int = 32) -> TinyEncoder:
    """A small 5-stage encoder without pretrained weights (fast tests, smoke runs)."""
    return TinyEncoder(output_stride)
