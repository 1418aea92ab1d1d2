"""Export errors: they subclass the SDK's ``SemisegError`` so the CLI prints them without a traceback."""
from __future__ import annotations

from semiseg_sdk.errors import SemisegError


class ExportError(SemisegError, RuntimeError):
    """The model cannot be exported, or the output cannot be written; the message names the file or model."""


class ParityError(ExportError):
    """The exported graph disagrees with PyTorch beyond the stated tolerance; no file was written."""
