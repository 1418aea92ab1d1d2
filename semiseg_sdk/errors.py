"""Errors a user can act on: each names the file or field that was wrong."""
from __future__ import annotations

import difflib
import re
from typing import Iterable


class SemisegError(Exception):
    """Base class of the SDK's own errors (the CLI prints these without a traceback)."""


class DataError(SemisegError, ValueError):
    """A data file or folder is missing, unreadable or inconsistent; the message names the path."""


class CheckpointError(SemisegError, ValueError):
    """A checkpoint is missing, unreadable, or does not fit the model it is loaded into."""


class ConfigError(SemisegError, ValueError):
    """A configuration value or CLI flag is invalid; the message names the field."""


def did_you_mean(word: str, choices: Iterable[str], shown: str = "{!r}") -> str:
    """``"; did you mean <closest>?"`` for a misspelt ``word`` (the closest of ``choices``, formatted by ``shown``,
    e.g. ``"--{}"`` for a flag), or ``""`` when none is close."""
    close = difflib.get_close_matches(word, sorted(choices), n=1)
    return f"; did you mean {shown.format(close[0])}?" if close else ""


class TrainingInterrupted(SemisegError):
    """A run stopped early at a signal; its ``last.pt`` holds the step it reached and ``--resume`` continues it."""

    def __init__(self, message: str, step: int, signum: int) -> None:
        super().__init__(message)
        self.step, self.signum = step, signum

    @property
    def exit_code(self) -> int:
        """The shell's code for death by this signal (128 + signal number): 143 for SIGTERM, 130 for SIGINT."""
        return 128 + self.signum


def error_line(exc: BaseException) -> str:
    """The message the CLI prints for an error. An error raised in a data-loader worker reaches the main process as
    torch's "Caught <Error> in DataLoader worker process N" plus the worker's traceback: its last line is the error."""
    text = str(exc).strip()
    if text.startswith("Caught ") and "Original Traceback" in text:
        last = text.splitlines()[-1]
        match = re.match(r"^[A-Za-z_][\w.]*(?:Error|Exception): (.*)$", last)
        return match.group(1) if match else last
    return text or type(exc).__name__
