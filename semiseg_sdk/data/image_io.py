"""Read images and label masks from disk (the image codec: OpenCV, Pillow for indexed PNGs), refusing bad files
with errors that name them.

Conventions (what is accepted and how it is converted):
- images: JPEG, PNG, BMP, TIFF (whatever OpenCV decodes), returned as uint8 RGB (H, W, 3). Grayscale becomes three
  equal channels; RGBA/BGRA drops the alpha channel; 16-bit images are scaled to 8 bits (round(v / 257)), 8-bit
  values are kept exactly; float or other depths are refused. EXIF orientation is ignored (pixels as stored), so
  an image and its mask always keep the same geometry.
- masks: uint8 (H, W) class ids, 255 = ignore. Accepted: single-channel 8-bit; 16-bit when every value is <= 255;
  three equal channels (a gray mask saved as colour); indexed ("P" mode) PNGs, read as their palette indices. An RGB
  colour mask is refused unless the caller knows the colours (``colours=`` maps them to ids).
- truncation: a PNG must end with its IEND chunk, a JPEG with the EOI marker 0xFFD9 (trailing padding, or data
  appended after a complete image, is allowed), because some decoders silently return a partial image.
"""
from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from semiseg_serving.errors import ImageError
from semiseg_serving.image_codec import PNG_SIGNATURE, decode_palette_png, decode_unchanged, jpeg_size, png_header

from ..errors import DataError

PathLike = Union[str, "os.PathLike[str]"]
Colour = Tuple[int, int, int]

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
_JPEG_SOS = b"\xff\xda"
_PNG_PALETTE_TYPE = 3


