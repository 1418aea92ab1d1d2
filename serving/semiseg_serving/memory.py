"""How much memory serving an image takes: measured per model, estimated per request, held against a budget.

A network's working memory grows with the pixels it is given; :func:`measure_bytes_per_pixel` measures the slope
of the process's peak resident memory for one whole-image prediction (pre-processing, network, softmax, mask) at two
sizes, on Linux from ``/proc/self`` (the peak counter is reset before each, ``clear_refs``). Elsewhere, or when the
measurement fails, a conservative default is used. :func:`request_bytes` turns it into a request's need: whole
images cost ``pixels x bytes_per_pixel``; images above the tiling threshold run tile by tile (the runtime's sliding
window) and cost their decoded pixels, the mask, one band of class scores and one tile through the network.
"""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Callable, Optional

import numpy as np

DEFAULT_BYTES_PER_PIXEL = 512.0  # when the measurement is unavailable: above every model measured so far
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kb(key: str) -> Optional[int]:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def peak_rss_bytes() -> Optional[int]:
    """The process's peak resident memory since start or the last :func:`reset_peak_rss` (Linux), else None."""
    kb = _status_kb("VmHWM")
    return None if kb is None else kb * 1024


def rss_bytes() -> Optional[int]:
    """The process's resident memory now (Linux), else None."""
    kb = _status_kb("VmRSS")
    return None if kb is None else kb * 1024


def reset_peak_rss() -> bool:
    """Reset the peak counter to the current resident size (Linux ``clear_refs`` 5); False when not possible."""
    try:
        with open(_CLEAR_REFS, "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure_bytes_per_pixel(predict: Callable[[np.ndarray], object], sizes=(256, 512)) -> Optional[float]:
    """Extra peak memory per pixel of ``predict(bgr_image)``: the slope between two square sizes; None when the
    platform cannot measure it."""
    used = []
    for size in sizes:
        image = np.random.default_rng(size).integers(0, 256, (size, size, 3), dtype=np.uint8)
        if not reset_peak_rss():
            return None
        base = rss_bytes()
        predict(image)
        peak = peak_rss_bytes()
        if base is None or peak is None:
            return None
        used.append(max(0, peak - base))
    slope = (used[1] - used[0]) / float(sizes[1] ** 2 - sizes[0] ** 2)
    return slope if slope > 0 else None


def request_bytes(width: int, height: int, num_classes: int, bytes_per_pixel: float, tiled: bool, tile: int,
                  batch: int = 1) -> int:
    """Memory one request of ``width x height`` needs while it is served (the decoded image included); a tiled
    request sends ``batch`` tiles per network call."""
    pixels = width * height
    if not tiled:
        return int(pixels * (bytes_per_pixel + 3))
    band = 4 * (num_classes + 1) * min(tile, height) * width  # class scores and weights of one row of tiles
    tiles = bytes_per_pixel * min(tile, height) * min(tile, width) * batch
    return int(pixels * (3 + 1) + band + tiles)  # decoded BGR + mask


def tiles_per_call(tile: int, reference: int) -> int:
    """How many ``tile``-px tiles one network call takes: as many as fill one ``reference``-px tile (so small
    windows, e.g. a 96-px training crop, do not pay one call each), at least 1 and at most 16."""
    return max(1, min(16, (reference * reference) // (tile * tile)))


class MemoryBudget:
    """Bytes reserved by requests being served, against ``capacity``; waiters are served in arrival order."""

    def __init__(self, capacity: int) -> None:
        self.capacity = int(capacity)
        self.reserved = 0
        self._changed: Optional[asyncio.Condition] = None

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def acquire(self, amount: int, timeout_s: float) -> bool:
        """Reserve ``amount`` bytes, waiting up to ``timeout_s`` for others to release; False on timeout."""
        cond = self._condition()
        async with cond:
            try:
                await asyncio.wait_for(cond.wait_for(lambda: self.reserved + amount <= self.capacity),
                                       max(timeout_s, 0.001))
            except asyncio.TimeoutError:
                return False
            self.reserved += amount
            return True

    async def release(self, amount: int) -> None:
        """Give back what :meth:`acquire` reserved."""
        cond = self._condition()
        async with cond:
            self.reserved -= amount
            cond.notify_all()


__all__ = ["DEFAULT_BYTES_PER_PIXEL", "MemoryBudget", "measure_bytes_per_pixel", "peak_rss_bytes", "request_bytes",
           "reset_peak_rss", "rss_bytes"]
