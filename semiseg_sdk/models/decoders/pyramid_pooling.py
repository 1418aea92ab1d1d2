"""Adaptive average pooling written as two matmuls, so it exports to ONNX with dynamic height and width.

ONNX has adaptive pooling only to size 1. For bin count ``b`` over a length ``L``, output ``i`` averages
``[floor(i*L/b), ceil((i+1)*L/b))``, exactly like ``F.adaptive_avg_pool2d``; the averaging matrices are built from
the runtime shape with tensor ops, so the traced graph keeps the sizes symbolic.
"""
from __future__ import annotations

from typing import Union

import torch


def pooling_matrix(length: Union[int, torch.Tensor], bins: int, dtype: torch.dtype,
                   device: torch.device) -> torch.Tensor:
    """(bins, length) matrix whose row i averages the window of adaptive average pooling's output i."""
    idx = torch.arange(bins, device=device)
    pos = torch.arange(length, device=device)
    start = torch.div(idx * length, bins, rounding_mode="floor")
    end = torch.div((idx + 1) * length + bins - 1, bins, rounding_mode="floor")
    inside = (pos[None, :] >= start[:, None]) & (pos[None, :] < end[:, None])
    weights = inside.to(dtype)
    return weights / weights.sum(dim=1, keepdim=True)


def adaptive_avg_pool2d_exportable(x: torch.Tensor, bins: int) -> torch.Tensor:
    """Same values as ``F.adaptive_avg_pool2d(x, bins)`` for (N, C, H, W) input, as ``Ph @ x @ Pw^T``."""
    h, w = x.shape[-2], x.shape[-1]
    ph = pooling_matrix(h, bins, x.dtype, x.device)
    pw = pooling_matrix(w, bins, x.dtype, x.device)
    return torch.matmul(torch.matmul(ph, x), pw.transpose(0, 1))
