"""Triton Inference Server model repository for an export: ``REPO/NAME/config.pbtxt`` + ``REPO/NAME/1/model.onnx``."""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Union

from semiseg_sdk.utils.atomic import atomic_path, write_text_atomic
from semiseg_serving.metadata import INPUT_NAME, OUTPUT_NAME

from .errors import ExportError


def triton_config(name: str, num_classes: int, max_batch_size: int = 8) -> str:
    """config.pbtxt text: onnxruntime backend, batch dimension left out of ``dims``, -1 for height and width."""
    return (
        f'name: "{name}"\n'
        'platform: "onnxruntime_onnx"\n'
        f"max_batch_size: {int(max_batch_size)}\n"
        "input [\n"
        f'  {{\n    name: "{INPUT_NAME}"\n    data_type: TYPE_FP32\n    dims: [ 3, -1, -1 ]\n  }}\n'
        "]\n"
        "output [\n"
        f'  {{\n    name: "{OUTPUT_NAME}"\n    data_type: TYPE_FP32\n    dims: [ {int(num_classes)}, -1, -1 ]\n  }}\n'
        "]\n"
        "dynamic_batching { }\n"
    )


def write_triton_repository(onnx_file: Union[str, Path], repo: Union[str, Path], name: str, num_classes: int,
                            max_batch_size: int = 8, version: int = 1) -> Path:
    """Copy ``onnx_file`` to ``repo/name/version/model.onnx`` and write ``repo/name/config.pbtxt``; returns the
    model folder. ``name`` may hold letters, digits, '-', '_' and '.' only (Triton uses it in URLs)."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ExportError(f"triton model name {name!r}: use letters, digits, '-', '_' and '.' only")
    folder = Path(repo) / name
    try:
        (folder / str(version)).mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / str(version) / "model.onnx") as tmp:
            shutil.copyfile(onnx_file, tmp)
        write_text_atomic(folder / "config.pbtxt", triton_config(name, num_classes, max_batch_size))
    except OSError as exc:
        raise ExportError(f"{folder}: cannot write the Triton repository ({exc})") from exc
    return folder
