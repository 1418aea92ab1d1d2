"""Stop a training run cleanly on SIGTERM or Ctrl-C: finish the step, write ``last.pt``, exit resumable.

Schedulers (SLURM, Kubernetes, ``timeout``, a spot instance's notice) send SIGTERM and kill the process a little
later; a run that only checkpoints at evaluations would lose everything since the last one. While
:func:`stop_requests` is active the first SIGTERM or SIGINT is only recorded; the training loop polls it after each
step, writes a resumable checkpoint and raises :class:`TrainingInterrupted`. A second Ctrl-C interrupts at once.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator, Optional


SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """The first stop signal received while active (``signum``), or None."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None

    def __bool__(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is None:
            self.signum = signum
        if signum == signal.SIGINT:  # a second Ctrl-C is the user insisting: default behaviour (KeyboardInterrupt)
            signal.signal(signal.SIGINT, signal.default_int_handler)


@contextlib.contextmanager
def stop_requests() -> Iterator[StopRequest]:
    """Record SIGTERM/SIGINT in the yielded :class:`StopRequest` instead of dying; previous handlers come back on exit.

    Outside the main thread signals cannot be caught: the request then never fires and the defaults stay."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, request._handle)
    try:
        yield request
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
