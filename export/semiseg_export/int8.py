"""Static int8 quantisation with onnxruntime (QDQ), calibrated on real images.

Weights are int8 per output channel, activations uint8 (asymmetric: what x86 CPUs run fastest, with or without
VNNI), ranges from MinMax calibration. Every op type onnxruntime can quantise is quantised except ``Resize``, which
stays float; the graph input and the ``logits`` output stay float32. (Quantising only Conv/MatMul/Gemm was both
slower and less accurate on deeplabv3plus/efficientnet_lite0: 93 % against 98.5 % argmax agreement.)

Calibration images are prepared as ``Segmenter.predict`` prepares them (RGB in [0, 1], padded at the bottom/right
to the size divisor with the same function; normalisation is inside the graph), each at its own size. They come
from a folder of images or a registered dataset (``NAME`` or ``NAME:SPLIT``); for a checkpoint without one, from
its run's validation split. The same images then measure the argmax agreement with PyTorch fp32
(:func:`semiseg_export.parity.check_int8_parity`); random noise says nothing about int8 accuracy.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import onnx

from semiseg_serving.errors import ServingError
from semiseg_serving.media import is_image, list_media, read_image_bgr
from semiseg_serving.metadata import INPUT_NAME
from semiseg_serving.preprocess import prepare, to_nchw

from .errors import ExportError

FLOAT_OPS = ("Resize",)
CALIBRATION_METHOD = "minmax"


@dataclass(frozen=True)
class Calibration:
    """Calibration inputs: float32 (1, 3, H, W) batches, the image region of each, and where they came from."""

    source: str
    batches: List[np.ndarray]
    contents: List[Tuple[int, int]]


def _evenly(total: int, count: int) -> List[int]:
    """``count`` indices spread over ``range(total)`` (all of them when there are fewer)."""
    return sorted({int(i) for i in np.linspace(0, total - 1, num=min(count, total))})


def _folder_images(folder: Path, count: int) -> Iterator[np.ndarray]:
    files = [p for p in list_media(folder) if is_image(p)]
    if not files:
        raise ExportError(f"calibration folder {folder}: no images (.png, .jpg, ...) found; int8 needs real images")
    for i in _evenly(len(files), count):
        try:
            yield read_image_bgr(files[i])[:, :, ::-1]
        except ServingError as exc:
            raise ExportError(f"calibration image {exc}") from exc


def _dataset_images(name: str, split: str, count: int, cfg: Dict[str, Any]) -> Iterator[np.ndarray]:
    """Images of a registered dataset; the run's dataset arguments (``cfg``: its config.json; size, root) apply
    when it is the run's dataset."""
    from semiseg_sdk.data import build_dataset
    from semiseg_sdk.data import run_dataset_kwargs

    kwargs = run_dataset_kwargs(cfg) if cfg.get("data") == name else {}
    try:
        dataset = build_dataset(name, split=split, **kwargs)
    except Exception as exc:  # unknown split, missing root, ...: say what was tried
        raise ExportError(f"calibration dataset {name}:{split}: cannot be built ({type(exc).__name__}: {exc})") from exc
    if len(dataset) == 0:
        raise ExportError(f"calibration dataset {name}:{split}: has no images")
    for i in _evenly(len(dataset), count):
        yield dataset[i]["image"].permute(1, 2, 0).numpy()


def load_calibration(source: Optional[str], count: int, size_divisor: int,
                     checkpoint: Optional[Dict[str, Any]] = None) -> Calibration:
    """Up to ``count`` images from ``source`` (a folder, or a dataset ``NAME[:SPLIT]``, split ``val`` by default),
    spread evenly over it. ``source=None`` takes the validation split of the checkpoint's run (its config.json)."""
    from semiseg_sdk.data import DATASETS
    from semiseg_sdk.models.checkpoint import run_config

    ckpt = checkpoint or {}
    if count < 1:
        raise ExportError(f"calibration_images: {count}; int8 needs at least one calibration image")
    cfg = run_config(ckpt)
    if source is None:
        if not cfg.get("data"):
            where = ckpt.get("path") or "an in-memory model"
            raise ExportError(f"int8 export of {where} needs calibration images: pass --calibration FOLDER (a folder "
                              "of .png/.jpg images like the deployment's) or a dataset name; no run config.json "
                              "was found to take the run's validation images from")
        source = f"{cfg['data']}:{cfg.get('val_split') or 'val'}"
    if Path(source).is_dir():
        label, images = f"folder:{Path(source).resolve()}", _folder_images(Path(source), count)
    else:
        name, _, split = source.partition(":")
        if name not in DATASETS.names():
            raise ExportError(f"calibration {source!r}: no such folder, and not a dataset name "
                              f"(datasets: {', '.join(DATASETS.names())})")
        label, images = f"dataset:{name}:{split or 'val'}", _dataset_images(name, split or "val", count, cfg)
    batches, contents = [], []
    for image in images:
        item = prepare(image, size_divisor)  # what Segmenter.predict feeds the network
        batches.append(to_nchw([item.pixels]))
        contents.append(item.content)
    return Calibration(label, batches, contents)


def quantize_int8(graph: onnx.ModelProto, calibration: Calibration) -> onnx.ModelProto:
    """Static QDQ int8 copy of a float32 ``graph`` (see the module doc); metadata props are the caller's."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(calibration.batches)

        def get_next(self) -> Optional[Dict[str, np.ndarray]]:
            batch = next(self.items, None)
            return None if batch is None else {INPUT_NAME: batch}

    ops = sorted((set(QLinearOpsRegistry) | set(QDQRegistry)) - set(FLOAT_OPS))
    with tempfile.TemporaryDirectory(prefix="semiseg-int8-") as tmp:
        fp32, pre, int8 = (Path(tmp) / name for name in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        onnx.save(graph, str(fp32))
        try:
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
            quantize_static(str(pre), str(int8), Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=ops,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax)  # keeps per-image min/max only
        except Exception as exc:  # onnxruntime raises many types here
            raise ExportError(f"int8 quantisation failed ({type(exc).__name__}: {exc})") from exc
        return onnx.load(str(int8))


def quantization_entry(calibration: Calibration, agreement: float) -> Dict[str, Any]:
    """The ``semiseg.quantization`` metadata of an int8 export."""
    return {"precision": "int8", "format": "QDQ", "weights": "int8 per-channel", "activations": "uint8",
            "float_ops": list(FLOAT_OPS), "calibration_method": CALIBRATION_METHOD,
            "calibration_source": calibration.source, "calibration_images": len(calibration.batches),
            "argmax_agreement": round(float(agreement), 6)}
