"""``Segmenter``: the torch-free way to run a semiseg ONNX export on images.

    seg = Segmenter("model.onnx")            # provider chosen: TensorRT > CUDA > CPU
    mask = seg.predict(frame, channel_order="bgr")          # (H, W) uint8 class ids
    mask, conf = seg.predict(frame, return_confidence=True)
    masks = seg.predict_batch([img1, img2])
    mask = seg.predict_tiled(aerial)      # windows of the run's training crop (or tile=512, overlap=128)
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import ServingError
from .metadata import ModelMetadata
from .postprocess import logits_to_mask
from .preprocess import prepare, to_nchw, to_rgb_uint8
from .session import OnnxSession, ProviderArg
from .sliding_window import default_overlap, predict_tiled_rgb

Prediction = Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]


class Segmenter:
    """A semiseg ONNX export ready to predict; classes, palette and size divisor come from its metadata.

    Args:
        path: the ``.onnx`` file written by ``semiseg export``.
        providers: ``"auto"`` (TensorRT, then CUDA, then CPU among the available ones), a comma list such as
            ``"cuda,cpu"``, or an explicit onnxruntime list (names or ``(name, options)`` pairs).
        intra_op_threads / inter_op_threads: onnxruntime thread pools (None: onnxruntime's default).
        trt_fp16 / trt_cache_dir: TensorRT options (fp16 kernels; engine cache folder, saves minutes per start).
        pad_mode: how images are padded to the size divisor, ``"reflect"`` or ``"constant"`` (zeros).
        cpu_arena: onnxruntime's CPU memory arena (faster repeated calls; it keeps the memory of the largest input
            seen). The HTTP service turns it off so that memory returns after a large request.
    """

    def __init__(self, path: Union[str, Path], providers: ProviderArg = "auto",
                 intra_op_threads: Optional[int] = None, inter_op_threads: Optional[int] = None,
                 trt_fp16: bool = False, trt_cache_dir: Optional[str] = None, pad_mode: str = "reflect",
                 cpu_arena: bool = True) -> None:
        self.session = OnnxSession(path, providers, intra_op_threads, inter_op_threads, trt_fp16, trt_cache_dir,
                                   cpu_arena=cpu_arena)
        self.path = self.session.path
        self.metadata = ModelMetadata.from_props(self.session.custom_metadata, self.path)
        self.pad_mode = pad_mode

    @property
    def provider(self) -> str:
        """The execution provider onnxruntime runs the model on."""
        return self.session.provider

    @property
    def classes(self) -> Tuple[str, ...]:
        return self.metadata.classes

    @property
    def palette(self) -> Tuple[Tuple[int, int, int], ...]:
        return self.metadata.palette

    @property
    def num_classes(self) -> int:
        return self.metadata.num_classes

    @property
    def size_divisor(self) -> int:
        return self.metadata.size_divisor

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Raw network call: float32 (N, 3, H, W) RGB in [0, 1] -> float32 logits (N, C, H, W)."""
        logits = self.session.run(batch)
        if logits.shape[1] != self.num_classes:
            raise ServingError(f"{self.path}: model returned {logits.shape[1]} classes, metadata lists "
                               f"{self.num_classes}")
        return logits

    def predict(self, image: np.ndarray, return_confidence: bool = False, channel_order: str = "rgb",
                resize_to: Optional[Tuple[int, int]] = None) -> Prediction:
        """Mask (H, W) of class ids for one image (uint8 gray/RGB/BGR/RGBA, any size).

        The image is padded to a multiple of the size divisor (or resized to ``resize_to`` = (h, w)) and the
        logits are cropped / resized back. With ``return_confidence`` also returns the max softmax probability
        per pixel (float32).
        """
        item = prepare(image, self.size_divisor, channel_order, self.pad_mode, resize_to)
        logits = self.run(to_nchw([item.pixels]))[0]
        mask, conf = logits_to_mask(logits, item.content, item.original, return_confidence)
        return (mask, conf) if return_confidence else mask  # type: ignore[return-value]

    def predict_batch(self, images: Sequence[np.ndarray], return_confidence: bool = False,
                      channel_order: str = "rgb", resize_to: Optional[Tuple[int, int]] = None,
                      batch_size: int = 8) -> List[Prediction]:
        """Predict several images; images are grouped by padded size and run ``batch_size`` at a time.

        Each image is padded exactly as :meth:`predict` pads it, so results equal per-image ``predict``.
        """
        items = [prepare(img, self.size_divisor, channel_order, self.pad_mode, resize_to) for img in images]
        groups: Dict[Tuple[int, int], List[int]] = defaultdict(list)
        for i, item in enumerate(items):
            groups[item.pixels.shape[:2]].append(i)
        results: List[Optional[Prediction]] = [None] * len(items)
        for indices in groups.values():
            for start in range(0, len(indices), batch_size):
                chunk = indices[start:start + batch_size]
                logits = self.run(to_nchw([items[i].pixels for i in chunk]))
                for i, out in zip(chunk, logits):
                    mask, conf = logits_to_mask(out, items[i].content, items[i].original, return_confidence)
                    results[i] = (mask, conf) if return_confidence else mask  # type: ignore[assignment]
        return results  # type: ignore[return-value]

    def predict_tiled(self, image: np.ndarray, tile: Optional[int] = None, overlap: Optional[int] = None,
                      return_confidence: bool = False, channel_order: str = "rgb", batch_size: int = 4) -> Prediction:
        """Sliding-window prediction: for images larger than what fits the model at once, and for networks trained
        on crops much smaller than the image (see sliding_window).

        ``tile`` defaults to the window the exported run was scored on (:attr:`ModelMetadata.scored_tile`, its
        training crop unless it chose another; 512 for an export that does not record it), ``overlap`` to a
        quarter of the tile. Probabilities of overlapping tiles are blended with a smooth window; memory is bounded
        by one band of tiles (about 4 * (classes + 1) * tile * W bytes). An image within one tile gives the
        :meth:`predict` mask.
        """
        tile = tile or self.metadata.scored_tile or 512
        overlap = default_overlap(tile) if overlap is None else overlap
        rgb = to_rgb_uint8(image, channel_order)
        mask, conf = predict_tiled_rgb(self.run, rgb, self.num_classes, self.size_divisor, tile, overlap,
                                       batch_size, self.pad_mode, return_confidence)
        return (mask, conf) if return_confidence else mask  # type: ignore[return-value]

    def __repr__(self) -> str:
        return (f"Segmenter({self.path!r}, provider={self.provider}, classes={self.num_classes}, "
                f"size_divisor={self.size_divisor})")
