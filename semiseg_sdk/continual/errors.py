"""Errors of the continual loop; they subclass the SDK's ``SemisegError`` so the CLI prints them as one line."""
from __future__ import annotations

from ..errors import SemisegError


class RegistryError(SemisegError, RuntimeError):
    """The registry folder is missing, incomplete, busy or asked for something it cannot do; names the path."""


class RefreshInterrupted(SemisegError, RuntimeError):
    """A refresh stopped on Ctrl-C/SIGTERM between two steps; the journal keeps it, the next ``run`` resumes it."""
