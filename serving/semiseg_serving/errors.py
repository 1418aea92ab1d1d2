"""Errors of the torch-free runtime; each message names the file or the argument that was wrong.

The runtime must not import ``semiseg_sdk`` (it ships without torch), so it has its own small error family.
``ServingError`` subclasses ``ValueError`` so callers that already catch ``ValueError`` keep working.
"""
from __future__ import annotations


class ServingError(ValueError):
    """Base class of the runtime's errors."""


class ModelFileError(ServingError):
    """The model file is missing, is not ONNX, or is not a semiseg export (no semiseg metadata)."""


class ImageError(ServingError):
    """An input image has an unsupported shape or dtype, or could not be decoded."""
