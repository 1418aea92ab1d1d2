"""The model contract: an encoder (features at strides 2..32), a decoder that fuses them, and a 1x1 classifier.

Every 2D model of the SDK is a :class:`Segmentor`. It takes RGB images as float in [0, 1] (N, 3, H, W) and
normalises them inside (ImageNet mean/std buffers), so training, evaluation and the exported ONNX graph can never
disagree on normalisation. Methods that need more than logits use the three stages separately:

    feats = model.encode(x)            # list of 5 tensors, channels model.encoder.out_channels
    dec = model.decode(feats)          # (N, model.decoder.out_channels, h, w)
    logits = model.classify(dec, x.shape[-2:])   # (N, num_classes, H, W), bilinear, align_corners=False
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Encoder(nn.Module):
    """Base class of encoders: ``forward(x) -> [f2, f4, f8, f16, f32]`` (5 feature maps).

    ``out_channels[i]`` is the channel count of feature i; ``reductions[i]`` its real stride w.r.t. the input
    (with dilation for output stride 8 or 16, the last ones stay at 8 or 16).
    """

    out_channels: List[int]
    reductions: List[int]


class Decoder(nn.Module):
    """Base class of decoders: ``forward(features) -> Tensor`` with ``out_channels`` channels."""

    out_channels: int


class Segmentor(nn.Module):
    """Encoder + decoder + classifier with normalisation inside; ``spec`` rebuilds it via ``build_model(**spec)``."""

    def __init__(
        self,
        encoder: Encoder,
        decoder: Decoder,
        num_classes: int,
        spec: Dict[str, Any],
        size_divisor: int = 32,
        dropout: float = 0.1,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.num_classes = num_classes
        self.spec = dict(spec)
        self.size_divisor = size_divisor
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(decoder.out_channels, num_classes, kernel_size=1)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] RGB -> normalised input of the encoder."""
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def encode(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Encoder features of a [0, 1] RGB batch."""
        return self.encoder(self.normalize(x))

    def decode(self, feats: List[torch.Tensor]) -> torch.Tensor:
        """Decoder features (before dropout and classifier)."""
        return self.decoder(feats)

    def classify(self, dec: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """Logits upsampled to ``size`` (bilinear, align_corners=False)."""
        logits = self.classifier(self.dropout(dec))
        return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.decode(self.encode(x)), x.shape[-2:])

    def head_parameters(self) -> List[nn.Parameter]:
        """Parameters trained from scratch (decoder + classifier): methods give them ``lr * head_lr_mult``."""
        return list(self.decoder.parameters()) + list(self.classifier.parameters())

    def backbone_parameters(self) -> List[nn.Parameter]:
        """Encoder parameters (often pretrained)."""
        return list(self.encoder.parameters())
