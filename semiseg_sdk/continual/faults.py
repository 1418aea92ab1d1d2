"""Test-only fault injection: ``SEMISEG_CRASH_AT=<point>`` kills the process at that point with ``os._exit(137)``.

The crash tests run ``semiseg continual run`` in a subprocess with this variable set, then check that the next
``run`` completes the refresh without losing or double-counting a field image. Points, in refresh order:

    ingest   while copying accepted images into the store (after the first copy, before the journal exists)
    train    during fine-tuning, at the first step after a resumable checkpoint (``last.pt``) was written
    gate     after the candidate was evaluated, before the gate result is recorded
    export   inside the half-built version folder, after ``model.onnx`` was written, before the folder is renamed
    promote  after the new version became visible, before ``current`` is switched to it
    switch   after ``current`` was switched, before the history line is appended

Unset (production), every call costs one environment lookup and does nothing. Exit status 137 mimics SIGKILL.
"""
from __future__ import annotations

import os
import sys

ENV = "SEMISEG_CRASH_AT"
POINTS = ("ingest", "train", "gate", "export", "promote", "switch")


def crash_point(name: str) -> None:
    """Kill the process now (no cleanup, no ``finally``) when ``SEMISEG_CRASH_AT`` names this point."""
    if os.environ.get(ENV) == name:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(137)
