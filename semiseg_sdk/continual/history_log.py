"""The registry's history: an append-only JSON-lines file, readable after a crash in the middle of a write.

A crash can leave the last line torn (no newline, cut JSON). The reader skips any line that is not a JSON object
and says how many it skipped; the writer first ends a torn line with a newline, so the next event is never glued
to the fragment. Each append is flushed and fsync'ed before it returns.
"""
from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Tuple


def now_iso() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def append_event(path: Path, event: Dict[str, Any]) -> Dict[str, Any]:
    """Append ``{"time": ..., **event}`` as one line; returns the written record."""
    record = {"time": now_iso(), **event}
    line = json.dumps(record, default=str) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab+") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":  # a torn last line: close it so it stays a single (skipped) bad line
                f.write(b"\n")
        f.write(line.encode())
        f.flush()
        os.fsync(f.fileno())
    return record


def read_events(path: Path) -> Tuple[List[Dict[str, Any]], int]:
    """``(events, skipped)``: every line that is a JSON object, in order, and the number of unreadable lines."""
    if not path.is_file():
        return [], 0
    events, skipped = [], 0
    for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            skipped += 1
            continue
        if isinstance(obj, dict):
            events.append(obj)
        else:
            skipped += 1
    return events, skipped
