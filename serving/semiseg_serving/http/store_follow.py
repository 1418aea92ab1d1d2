"""Serving the current version of a continual model store, and following it when ``current`` moves.

A store (``semiseg continual``) keeps each version in ``<store>/vNNNN/model.onnx`` and names the served one in
``<store>/current.json`` (``{"version": "v0003", ...}``, replaced atomically on promote and rollback). The service
reads only these files (no SDK import): at start it serves the current version's model, then polls
``current.json`` and hot-reloads the new version's model when the version changes. A reload that fails leaves the
previous model serving; the next poll tries again.
"""
from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Optional, Tuple

import anyio.to_thread

from ..errors import ModelFileError
from .state import ServiceState

log = logging.getLogger(__name__)


def current_model(store: str | Path) -> Tuple[str, Path]:
    """``(version, path of its model.onnx)`` of the store's current version; ModelFileError naming the file."""
    pointer = Path(store) / "current.json"
    try:
        version = str(json.loads(pointer.read_text())["version"])
    except FileNotFoundError:
        raise ModelFileError(f"{pointer}: not found; --store must be a continual model store (semiseg continual "
                             "init)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"{pointer}: unreadable ({type(exc).__name__}: {exc})") from None
    model = Path(store) / version / "model.onnx"
    if not model.is_file():
        raise ModelFileError(f"{model}: the current version {version} has no exported model")
    return version, model


async def follow_store(state: ServiceState, store: str | Path, version: Optional[str], interval_s: float) -> None:
    """Poll ``current.json`` every ``interval_s`` and reload the model when the current version changes."""
    served = version
    while True:
        await asyncio.sleep(interval_s)
        try:
            latest, path = current_model(store)
        except ModelFileError as exc:
            log.warning("store: %s", exc)
            continue
        if latest == served:
            continue
        log.info("store %s: current moved %s -> %s, reloading", store, served, latest)
        state.holder.path = str(path)
        result = await anyio.to_thread.run_sync(state.holder.reload)
        if result["ok"]:
            served = latest
            state.served_version = latest
