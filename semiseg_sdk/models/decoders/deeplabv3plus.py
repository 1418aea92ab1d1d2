"""DeepLabV3+ decoder (Chen et al. 2018): ASPP on the last feature + a low-level skip from stride 4.

ASPP: a 1x1 branch, three 3x3 atrous branches (rates 6/12/18 at output stride 16, doubled at 8, halved at 32) and an
image-pooling branch (global mean -> 1x1 conv -> ReLU, broadcast back; ``image_pool`` [h, w] pools over windows of
that many pixels instead, see :class:`ASPP`), projected to ``channels`` with dropout
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
    """Atrous spatial pyramid pooling with an image-pooling branch.

    ``pool_cells`` (h, w): the image-pooling window in feature cells. None averages the whole map (torchvision's and
    UniMatch's ASPP). A window averages each ``pool_cells`` window of a larger map (stride 1, no padding; the result
    resized to the map), and the whole map when it is no larger: the DeepLab reference implementation pools over the
    training crop this way, so that a network trained on small crops sees the same context size on a whole frame.
    """

    def __init__(self, in_channels: int, channels: int, rates: Sequence[int], dropout: float = 0.5,
                 pool_cells: Optional[Sequence[int]] = None) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [ConvBNReLU(in_channels, channels, 1)] + [ConvBNReLU(in_channels, channels, 3, dilation=r) for r in rates]
        )
        self.image_pool = nn.Sequential(nn.Conv2d(in_channels, channels, 1, bias=True), nn.ReLU(inplace=True))
        self.project = nn.Sequential(ConvBNReLU(channels * (len(rates) + 2), channels, 1),
                                     nn.Dropout(dropout) if dropout > 0 else nn.Identity())
        self.pool_cells = tuple(int(c) for c in pool_cells) if pool_cells is not None else None

    def pooled_context(self, x: torch.Tensor) -> torch.Tensor:
        """The image-pooling branch's output at the resolution of ``x``."""
        h, w = x.shape[-2:]
        cells = self.pool_cells
        if cells is not None and torch.onnx.is_in_onnx_export():
            pooled = window_means(x, cells)  # one graph for every input size
        elif cells is None or (h <= cells[0] and w <= cells[1]):
            pooled = x.mean(dim=(2, 3), keepdim=True)  # the whole map (the same operation as without a window)
        else:
            pooled = F.avg_pool2d(x, (min(cells[0], h), min(cells[1], w)), stride=1)
        return F.interpolate(self.image_pool(pooled), size=(h, w), mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [branch(x) for branch in self.branches]
        outs.append(self.pooled_context(x))
        return self.project(torch.cat(outs, dim=1))


def window_means(x: torch.Tensor, cells: Sequence[int]) -> torch.Tensor:
    """The means of every (h, w) = ``cells`` window inside ``x`` (stride 1), over the whole extent along a side
    shorter than the window, with no branch on the input's size, so that a traced graph serves every size.

    Zero-padding the bottom/right by the window less one and dividing the windowed sums by the windowed counts of
    real cells gives, at row i, the mean of rows [i, i + h) that exist: the rows 0 .. H - h are the full windows
    (the first row alone when H < h: the mean of them all); the rest are cut off.
    """
    kh, kw = int(cells[0]), int(cells[1])
    pad = (0, kw - 1, 0, kh - 1)
    sums = F.avg_pool2d(F.pad(x, pad), (kh, kw), stride=1)
    counts = F.avg_pool2d(F.pad(torch.ones_like(x[:, :1]), pad), (kh, kw), stride=1)
    h, w = x.shape[-2:]
    rows = torch.clamp(torch.as_tensor(h) - (kh - 1), min=1)  # traced from the input's shape when exported
    cols = torch.clamp(torch.as_tensor(w) - (kw - 1), min=1)
    return (sums / counts)[:, :, :rows, :cols]


class DeepLabV3PlusDecoder(Decoder):
    """ASPP (stride ``output_stride``) + stride-4 skip; ``out_channels`` = ``channels``."""

    def __init__(self, in_channels: List[int], output_stride: int, channels: int = 256, skip_channels: int = 48,
                 rates: Optional[Sequence[int]] = None, aspp_dropout: float = 0.5,
                 image_pool: Optional[Sequence[int]] = None) -> None:
        super().__init__()
        self.rates = list(rates) if rates is not None else [r * 16 // output_stride for r in BASE_RATES]
        cells = None if image_pool is None else [-(-int(p) // output_stride) for p in image_pool]  # rounded up
        self.aspp = ASPP(in_channels[-1], channels, self.rates, aspp_dropout, cells)
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
                  aspp_rates: Optional[Sequence[int]] = None, aspp_dropout: float = 0.5,
                  image_pool: Optional[Sequence[int]] = None) -> Segmentor:
    """DeepLabV3+; ``size_divisor`` = output stride.

    aspp_rates: the three atrous rates (None = 6/12/18 scaled by 16 / output_stride; see :func:`fitted_aspp_rates` for
    small crops; a training config may say ``"fit"``, which the trainer resolves for its crop); aspp_dropout: dropout
    after the ASPP projection; dropout: Dropout2d before the classifier; image_pool: the image-pooling window [h, w]
    in input pixels (None: the whole image; a training config may say ``"crop"``, the training crop, see :class:`ASPP`).
    """
    check_num_classes(num_classes)
    if aspp_rates is not None and (isinstance(aspp_rates, str) or len(aspp_rates) == 0
                                   or any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in aspp_rates)):
        raise ConfigError(f"model deeplabv3plus: aspp_rates must be a list of positive integers, got {aspp_rates!r}")
    if image_pool is not None and (isinstance(image_pool, str) or len(image_pool) != 2
                                   or any(isinstance(p, bool) or not isinstance(p, int) or p < 1 for p in image_pool)):
        raise ConfigError(f"model deeplabv3plus: image_pool must be [height, width] in pixels (or \"crop\" in a "
                          f"training config), got {image_pool!r}")
    enc = build_encoder(encoder, output_stride, pretrained)
    dec = DeepLabV3PlusDecoder(enc.out_channels, output_stride, channels, rates=aspp_rates, aspp_dropout=aspp_dropout,
                               image_pool=image_pool)
    spec = {"channels": channels, "aspp_rates": dec.rates, "aspp_dropout": aspp_dropout}
    if image_pool is not None:  # only when set, so that specs saved before the option rebuild unchanged
        spec["image_pool"] = [int(p) for p in image_pool]
    return assemble_segmentor("deeplabv3plus", encoder, enc, dec, num_classes, output_stride, dropout, spec)


def fit_model_args_to_crop(model_args: Dict[str, Any], crop_size: Sequence[int],
                           output_stride: Optional[int]) -> Dict[str, Any]:
    """``model_args`` with the settings that follow the training crop resolved: ``"aspp_rates": "fit"`` becomes
    :func:`fitted_aspp_rates` of the crop, ``"image_pool": "crop"`` the crop's [height, width]."""
    out = dict(model_args)
    if out.get("aspp_rates") == "fit":
        out["aspp_rates"] = fitted_aspp_rates(crop_size, output_stride or 16)
    if out.get("image_pool") == "crop":
        out["image_pool"] = [int(c) for c in crop_size]
    return out


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
