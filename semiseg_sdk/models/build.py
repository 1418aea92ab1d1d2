"""``build_model(name, ...)``: any registered model by name, with arguments checked against its constructor."""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, List, Optional, Union

from torch import nn

from ..errors import ConfigError
from . import decoders, vnet  # noqa: F401  (registration)
from .registries import MODELS


def list_models(dims: Optional[int] = None) -> List[str]:
    """Names of the registered models; ``dims=2`` only 2D Segmentors, ``dims=3`` only volume models (``vnet``).

    A model constructor declares 3D input with a ``spatial_dims = 3`` attribute (default 2).
    """
    names = MODELS.names()
    if dims is None:
        return names
    return [n for n in names if getattr(MODELS.get(n), "spatial_dims", 2) == dims]


def build_model(name: str, encoder: Optional[str] = None, num_classes: int = 19, output_stride: Optional[int] = None,
                pretrained: Optional[Union[str, Path]] = None, **kwargs: Any) -> nn.Module:
    """Build model ``name``; for 2D models a :class:`Segmentor` whose ``spec`` rebuilds it (``build_model(**spec)``).

    encoder: encoder name (None = "resnet18"); output_stride: 8, 16 or 32 (None = the decoder's default: 16 for
    fcn/pspnet/deeplabv3plus, 32 for unet/unetplusplus); pretrained: None, "imagenet" (packaged weights only,
    never downloaded) or a local encoder weights file; kwargs: decoder options (e.g. ``channels``, ``dropout``;
    ``in_channels``/``base_channels`` for vnet). Unknown names or options raise ConfigError.
    """
    if name not in MODELS:
        raise ConfigError(f"model: unknown model {name!r}; known: {', '.join(list_models())}")
    fn = MODELS.get(name)
    given = dict(kwargs)
    for key, value in (("encoder", encoder), ("output_stride", output_stride), ("pretrained", pretrained)):
        if value is not None:
            given[key] = value
    accepted = inspect.signature(fn).parameters
    unknown = sorted(k for k in given if k not in accepted)
    if unknown:
        options = ", ".join(p for p in accepted if p != "num_classes")
        raise ConfigError(f"model {name!r}: unknown option(s) {', '.join(unknown)}; options: {options}")
    return fn(num_classes=num_classes, **given)
