"""Parity of an exported file with the PyTorch model: max |logit difference| and argmax agreement.

Tolerances (the defaults of ``export_checkpoint``), with ``scale = max(1, max |PyTorch logit|)``:
    fp32: max |diff| <= 1e-3 * scale and argmax agreement >= 99.9 %
    fp16: max |diff| <= 5e-2 * scale and argmax agreement >= 99 %
    int8: argmax agreement >= 95 % over all pixels of the calibration images (max |diff| is reported, not bounded)
The scale makes the bound relative for trained models whose logits reach tens, absolute for small ones.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from semiseg_serving.metadata import INPUT_NAME

from .errors import ExportError, ParityError
from .int8 import Calibration

TOLERANCES = {False: (1e-3, 0.999), True: (5e-2, 0.99)}  # fp16 -> (atol, min argmax agreement)
INT8_MIN_AGREEMENT = 0.95


@dataclass
class ParityCase:
    size: Tuple[int, int]
    batch: int
    max_abs_diff: float
    max_abs_logit: float
    argmax_agreement: float


def check_parity(model: nn.Module, onnx_path: Union[str, Path], sizes: Sequence[Tuple[int, int]],
                 batches: Sequence[int] = (1, 2), atol: float = 1e-3, min_agreement: float = 0.999,
                 seed: int = 0, verbose: bool = True, name: Optional[str] = None) -> Dict[str, object]:
    """Run random [0, 1] images of each size and batch through PyTorch (CPU, fp32) and onnxruntime (CPU).

    Sizes must be multiples of the model's ``size_divisor``. Returns a report dict; raises ParityError when the
    worst case exceeds ``atol * max(1, max |logit|)`` or agreement falls under ``min_agreement``.
    ``name`` is how messages call the file (default: ``onnx_path``).
    """
    name = name or str(onnx_path)
    divisor = int(getattr(model, "size_divisor", 1))
    for h, w in sizes:
        if h % divisor or w % divisor:
            raise ExportError(f"check size {h}x{w} is not a multiple of the model's size_divisor {divisor}")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(seed)
    cases: List[ParityCase] = []
    model = model.eval()
    for h, w in sizes:
        for b in batches:
            x = torch.rand(b, 3, h, w, generator=gen)
            with torch.no_grad():
                ref = model(x).float().numpy()
            got = session.run(None, {INPUT_NAME: x.numpy()})[0]
            if got.shape != ref.shape:
                raise ParityError(f"{name}: output shape {got.shape} != PyTorch {ref.shape} at {b}x3x{h}x{w}")
            if not (np.isfinite(ref).all() and np.isfinite(got).all()):  # NaN compares as "no difference" otherwise
                where = "PyTorch" if not np.isfinite(ref).all() else "ONNX Runtime"
                raise ParityError(f"{name}: {where} outputs NaN or inf at {b}x3x{h}x{w}; the file is not written")
            agree = float((got.argmax(1) == ref.argmax(1)).mean())
            cases.append(ParityCase((h, w), b, float(np.abs(got - ref).max()), float(np.abs(ref).max()), agree))
            if verbose:
                c = cases[-1]
                print(f"parity {b}x3x{h}x{w}: max |diff| {c.max_abs_diff:.3e} (max |logit| {c.max_abs_logit:.2f}), "
                      f"argmax agreement {100 * agree:.3f} %")
    failures = [c for c in cases if c.max_abs_diff > atol * max(1.0, c.max_abs_logit)
                or c.argmax_agreement < min_agreement]
    report = {
        "cases": [asdict(c) for c in cases],
        "max_abs_diff": max(c.max_abs_diff for c in cases),
        "argmax_agreement": min(c.argmax_agreement for c in cases),
        "atol": atol, "min_agreement": min_agreement, "passed": not failures,
    }
    if failures:
        worst = failures[0]
        raise ParityError(
            f"{name}: ONNX output disagrees with PyTorch at {worst.batch}x3x{worst.size[0]}x{worst.size[1]}: "
            f"max |diff| {worst.max_abs_diff:.3e} (allowed {atol * max(1.0, worst.max_abs_logit):.3e}), argmax "
            f"agreement {100 * worst.argmax_agreement:.3f} % (required {100 * min_agreement:.1f} %)")
    return report


def check_int8_parity(model: nn.Module, onnx_path: Union[str, Path], calibration: Calibration,
                      min_agreement: float = INT8_MIN_AGREEMENT, verbose: bool = True,
                      name: Optional[str] = None) -> Dict[str, object]:
    """Argmax agreement of an int8 file with PyTorch fp32 on the (real) calibration images, over their image region.

    The checked figure pools all pixels; the worst image and the max |logit difference| are reported. Raises
    ParityError when the pooled agreement is under ``min_agreement``.
    """
    name = name or str(onnx_path)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    cases: List[Dict[str, object]] = []
    same = total = 0
    max_diff = max_logit = 0.0
    model = model.eval()
    for batch, (h, w) in zip(calibration.batches, calibration.contents):
        with torch.no_grad():
            ref = model(torch.from_numpy(batch)).float().numpy()[..., :h, :w]
        got = session.run(None, {INPUT_NAME: batch})[0][..., :h, :w]
        agree = got.argmax(1) == ref.argmax(1)
        same, total = same + int(agree.sum()), total + agree.size
        diff = float(np.abs(got - ref).max())
        max_diff, max_logit = max(max_diff, diff), max(max_logit, float(np.abs(ref).max()))
        cases.append({"size": (h, w), "batch": 1, "max_abs_diff": diff, "argmax_agreement": float(agree.mean())})
    agreement = same / total
    worst = min(float(c["argmax_agreement"]) for c in cases)  # type: ignore[arg-type]
    if verbose:
        print(f"int8 parity on {len(cases)} calibration images ({calibration.source}): argmax agreement "
              f"{100 * agreement:.2f} % (worst image {100 * worst:.2f} %, required {100 * min_agreement:.1f} %), "
              f"max |diff| {max_diff:.3f} (max |logit| {max_logit:.2f})")
    if agreement < min_agreement:
        raise ParityError(f"{name}: the int8 model agrees with PyTorch fp32 on {100 * agreement:.2f} % of the pixels "
                          f"of {len(cases)} calibration images (required {100 * min_agreement:.1f} %); export fp32, "
                          "or calibrate on more images like the deployment's")
    return {"cases": cases, "max_abs_diff": max_diff, "max_abs_logit": max_logit, "argmax_agreement": agreement,
            "worst_image_agreement": worst, "min_agreement": min_agreement, "passed": True}