def read_image(path: PathLike) -> np.ndarray:
    """Read an image file as uint8 RGB (H, W, 3); raises DataError naming the file when it cannot."""
    array = _decode(path)
    if array.dtype == np.uint16:
        array = ((array.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise DataError(f"{path}: unsupported image bit depth ({array.dtype}); expected 8- or 16-bit integer pixels")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        return np.ascontiguousarray(np.repeat(array[:, :, None], 3, axis=2))
    if array.shape[2] == 3:
        return cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
    if array.shape[2] == 4:
        return cv2.cvtColor(array, cv2.COLOR_BGRA2RGB)
    raise DataError(f"{path}: unsupported channel count {array.shape[2]}; expected 1 (gray), 3 (RGB) or 4 (RGBA)")


def read_mask(
    path: PathLike, colours: Optional[Sequence[Colour]] = None, ignore_colours: Sequence[Colour] = ()
) -> np.ndarray:
    """Read a label mask as uint8 (H, W) class ids; ``colours[i]`` (RGB), when given, maps colour masks to id ``i``."""
    data = _read_bytes(path)
    if data.startswith(PNG_SIGNATURE) and _png_header(data, path)[3] == _PNG_PALETTE_TYPE:
        return _decode_palette_indices(data, path)
    array = _decode_bytes(data, path)
    if array.dtype == np.uint16:
        if int(array.max(initial=0)) > 255:
            raise DataError(f"{path}: 16-bit mask with values up to {int(array.max())}; class ids must be <= 255")
        array = array.astype(np.uint8)
    elif array.dtype != np.uint8:
        raise DataError(f"{path}: unsupported mask bit depth ({array.dtype}); expected 8-bit class ids")
    if array.ndim == 2:
        return array
    channels = array[:, :, :3]
    if channels.shape[2] == 1 or (np.array_equal(channels[:, :, 0], channels[:, :, 1])
                                  and np.array_equal(channels[:, :, 0], channels[:, :, 2])):
        return np.ascontiguousarray(channels[:, :, 0])
    rgb = cv2.cvtColor(np.ascontiguousarray(channels), cv2.COLOR_BGR2RGB)
    if colours is not None:
        return colours_to_ids(rgb, colours, path, ignore_colours)
    sample = ", ".join(str(tuple(int(v) for v in c)) for c in np.unique(rgb.reshape(-1, 3), axis=0)[:4])
    raise DataError(
        f"{path}: RGB colour mask (colours such as {sample}); masks must hold class ids (one channel, 255 = ignore). "
        "Convert colours to ids with the dataset's palette, or list the class colours in classes.json "
        "so the folder adapter maps them."
    )


def read_palette_mask(path: PathLike) -> np.ndarray:
    """Read an indexed ("P" mode) PNG as its raw palette indices, uint8 (H, W) (e.g. Pascal VOC masks)."""
    data = _read_bytes(path)
    if not data.startswith(PNG_SIGNATURE):
        raise DataError(f"{path}: not a PNG file; an indexed (palette) PNG mask was expected")
    colour_type = _png_header(data, path)[3]
    if colour_type != _PNG_PALETTE_TYPE:
        raise DataError(f"{path}: PNG colour type {colour_type} is not an indexed (palette) PNG")
    return _decode_palette_indices(data, path)


def colours_to_ids(
    rgb: np.ndarray, colours: Sequence[Colour], path: PathLike, ignore_colours: Sequence[Colour] = ()
) -> np.ndarray:
    """Map an RGB (H, W, 3) colour mask to class ids through exact colours; ignore colours become 255."""
    keys = _colour_keys(np.asarray(colours, dtype=np.int64).reshape(-1, 3))
    ids = np.arange(len(keys), dtype=np.int64)
    if len(ignore_colours):
        keys = np.concatenate([keys, _colour_keys(np.asarray(ignore_colours, dtype=np.int64).reshape(-1, 3))])
        ids = np.concatenate([ids, np.full(len(ignore_colours), 255, dtype=np.int64)])
    order = np.argsort(keys, kind="stable")
    keys, ids = keys[order], ids[order]
    pixels = _colour_keys(rgb.reshape(-1, 3).astype(np.int64))
    pos = np.clip(np.searchsorted(keys, pixels), 0, len(keys) - 1)
    known = keys[pos] == pixels
    if not known.all():
        unknown = np.unique(pixels[~known])[:5]
        listed = ", ".join(str(((k >> 16) & 255, (k >> 8) & 255, k & 255)) for k in unknown.tolist())
        raise DataError(f"{path}: colours not in the class palette: {listed}")
    return ids[pos].astype(np.uint8).reshape(rgb.shape[:2])


def validate_pair(
    image: np.ndarray, mask: np.ndarray, image_path: PathLike, mask_path: PathLike, num_classes: int
) -> None:
    """Check that an image and its mask have the same size and that labels are < num_classes or 255."""
    check_mask(mask, (image.shape[1], image.shape[0]), image_path, mask_path, num_classes)


def check_mask(mask: np.ndarray, image_size: Tuple[int, int], image_path: PathLike, mask_path: PathLike,
               num_classes: int) -> None:
    """Check that a mask has its image's ``(width, height)`` and that labels are < num_classes or 255."""
    if (image_size[1], image_size[0]) != mask.shape[:2]:
        raise DataError(
            f"image and mask sizes differ: {image_path} is {image_size[0]}x{image_size[1]} (WxH), "
            f"{mask_path} is {mask.shape[1]}x{mask.shape[0]} (WxH)"
        )
    counts = np.bincount(mask.ravel(), minlength=256)
    counts[255] = 0
    bad = np.flatnonzero(counts[num_classes:]) + num_classes
    if bad.size:
        shown = ", ".join(str(v) for v in bad[:8].tolist())
        raise DataError(
            f"{mask_path}: label values {shown} out of range for {num_classes} classes "
            f"(expected 0..{num_classes - 1} or 255 = ignore)"
        )


def image_size(path: PathLike) -> Tuple[int, int]:
    """``(width, height)`` of an image file from its header (PNG, JPEG; other formats are decoded); checks that a
    PNG or JPEG is complete (IEND / end-of-image marker) like the full readers do."""
    data = _read_bytes(path)
    if data.startswith(PNG_SIGNATURE):
        w, h = _png_header(data, path)[:2]
        return w, h
    if data.startswith(_JPEG_SOI):
        _check_complete(data, path)
        size = jpeg_size(data)
        if size is not None:
            return size
    array = _decode_bytes(data, path)
    return array.shape[1], array.shape[0]


def _colour_keys(rgb: np.ndarray) -> np.ndarray:
    return (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]


def _read_bytes(path: PathLike) -> bytes:
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{path}: file not found" if not file.exists() else f"{path}: not a file")
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc
    if not data:
        raise DataError(f"{path}: empty file (0 bytes)")
    return data


def _decode(path: PathLike) -> np.ndarray:
    return _decode_bytes(_read_bytes(path), path)


def _decode_bytes(data: bytes, path: PathLike) -> np.ndarray:
    _check_complete(data, path)
    try:
        array = decode_unchanged(data)
    except cv2.error as exc:
        raise DataError(f"{path}: cannot decode image ({exc})") from exc
    if array is None or array.size == 0:
        raise DataError(f"{path}: cannot decode image (corrupt file or unsupported format)")
    return array


def _check_complete(data: bytes, path: PathLike) -> None:
    if data.startswith(PNG_SIGNATURE):
        _png_chunks(data, path)
    elif data.startswith(_JPEG_SOI):
        if data.rstrip(b"\x00\xff\r\n\t ").endswith(_JPEG_EOI):
            return
        if data.rfind(_JPEG_EOI) > data.rfind(_JPEG_SOS) >= 0:
            return  # a complete image followed by appended data (e.g. a camera trailer)
        raise DataError(f"{path}: truncated JPEG (no end-of-image marker 0xFFD9 after the image data)")


def _png_chunks(data: bytes, path: PathLike) -> list:
    """Walk the PNG chunk list; return (type, start, length) triples up to IEND, or raise on truncation."""
    chunks, pos = [], len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        if pos + 12 + length > len(data):
            break
        crc = int.from_bytes(data[pos + 8 + length:pos + 12 + length], "big")
        if zlib.crc32(data[pos + 4:pos + 8 + length]) != crc:
            name = kind.decode("latin-1") if kind.isalpha() else repr(kind)
            raise DataError(f"{path}: corrupt PNG (its {name} chunk at byte {pos} fails its CRC check: the file was "
                            "altered or damaged)")
        chunks.append((kind, pos + 8, length))
        if kind == b"IEND":
            return chunks
        pos += 12 + length
    raise DataError(f"{path}: truncated PNG (the file ends before its IEND chunk)")


def _png_header(data: bytes, path: PathLike) -> Tuple[int, int, int, int, int]:
    """(width, height, bit depth, colour type, interlace) from the IHDR chunk."""
    kind, _, length = _png_chunks(data, path)[0]
    header = png_header(data)
    if kind != b"IHDR" or length != 13 or header is None:
        raise DataError(f"{path}: corrupt PNG (first chunk is not a valid IHDR)")
    return header


def _decode_palette_indices(data: bytes, path: PathLike) -> np.ndarray:
    """Palette indices of an indexed PNG whose chunks the caller has checked (through :func:`_png_header`)."""
    try:
        return decode_palette_png(data, str(path))[0]
    except ImageError as exc:
        raise DataError(str(exc)) from None
