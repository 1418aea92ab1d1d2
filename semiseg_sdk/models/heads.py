"""Small extra networks that semi-supervised methods own (decoders never know about them).

* :class:`ProjectionHead` - pixel embeddings for contrastive methods (ReCo, CAC): 1x1 conv-BN-ReLU-1x1 conv.
* :class:`ClassifierHead` - dropout + 1x1 conv to class logits at feature resolution; e.g. CCT's auxiliary
  decoders on perturbed decoder features (the method upsamples with ``Segmentor.classify``-style interpolation).
* :class:`FCDiscriminator` - AdvSemiSeg's fully convolutional discriminator on (N, num_classes, H, W) probability
  maps: four 4x4 stride-2 convs (64, 128, 256, 512) with LeakyReLU 0.2, then a 4x4 stride-2 conv to one
  channel (logits at 1/32 resolution; the method upsamples them).
"""
from __future__ import annotations

import torch
from torch import nn


class ProjectionHead(nn.Module):
    """``Conv1x1(in, hidden) -> BN -> ReLU -> Conv1x1(hidden, out_dim)``; embeddings are not normalised."""

    def __init__(self, in_channels: int, out_dim: int = 256, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, out_dim, 1),
        )
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ClassifierHead(nn.Module):
    """``Dropout2d(p) -> Conv1x1(in, num_classes)``: logits at the input's resolution."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.conv = nn.Conv2d(in_channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.dropout(x))


class FCDiscriminator(nn.Module):
    """AdvSemiSeg (Hung et al. 2018) discriminator: class-probability maps -> real/fake logits (N, 1, H/32, W/32)."""

    def __init__(self, num_classes: int, width: int = 64) -> None:
        super().__init__()
        layers, cin = [], num_classes
        for mult in (1, 2, 4, 8):
            layers += [nn.Conv2d(cin, width * mult, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
            cin = width * mult
        layers.append(nn.Conv2d(cin, 1, 4, 2, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        return self.net(probs)
