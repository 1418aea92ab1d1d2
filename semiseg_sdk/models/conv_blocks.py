"""Small building blocks shared by encoders and decoders."""
from __future__ import annotations

from typing import List

from torch import nn

from ..errors import ConfigError


class ConvBNReLU(nn.Sequential):
    """``Conv2d(bias=False) -> BatchNorm2d -> ReLU`` with 'same' padding for odd kernels."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 dilation: int = 1, groups: int = 1) -> None:
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


def kaiming_init(module: nn.Module) -> None:
    """torchvision's ResNet init for every submodule: He-normal (fan_out, ReLU) conv weights, BatchNorm 1 and 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def strides_and_dilations(stage_strides: List[int], output_stride: int) -> List[tuple]:
    """Per stage ``(stride, dilation of the stage's later layers, dilation of its first layer)``.

    Follows torchvision's ``replace_stride_with_dilation``: once the running stride reaches ``output_stride``,
    a stage's stride becomes 1 and its dilation grows by the removed stride; the first layer of that stage keeps
    the previous dilation. ``stage_strides`` are the strides of the stages (each 1 or 2).
    """
    if output_stride not in (8, 16, 32):
        raise ConfigError(f"output_stride must be 8, 16 or 32, got {output_stride!r}")
    current, dilation, out = 1, 1, []
    for s in stage_strides:
        previous = dilation
        if current * s > output_stride:
            dilation *= s
            s = 1
        current *= s
        out.append((s, dilation, previous))
    return out
