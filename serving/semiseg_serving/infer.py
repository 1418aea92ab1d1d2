"""``infer_path``: run an export over an image, a folder of images/videos, or a video, and write the results.

For an input ``a/b.jpg`` (relative to the input folder) it writes into OUTPUT:
    ``a/b.png``          the mask as an indexed PNG: pixel values are class ids, the palette shows the colours
    ``a/b_overlay.jpg``  the mask colours over the image at opacity 0.5 (``overlay=True``)
    ``a/b_conf.png``     confidence (max softmax probability) as a 16-bit PNG, value = round(conf * 65535)
                         (``confidence=True``)
A video ``a/clip.mp4`` gives ``a/clip/frame_000000.png`` (+ ``_overlay.jpg`` / ``_conf.png``) per frame.
Folders are searched recursively (``recursive=True``). Files that cannot be decoded are reported in the summary
and skipped; they never stop the run.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
from tqdm import tqdm

from .errors import ServingError
from .media import is_image, is_video, list_media, read_image_bgr, video_frames, write_image
from .overlay import draw_legend, overlay as blend_overlay
from .image_codec import write_palette_png
from .segmenter import Segmenter
from .sliding_window import check_tile_flag, default_overlap

log = logging.getLogger(__name__)


class _Writer:
    """Predicts one BGR frame and writes its outputs; keeps the running totals of the summary."""

    def __init__(self, seg: Segmenter, overlay: bool, confidence: bool, tile: Optional[int], overlap: Optional[int]):
        self.seg, self.overlay, self.confidence, self.tile = seg, overlay, confidence, tile
        self.overlap = overlap if overlap is not None else (default_overlap(tile) if tile else 0)
        self.pixels = np.zeros(max(seg.num_classes, 1), dtype=np.int64)
        self.latencies: List[float] = []

    def __call__(self, bgr: np.ndarray, stem: Path) -> None:
        start = time.perf_counter()
        if self.tile:
            out = self.seg.predict_tiled(bgr, self.tile, self.overlap, self.confidence, channel_order="bgr")
        else:
            out = self.seg.predict(bgr, return_confidence=self.confidence, channel_order="bgr")
        mask, conf = out if self.confidence else (out, None)
        self.latencies.append(time.perf_counter() - start)
        stem.parent.mkdir(parents=True, exist_ok=True)
        if mask.dtype == np.uint8:
            write_palette_png(stem.with_name(stem.name + ".png"), mask, self.seg.palette)
        else:  # more than 256 classes: a plain 16-bit PNG of class ids
            write_image(stem.with_name(stem.name + ".png"), mask)
        if self.overlay:
            rgb = np.ascontiguousarray(bgr[:, :, ::-1])
            shown = draw_legend(blend_overlay(rgb, mask, self.seg.palette), mask, self.seg.classes, self.seg.palette)
            write_image(stem.with_name(stem.name + "_overlay.jpg"), shown[:, :, ::-1])
        if self.confidence:
            write_image(stem.with_name(stem.name + "_conf.png"), np.rint(conf * 65535.0).astype(np.uint16))
        self.pixels += np.bincount(mask.ravel(), minlength=len(self.pixels))[: len(self.pixels)]


def _jobs(source: Path, output: Path, recursive: bool) -> List[Tuple[Path, Path]]:
    """(input file, output stem without extension) pairs; stems that would collide keep their extension."""
    if source.is_file():
        return [(source, output / source.stem)]
    files = list_media(source, recursive)
    stems = [f.relative_to(source).with_suffix("") for f in files]
    seen: Dict[Path, int] = {}
    for s in stems:
        seen[s] = seen.get(s, 0) + 1
    return [(f, output / (s if seen[s] == 1 else s.with_name(f.name.replace(".", "_"))))
            for f, s in zip(files, stems)]


def infer_path(model: str, input: str, output: str, overlay: bool = True, confidence: bool = False,
               tile: Optional[int] = None, providers: str = "auto", recursive: bool = True,
               overlap: Optional[int] = None, progress: bool = True) -> Dict[str, Any]:
    """Segment an image file, a folder (recursive) of images/videos, or a video; write masks into ``output``.

    Returns a summary: images_done, frames_done (video frames), images_failed ([{"path", "reason"}]),
    pixels_per_class ({class name: count}), mean_latency_ms (pre-processing + network + post-processing per
    image or frame), provider, model, input, output, tile. Images larger than ``tile`` pixels on a side are
    predicted by sliding ``tile``-px windows (``overlap`` defaults to tile // 4). ``tile`` defaults to the window
    the exported run was scored on (:attr:`ModelMetadata.scored_tile`: its training crop unless it chose another);
    ``tile=0``, or an export that does not record the window, predicts whole images.
    """
    source, out_dir = Path(input), Path(output)
    if not source.exists():
        raise ServingError(f"{source}: input not found")
    if source.is_file() and not (is_image(source) or is_video(source)):
        raise ServingError(f"{source}: not an image or video file (by extension)")
    check_tile_flag(tile)
    seg = Segmenter(model, providers=providers)
    tile = seg.metadata.scored_tile if tile is None else tile
    out_dir.mkdir(parents=True, exist_ok=True)
    writer = _Writer(seg, overlay, confidence, tile, overlap)
    done = frames = 0
    failed: List[Dict[str, str]] = []
    jobs = _jobs(source, out_dir, recursive)
    for path, stem in tqdm(jobs, desc="infer", unit="file", disable=not progress or len(jobs) < 2):
        try:
            if is_video(path):
                frames += _run_video(writer, path, stem, progress)
            else:
                writer(read_image_bgr(path), stem)
                done += 1
        except Exception as exc:  # one bad file must not stop a folder: report it and go on
            failed.append({"path": str(path), "reason": f"{type(exc).__name__}: {exc}"})
            log.warning("skipped %s: %s", path, exc)
    summary = {
        "model": str(model), "provider": seg.provider, "input": str(source), "output": str(out_dir), "tile": tile or None,
        "images_done": done, "frames_done": frames, "images_failed": failed,
        "pixels_per_class": {name: int(n) for name, n in zip(seg.classes, writer.pixels)},
        "mean_latency_ms": round(1000.0 * float(np.mean(writer.latencies)), 3) if writer.latencies else None,
    }
    log.info("infer: %d images, %d frames, %d failed, %s ms mean latency on %s", done, frames, len(failed),
             summary["mean_latency_ms"], seg.provider)
    return summary


def _run_video(writer: _Writer, path: Path, folder: Path, progress: bool) -> int:
    """Segment every frame of a video into ``folder/frame_NNNNNN.*``; returns the frame count."""
    total, frames = video_frames(path)
    count = 0
    bar: Iterator[np.ndarray] = tqdm(frames, total=total or None, desc=path.name, unit="frame", disable=not progress)
    for count, frame in enumerate(bar, start=1):
        writer(frame, folder / f"frame_{count - 1:06d}")
    if count == 0:
        raise ServingError(f"{path}: no frame could be decoded")
    return count
