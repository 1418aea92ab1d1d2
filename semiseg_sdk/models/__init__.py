"""Model zoo: encoders, decoders and heads, found by name.

    model = build_model("deeplabv3plus", encoder="resnet50", num_classes=19, pretrained="resnet50.pth")
    same = build_model(**model.spec)          # same architecture, e.g. from a checkpoint's model_spec

Every 2D model is a :class:`Segmentor` (see ``segmentor.py``); ``vnet`` is a 3D network with the same ``spec``,
``num_classes`` and ``size_divisor`` attributes.
"""
from .build import build_model, list_models
from .checkpoint import load_checkpoint, load_inference_model, save_checkpoint
from .decoders.deeplabv3plus import (AtrousPaddingWarning, atrous_padding_warning, fit_aspp_rates_to_crop,
                                      fitted_aspp_rates)
from .encoders import build_encoder, list_encoders
from .heads import ClassifierHead, FCDiscriminator, ProjectionHead
from .registries import ENCODERS, MODELS, register_encoder, register_model
from .segmentor import Decoder, Encoder, Segmentor

__all__ = [
    "build_model", "list_models", "load_checkpoint", "load_inference_model", "save_checkpoint", "atrous_padding_warning", "AtrousPaddingWarning",
    "fit_aspp_rates_to_crop", "fitted_aspp_rates", "build_encoder", "list_encoders", "ProjectionHead", "ClassifierHead",
    "FCDiscriminator", "Segmentor", "Encoder", "Decoder", "MODELS", "ENCODERS", "register_model", "register_encoder",
]
