"""The two model registries: ``ENCODERS`` (feature extractors) and ``MODELS`` (full networks, by decoder name)."""
from __future__ import annotations

from typing import Callable

from torch import nn

from ..registry import Registry

ENCODERS: Registry[Callable[..., nn.Module]] = Registry("encoder")
MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


def register_encoder(name: str):
    """Decorator registering an encoder class/constructor ``fn(output_stride: int) -> Encoder``."""
    return ENCODERS.register(name)


def register_model(name: str):
    """Decorator registering a model constructor ``fn(num_classes, encoder, output_stride, pretrained, **kw)``."""
    return MODELS.register(name)
