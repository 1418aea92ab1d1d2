"""Put an encoder and a decoder together into a :class:`Segmentor` whose ``spec`` rebuilds it."""
from __future__ import annotations

from typing import Any, Dict

from ..errors import ConfigError
from .segmentor import Decoder, Encoder, Segmentor


def check_num_classes(num_classes: int) -> None:
    """Raise ConfigError unless ``num_classes`` is a positive int."""
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")


def assemble_segmentor(name: str, encoder_name: str, encoder: Encoder, decoder: Decoder, num_classes: int,
                       size_divisor: int, dropout: float, options: Dict[str, Any]) -> Segmentor:
    """A Segmentor with the encoder's own input normalisation and ``spec`` = every architecture argument.

    ``spec`` holds name, encoder, num_classes, output_stride, dropout and the decoder ``options`` (resolved values),
    never ``pretrained``: weights come from checkpoints, not from the spec.
    """
    spec = {"name": name, "encoder": encoder_name, "num_classes": num_classes,
            "output_stride": encoder.output_stride, "dropout": dropout, **options}
    return Segmentor(encoder, decoder, num_classes, spec, size_divisor=size_divisor, dropout=dropout,
                     mean=encoder.input_mean, std=encoder.input_std)
