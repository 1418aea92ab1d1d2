"""Finding and decoding inputs (image files, folders, videos) and encoding outputs, with OpenCV."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, List, Tuple, Union

import cv2
import numpy as np

from .errors import ImageError
from .image_codec import decode_bgr

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTS


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTS


def list_media(folder: Union[str, Path], recursive: bool = True) -> List[Path]:
    """Image and video files under ``folder`` (in sub-folders too when ``recursive``), sorted, hidden ones skipped."""
    folder = Path(folder)
    pattern = folder.rglob("*") if recursive else folder.glob("*")
    files = [p for p in pattern if p.is_file() and (is_image(p) or is_video(p))
             and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    return sorted(files)


def read_image_bgr(path: Union[str, Path]) -> np.ndarray:
    """Decode an image file to (H, W, 3) uint8 BGR (gray is expanded, alpha dropped); ImageError if it cannot."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc})") from exc
    image = decode_bgr(data) if data else None
    if image is None:
        raise ImageError(f"{path}: not a decodable image")
    return image


def write_image(path: Union[str, Path], image: np.ndarray, jpeg_quality: int = 90) -> None:
    """Encode an image (BGR, or 16-bit gray for .png) by its extension and write it."""
    path = Path(path)
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if path.suffix.lower() in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(path.suffix, image, params)
    if not ok:
        raise ImageError(f"{path}: OpenCV could not encode this image")
    buf.tofile(str(path))


def video_frames(path: Union[str, Path]) -> Tuple[int, Iterator[np.ndarray]]:
    """``(frame count or 0 if unknown, iterator of BGR frames)``; ImageError when the video cannot be opened."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise ImageError(f"{path}: not a readable video")
    total = max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)

    def frames() -> Iterator[np.ndarray]:
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    return
                yield frame
        finally:
            cap.release()

    return total, frames()
