"""ResNet-18/50 encoders whose ``state_dict`` keys are exactly torchvision's (minus ``fc.*``).

A local torchvision ImageNet file (``torch.save(torchvision.models.resnet50(weights=...).state_dict())``) loads
with ``build_encoder("resnet50", pretrained="resnet50.pth")``; its ``fc.*`` keys are ignored. Output stride 8/16
replaces the strides of ``layer3``/``layer4`` with dilation, like torchvision's ``replace_stride_with_dilation``.
Inputs are normalised with ImageNet mean/std (the Segmentor does it).
"""
from __future__ import annotations

from typing import List, Optional, Type, Union

import torch
from torch import nn

from ..conv_blocks import kaiming_init, strides_and_dilations
from ..registries import register_encoder
from ..segmentor import IMAGENET_MEAN, IMAGENET_STD, Encoder


def _conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual (ResNet-18/34). Unlike torchvision's, it accepts dilation > 1."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None,
                 dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, planes, stride, dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes, 1, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride, dilation) -> 1x1 x4 with a residual (ResNet-50 "v1.5": stride on the 3x3)."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None,
                 dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


Block = Union[Type[BasicBlock], Type[Bottleneck]]


class ResNetEncoder(Encoder):
    """ResNet trunk returning ``[relu(bn1(conv1)), layer1, layer2, layer3, layer4]`` (strides 2, 4, 8, 16, 32)."""

    ignored_pretrained_prefixes = ("fc.",)
    input_mean = IMAGENET_MEAN
    input_std = IMAGENET_STD

    def __init__(self, block: Block, layers: List[int], output_stride: int = 32) -> None:
        super().__init__()
        plan = strides_and_dilations([2, 2, 2, 2, 2], output_stride)  # conv1, maxpool, layer2..4
        self.output_stride = output_stride
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self._cin = 64
        self.layer1 = self._make_layer(block, 64, layers[0], (1, 1, 1))
        self.layer2 = self._make_layer(block, 128, layers[1], plan[2])
        self.layer3 = self._make_layer(block, 256, layers[2], plan[3])
        self.layer4 = self._make_layer(block, 512, layers[3], plan[4])
        width = [64 * block.expansion * m for m in (1, 2, 4, 8)]
        self.out_channels = [64] + width
        reductions, r = [], 1
        for stride, _, _ in plan:
            r *= stride
            reductions.append(r)
        self.reductions = reductions
        kaiming_init(self)

    def _make_layer(self, block: Block, planes: int, blocks: int, plan: tuple) -> nn.Sequential:
        stride, dilation, first_dilation = plan
        downsample = None
        if stride != 1 or self._cin != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self._cin, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self._cin, planes, stride, downsample, first_dilation)]
        self._cin = planes * block.expansion
        layers += [block(self._cin, planes, 1, None, dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        f2 = self.relu(self.bn1(self.conv1(x)))
        f4 = self.layer1(self.maxpool(f2))
        f8 = self.layer2(f4)
        f16 = self.layer3(f8)
        f32 = self.layer4(f16)
        return [f2, f4, f8, f16, f32]


@register_encoder("resnet18")
def resnet18(output_stride: int = 32) -> ResNetEncoder:
    """ResNet-18 (BasicBlock, layers 2-2-2-2), channels 64, 64, 128, 256, 512."""
    return ResNetEncoder(BasicBlock, [2, 2, 2, 2], output_stride)


@register_encoder("resnet50")
def resnet50(output_stride: int = 32) -> ResNetEncoder:
    """ResNet-50 (Bottleneck, layers 3-4-6-3), channels 64, 256, 512, 1024, 2048."""
    return ResNetEncoder(Bottleneck, [3, 4, 6, 3], output_stride)
