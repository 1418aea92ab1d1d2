"""DeepLabV3+ decoder (Chen et al. 2018): ASPP on the last feature + a low-level skip from stride 4.

ASPP: a 1x1 branch, three 3x3 atrous branches (rates 6/12/18 at output stride 16, doubled at 8, halved at 32) and an
image-pooling branch (global mean -> 1x1 conv -> ReLU, broadcast back), projected to ``channels`` with dropout
``aspp_dropout`` 0.5 (as in torchvision's ASPP; ST++'s uses ``Dropout2d(0.5)``, UniMatch's DeepLab-v3+ has no dropout
layer: ``aspp_dropout=0, dropout=0`` builds that network). The pooling branch has no BatchNorm so that a batch of one
image trains.

The default rates were chosen for 513-px crops (a 33x33 feature map at stride 16). On a small crop the map is so small
that an atrous branch whose rate reaches past it sees only zero padding around its centre tap while training (its
off-centre weights get no gradient and keep their initial values), yet sees real pixels at evaluation on whole frames:
:func:`fitted_aspp_rates` scales the rates to the crop's feature map, and :func:`rates_in_padding` tells which rates
a crop leaves in padding (the trainer warns about them). The decoder reduces the stride-4 feature to 48
channels, concatenates the upsampled ASPP output and applies two 3x3 ConvBNReLU.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ..assemble import assemble_segmentor, check_num_classes
from ..conv_blocks import ConvBNReLU
from ..encoders import build_encoder
from ..registries import register_model
from ..segmentor import Decoder, Segmentor
from .unet import upsample_to

BASE_RATES = (6, 12, 18)  # at output stride 16
REFERENCE_MAP = 33  # the feature map the base rates were chosen for: a 513-px crop at output stride 16


def feature_map_size(crop_size: Sequence[int], output_stride: int) -> int:
    """Side of the smaller dimension of the deepest feature map of a ``crop_size`` (H, W) input (convolutions round up)."""
    return max(1, -(-min(crop_size) // output_stride))


def rates_in_padding(rates: Sequence[int], crop_size: Sequence[int], output_stride: int) -> List[int]:
    """The atrous rates whose off-centre taps fall in padding at every position of a ``crop_size`` feature map.

    A 3x3 tap at offset ``rate`` from position p of a side-s map is inside iff 0 <= p +- rate < s; for rate >= s no
    position has one, so the branch trains as a 1x1 convolution of its centre weights.
    """
    side = feature_map_size(crop_size, output_stride)
    return [int(r) for r in rates if r >= side]


def fitted_aspp_rates(crop_size: Sequence[int], output_stride: int = 16) -> List[int]:
    """ASPP rates that span the same share of the crop's feature map as 6/12/18 of a 33x33 map, strictly increasing.

    For example a 96-px crop at stride 16 (6x6 map) gets [1, 2, 3], a 321-px crop [4, 8, 11], 513 px [6, 12, 18].
    """
    side = feature_map_size(crop_size, output_stride)
    rates: List[int] = []
    for base in BASE_RATES:
        r = max(1, round(base * side / REFERENCE_MAP))
        rates.append(max(r, rates[-1] + 1) if rates else r)
    return rates


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling with an image-pooling branch."""

    def __init__(self, in_channels: int, channels: int, rates: Sequence[int], dropout: float = 0.5) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [ConvBNReLU(in_channels, channels, 1)] + [ConvBNReLU(in_channels, channels, 3, dilation=r) for r in rates]
        )
        self.image_pool = nn.Sequential(nn.Conv2d(in_channels, channels, 1, bias=True), nn.ReLU(inplace=True))
        self.project = nn.Sequential(ConvBNReLU(channels * (len(rates) + 2), channels, 1),
                                     nn.Dropout(dropout) if dropout > 0 else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [branch(x) for branch in self.branches]
        pooled = self.image_pool(x.mean(dim=(2, 3), keepdim=True))
        outs.append(F.interpolate(pooled, size=x.shape[-2:], mode="bilinear", align_corners=False))
        return self.project(torch.cat(outs, dim=1))


class DeepLabV3PlusDecoder(Decoder):
    """ASPP (stride ``output_stride``) + stride-4 skip; ``out_channels`` = ``channels``."""

    def __init__(self, in_channels: List[int], output_stride: int, channels: int = 256, skip_channels: int = 48,
                 rates: Optional[Sequence[int]] = None, aspp_dropout: float = 0.5) -> None:
        super().__init__()
        self.rates = list(rates) if rates is not None else [r * 16 // output_stride for r in BASE_RATES]
        self.aspp = ASPP(in_channels[-1], channels, self.rates, aspp_dropout)
        self.reduce_skip = ConvBNReLU(in_channels[1], skip_channels, 1)
        self.fuse = nn.Sequential(ConvBNReLU(channels + skip_channels, channels, 3), ConvBNReLU(channels, channels, 3))
        self.out_channels = channels

    def forward(self, feats: List[torch.Tensor]) -> torch.Tensor:
        skip = self.reduce_skip(feats[1])
        x = upsample_to(self.aspp(feats[-1]), skip)
        return self.fuse(torch.cat([x, skip], dim=1))


@register_model("deeplabv3plus")
def deeplabv3plus(num_classes: int = 19, encoder: str = "resnet18", output_stride: int = 16,
                  pretrained: Optional[str] = None, channels: int = 256, dropout: float = 0.1,
                  aspp_rates: Optional[Sequence[int]] = None, aspp_dropout: float = 0.5) -> Segmentor:
    """DeepLabV3+; ``size_divisor`` = output stride.

    aspp_rates: the three atrous rates (None = 6/12/18 scaled by 16 / output_stride; see :func:`fitted_aspp_rates` for
    small crops; a training config may say ``"fit"``, which the trainer resolves for its crop); aspp_dropout: dropout
    after the ASPP projection; dropout: Dropout2d before the classifier.
    """
    check_num_classes(num_classes)
    if aspp_rates is not None and (isinstance(aspp_rates, str) or len(aspp_rates) == 0
                                   or any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in aspp_rates)):
        raise ConfigError(f"model deeplabv3plus: aspp_rates must be a list of positive integers, got {aspp_rates!r}")
    enc = build_encoder(encoder, output_stride, pretrained)
    dec = DeepLabV3PlusDecoder(enc.out_channels, output_stride, channels, rates=aspp_rates, aspp_dropout=aspp_dropout)
    return assemble_segmentor("deeplabv3plus", encoder, enc, dec, num_classes, output_stride, dropout,
                              {"channels": channels, "aspp_rates": dec.rates, "aspp_dropout": aspp_dropout})


def fit_aspp_rates_to_crop(model_args: Dict[str, Any], crop_size: Sequence[int], output_stride: Optional[int]) -> Dict[str, Any]:
    """``model_args`` with ``"aspp_rates": "fit"`` replaced by :func:`fitted_aspp_rates` of the training crop."""
    if model_args.get("aspp_rates") != "fit":
        return dict(model_args)
    return {**model_args, "aspp_rates": fitted_aspp_rates(crop_size, output_stride or 16)}


class AtrousPaddingWarning(UserWarning):
    """Training crops too small for the ASPP's atrous rates (see :func:`atrous_padding_warning`)."""


def atrous_padding_warning(model: nn.Module, crop_size: Sequence[int]) -> Optional[str]:
    """A one-line warning when ``model`` has an ASPP whose rates leave taps only in padding on ``crop_size`` crops.

    Returns None for models without an ASPP or when every rate reaches real pixels of the crop's feature map.
    """
    decoder = getattr(model, "decoder", None)
    rates, spec = getattr(decoder, "rates", None), getattr(model, "spec", {})
    if not isinstance(decoder, DeepLabV3PlusDecoder) or rates is None:
        return None
    stride = int(spec.get("output_stride", 16))
    padded = rates_in_padding(rates, crop_size, stride)
    if not padded:
        return None
    side = feature_map_size(crop_size, stride)
    return (f"ASPP rates {padded} exceed the {side}x{side} feature map of {tuple(crop_size)} crops at output stride "
            f"{stride}: their off-centre taps see only padding while training and real pixels at evaluation; use "
            f"--model_args '{{\"aspp_rates\": \"fit\"}}' (rates {fitted_aspp_rates(crop_size, stride)} for this crop) "
            "or a larger crop")
