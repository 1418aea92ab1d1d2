"""The model being served, its identity (name, content hash), loading with warm-up, and hot reload.

A request takes the current :class:`LoadedModel` once and uses it to the end, so a reload never changes the
model under a request in flight: old requests finish on the old session, new ones go to the new session, and
the old session is freed when its last request is done. Sessions are created one at a time in the whole
process (creating onnxruntime sessions concurrently is unsafe, onnxruntime#27089).
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
import time
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np

from ..errors import ModelFileError
from ..memory import DEFAULT_BYTES_PER_PIXEL, measure_bytes_per_pixel
from ..segmenter import Segmenter
from .config import ServiceConfig

log = logging.getLogger(__name__)
_SESSION_LOCK = threading.Lock()  # one session creation at a time, process-wide


def file_version(path: str) -> str:
    """``sha256:`` + the first 12 hex digits of the file's SHA-256 (changes whenever the file does)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read the model file ({exc})") from exc
    return "sha256:" + digest.hexdigest()[:12]


@dataclasses.dataclass(frozen=True, eq=False)
class LoadedModel:
    """A warmed-up :class:`Segmenter` with the name and version the service reports."""

    segmenter: Segmenter
    name: str
    version: str
    path: str
    loaded_at: str
    bytes_per_pixel: float = DEFAULT_BYTES_PER_PIXEL  # measured working memory of a whole-image prediction

    def identity(self) -> Dict[str, str]:
        """``{"name", "version"}``: what every answer carries."""
        return {"name": self.name, "version": self.version}

    def prometheus_labels(self) -> Dict[str, str]:
        return {"name": self.name, "version": self.version, "provider": self.segmenter.provider}

    def describe(self) -> Dict[str, Any]:
        """Identity, provider and the metadata embedded at export (for ``GET /v1/model``)."""
        meta = dataclasses.asdict(self.segmenter.metadata)
        meta["palette"] = [list(c) for c in self.segmenter.palette]
        return {**self.identity(), "file": Path(self.path).name, "provider": self.segmenter.provider,
                "loaded_at": self.loaded_at, "num_classes": self.segmenter.num_classes,
                "bytes_per_pixel": round(self.bytes_per_pixel, 1), "metadata": meta}


def warm_up(segmenter: Segmenter, size: int) -> None:
    """One network call on a blank ``size`` x ``size`` image (rounded up to the size divisor)."""
    d = max(segmenter.size_divisor, 1)
    side = -(-max(size, d) // d) * d
    segmenter.run(np.zeros((1, 3, side, side), dtype=np.float32))


def load_model(path: str, config: ServiceConfig) -> LoadedModel:
    """Open, check and warm up a model; raises ModelFileError/ServingError naming ``path`` when it cannot."""
    before = file_version(path)
    with _SESSION_LOCK:
        segmenter = Segmenter(path, providers=config.providers, intra_op_threads=config.intra_op_threads,
                              inter_op_threads=config.inter_op_threads, cpu_arena=False)
    if file_version(path) != before:
        raise ModelFileError(f"{path}: the file changed while it was being loaded; reload again")
    warm_up(segmenter, config.warmup_size)
    with _SESSION_LOCK:  # one measurement at a time: it reads the process's peak memory
        measured = measure_bytes_per_pixel(lambda img: segmenter.predict(img, return_confidence=True, channel_order="bgr"))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return LoadedModel(segmenter, Path(path).stem, before, str(path), stamp,
                       max(measured or DEFAULT_BYTES_PER_PIXEL, 16.0))


class ModelHolder:
    """Holds the current model of the service; :meth:`reload` swaps in a new one or leaves the old one serving."""

    def __init__(self, path: str, config: ServiceConfig) -> None:
        self.path = str(path)
        self.config = config
        self.error: Optional[str] = None  # why the last load or reload failed
        self._current: Optional[LoadedModel] = None
        self._lock = threading.Lock()  # one load or reload at a time

    @property
    def current(self) -> Optional[LoadedModel]:
        """The model new requests use (None until the first load succeeded)."""
        return self._current

    def load(self) -> LoadedModel:
        """(Re)load the model file; on success it serves from now on, on failure the old model stays."""
        with self._lock:
            return self._load_locked()

    def _load_locked(self) -> LoadedModel:
        try:
            model = load_model(self.path, self.config)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            raise
        self._current, self.error = model, None
        return model

    def load_in_background(self) -> threading.Thread:
        """Start :meth:`load` in a daemon thread (the port opens at once; ``/readyz`` says when it is done)."""

        def run() -> None:
            try:
                model = self.load()
                log.info("serving %s (%s) on %s", model.name, model.version, model.segmenter.provider)
            except Exception:
                log.error("could not load %s: %s (fix the file, then reload)", self.path, self.error)

        thread = threading.Thread(target=run, name="semiseg-model-load", daemon=True)
        thread.start()
        return thread

    def reload(self) -> Dict[str, Any]:
        """Hot reload from the same path: ``{"ok", "model", "previous", "error"}`` (never raises)."""
        with self._lock:
            previous = self._current
            try:
                model = self._load_locked()
            except Exception:
                model = None
        if model is None:
            log.error("reload of %s failed, %s: %s", self.path,
                      "the previous model keeps serving" if previous else "no model is serving", self.error)
            return {"ok": False, "error": self.error, "model": previous.identity() if previous else None,
                    "previous": previous.identity() if previous else None}
        log.info("reloaded %s: %s -> %s", self.path, previous.version if previous else None, model.version)
        return {"ok": True, "error": None, "model": model.identity(),
                "previous": previous.identity() if previous else None}
