"""Errors a user can act on: each names the file or field that was wrong."""
from __future__ import annotations


class SemisegError(Exception):
    """Base class of the SDK's own errors (the CLI prints these without a traceback)."""


class DataError(SemisegError, ValueError):
    """A data file or folder is missing, unreadable or inconsistent; the message names the path."""


class CheckpointError(SemisegError, ValueError):
    """A checkpoint is missing, unreadable, or does not fit the model it is loaded into."""


class ConfigError(SemisegError, ValueError):
    """A configuration value or CLI flag is invalid; the message names the field."""
