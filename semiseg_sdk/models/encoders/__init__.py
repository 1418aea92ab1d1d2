"""Encoders by name: ``build_encoder("resnet50", output_stride=16, pretrained="resnet50.pth")``.

Every encoder returns 5 feature maps (strides 2, 4, 8, 16, 32 before dilation) and declares ``out_channels``,
``reductions``, ``output_stride`` and the input normalisation its weights expect (``input_mean``/``input_std``
on [0, 1] RGB).
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

from ...errors import ConfigError
from ..registries import ENCODERS
from ..segmentor import Encoder
from . import dinov2, efficientnet_lite, resnet, tiny  # noqa: F401  (registration)
from .weights import load_encoder_file

# Encoders whose ImageNet weights ship inside an installed package (never downloaded).
PACKAGED_IMAGENET: Dict[str, Callable[[], Path]] = {
    f"efficientnet_{variant}": functools.partial(efficientnet_lite.imagenet_weights_path, variant)
    for variant in efficientnet_lite.LITE_SCALING
}


def list_encoders() -> List[str]:
    """Names of the registered encoders."""
    return ENCODERS.names()


def build_encoder(name: str, output_stride: int = 32, pretrained: Optional[Union[str, Path]] = None) -> Encoder:
    """Build encoder ``name`` at ``output_stride`` (8, 16 or 32).

    ``pretrained``: None (random init), ``"imagenet"`` (only where the weights ship in an installed package, see
    ``PACKAGED_IMAGENET``) or a local state_dict file (e.g. torchvision's ResNet file; the classifier keys are
    ignored, every other key must match one for one, else ``CheckpointError`` names the file and the keys).
    """
    if name not in ENCODERS:
        raise ConfigError(f"encoder: unknown encoder {name!r}; known: {', '.join(list_encoders())}")
    encoder = ENCODERS.get(name)(output_stride=output_stride)
    if pretrained is None:
        return encoder
    if str(pretrained) == "imagenet":
        if name not in PACKAGED_IMAGENET:
            raise ConfigError(
                f"pretrained: no packaged ImageNet weights for encoder {name!r} (only for "
                f"{', '.join(sorted(PACKAGED_IMAGENET))}); pass a local weights file path instead"
            )
        pretrained = PACKAGED_IMAGENET[name]()
    load_encoder_file(encoder, pretrained, encoder.ignored_pretrained_prefixes)
    return encoder
