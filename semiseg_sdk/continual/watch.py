"""Stop cleanly on Ctrl-C/SIGTERM, and ``--watch``: poll the incoming folder, refresh when enough images wait.

The first signal asks for a stop: training stops between two steps (the journal keeps the refresh, the next ``run``
resumes it from its last checkpoint), other phases finish first, and the polling loop ends. A second signal stops
at once (KeyboardInterrupt), which the registry survives like any crash.
"""
from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from .errors import RefreshInterrupted
from .ingest import HashCache
from .options import AdaptOptions, RunOptions
from .refresh import run_refresh


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An Event set by the first SIGINT/SIGTERM (handlers installed in the main thread only, restored after)."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print(f"semiseg continual: {signal.Signals(signum).name} received, stopping at the next step "
              "(send it again to stop now)", file=sys.stderr, flush=True)

    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in old:
        signal.signal(s, handler)
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def watch(registry: str | Path, incoming: str | Path, adapt: AdaptOptions = AdaptOptions(), run: RunOptions = RunOptions(),
          poll_seconds: float = 30.0, max_refreshes: Optional[int] = None,
          stop: Optional[threading.Event] = None) -> Dict[str, Any]:
    """Refresh whenever ``min_images`` new images wait in ``incoming``; poll every ``poll_seconds`` until stopped
    (signal, ``stop`` set, or ``max_refreshes`` refreshes done)."""
    stop = stop or threading.Event()
    cache: HashCache = {}
    results: List[Dict[str, Any]] = []
    polls = 0
    while not stop.is_set():
        try:
            res = run_refresh(registry, incoming, adapt, run, stop, cache)
        except RefreshInterrupted as exc:
            results.append({"status": "interrupted", "detail": str(exc)})
            break
        polls += 1
        if res["status"] != "waiting":
            results.append({k: v for k, v in res.items() if k != "report"})
            if max_refreshes is not None and len(results) >= max_refreshes:
                break
            continue  # more images may already be waiting
        stop.wait(poll_seconds)
    reason = "signal" if stop.is_set() else "max_refreshes"
    return {"refreshes": results, "polls": polls, "stopped_by": reason}
