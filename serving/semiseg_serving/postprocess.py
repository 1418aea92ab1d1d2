"""Network output -> mask: crop the padding, resize back when the input was resized, argmax, confidence."""
from __future__ import annotations

from typing import Optional, Tuple

import cv2
import numpy as np


def mask_dtype(num_classes: int) -> type:
    """uint8 for up to 256 classes, uint16 beyond."""
    return np.uint8 if num_classes <= 256 else np.uint16


def softmax(logits: np.ndarray, axis: int = 0) -> np.ndarray:
    """Numerically stable softmax in float32."""
    z = logits - logits.max(axis=axis, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=axis, keepdims=True)
    return z


def confidence_from_logits(logits: np.ndarray) -> np.ndarray:
    """Max softmax probability per pixel of (C, H, W) logits, float32 (H, W): ``1 / sum_c exp(l_c - max_c l)``."""
    z = logits - logits.max(axis=0, keepdims=True)
    return (1.0 / np.exp(z).sum(axis=0)).astype(np.float32)


def restore_logits(logits: np.ndarray, content: Tuple[int, int], original: Tuple[int, int]) -> np.ndarray:
    """(C, H', W') logits -> (C, H, W): crop to ``content``, then bilinear resize to ``original`` if they differ."""
    out = logits[:, : content[0], : content[1]]
    if tuple(content) == tuple(original):
        return out
    hwc = np.ascontiguousarray(out.transpose(1, 2, 0))
    if hwc.shape[2] > 512:  # OpenCV's channel limit: resize in chunks
        parts = [cv2.resize(hwc[:, :, i:i + 512], (original[1], original[0]), interpolation=cv2.INTER_LINEAR)
                 for i in range(0, hwc.shape[2], 512)]
        resized = np.concatenate([p.reshape(original[0], original[1], -1) for p in parts], axis=2)
    else:
        resized = cv2.resize(hwc, (original[1], original[0]), interpolation=cv2.INTER_LINEAR)
        resized = resized.reshape(original[0], original[1], -1)
    return np.ascontiguousarray(resized.transpose(2, 0, 1))


def logits_to_mask(logits: np.ndarray, content: Tuple[int, int], original: Tuple[int, int],
                   return_confidence: bool = False) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """(C, H', W') logits -> ((H, W) class-id mask, (H, W) float32 confidence or None)."""
    restored = restore_logits(logits, content, original)
    mask = restored.argmax(axis=0).astype(mask_dtype(restored.shape[0]))
    return mask, (confidence_from_logits(restored) if return_confidence else None)
