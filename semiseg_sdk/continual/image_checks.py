"""Is a field image usable? Decodable, complete, big enough and not blank; otherwise a reason code and detail.

Codes: ``unreadable`` (not an image OpenCV decodes, empty, unreadable file), ``truncated`` (a PNG without its IEND
chunk or a JPEG without its end marker: a partial upload), ``too_small`` (a side under ``min_side`` pixels),
``blank`` (near-constant: the largest per-channel standard deviation is under ``blank_std`` grey levels; a lens cap,
a black frame, a saturated sensor; real frames, even in fog or at night, lie far above).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


from ..data.image_io import read_image
from ..errors import DataError

CODES = ("unreadable", "truncated", "too_small", "blank")


@dataclass(frozen=True)
class ImageChecks:
    """Thresholds of the ingest checks."""

    min_side: int = 32          # px; smaller frames cannot hold a 32-stride feature map
    blank_std: float = 2.0      # grey levels (0..255); synthetic fog/night frames measure >= 11


@dataclass(frozen=True)
class Verdict:
    """Outcome of :func:`inspect_image`: ``code`` is "ok" or one of ``CODES``."""

    code: str
    detail: str = ""
    width: int = 0
    height: int = 0

    @property
    def ok(self) -> bool:
        return self.code == "ok"


def inspect_image(path: Path, checks: ImageChecks = ImageChecks()) -> Verdict:
    """Decode ``path`` and apply the checks."""
    try:
        rgb = read_image(path)
    except DataError as exc:
        code = "truncated" if "truncated" in str(exc) else "unreadable"
        return Verdict(code, str(exc))
    except (OSError, ValueError) as exc:
        return Verdict("unreadable", f"{path}: {exc}")
    h, w = rgb.shape[:2]
    if min(h, w) < checks.min_side:
        return Verdict("too_small", f"{w}x{h} px, sides must be >= {checks.min_side} px", w, h)
    step = max(1, max(h, w) // 512)  # a strided sample keeps the check cheap on 4K frames
    spread = float(rgb[::step, ::step].reshape(-1, 3).std(axis=0).max())
    if spread < checks.blank_std:
        return Verdict("blank", f"pixel standard deviation {spread:.2f} < {checks.blank_std} (near-constant image)", w, h)
    return Verdict("ok", "", w, h)
