"""The metadata a semiseg ONNX export carries, defined once for both the exporter and the runtime.

Every value is stored JSON-encoded in the ONNX ``metadata_props`` under one of these keys:

=========================  ==========================================================================
key                        JSON value
=========================  ==========================================================================
``semiseg.format``         ``"semiseg-onnx/1"`` (marks the file as a semiseg export)
``semiseg.classes``        list of class names; class id = list index
``semiseg.palette``        list of ``[r, g, b]`` colours (0..255), one per class
``semiseg.input``          ``{"name": "image", "layout": "NCHW", "channels": "RGB", "dtype": "float32",
                           "range": [0, 1], "normalization": "inside-graph", "mean": [..], "std": [..]}``
``semiseg.output``         ``{"name": "logits", "layout": "NCHW", "dtype": "float32"}``
``semiseg.size_divisor``   int: H and W must be multiples of it for exact results (the runtime pads)
``semiseg.source``         ``{"checkpoint": path or null, "run_dir": path or null, "step": int or null, "dataset": name,
                           "crop_size": [H, W], "eval_window": [H, W], "eval_mode": mode}``; the last three (the run's
                           training crop, the window and mode it was scored by) only for exports of a run folder's
                           checkpoint
``semiseg.metrics``        evaluation metrics of the source checkpoint, e.g. ``{"miou": 0.61}`` (may be ``{}``)
``semiseg.model_spec``     kwargs that rebuild the network with ``semiseg_sdk.models.build_model``
``semiseg.sdk_version``    semiseg-sdk version that exported the file
``semiseg.export_time``    ISO 8601 UTC time of the export
``semiseg.fp16``           bool: weights and arithmetic in float16 (inputs/outputs stay float32)
``semiseg.opset``          int: the ONNX opset of the default domain
``semiseg.quantization``   ``{}`` for float models; for int8: ``{"precision": "int8", "format": "QDQ", "weights":
                           "int8 per-channel", "activations": "uint8", "float_ops": [..], "calibration_method",
                           "calibration_source", "calibration_images", "argmax_agreement"}``
=========================  ==========================================================================

The mean/std are informative only: normalisation happens inside the graph, so feed RGB in [0, 1].
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

from .errors import ModelFileError

FORMAT = "semiseg-onnx/1"
PREFIX = "semiseg."
KEYS: Tuple[str, ...] = (
    "format", "classes", "palette", "input", "output", "size_divisor", "source", "metrics",
    "model_spec", "sdk_version", "export_time", "fp16", "opset", "quantization",
)
REQUIRED: Tuple[str, ...] = ("format", "classes", "palette", "input", "output", "size_divisor")
INPUT_NAME = "image"
OUTPUT_NAME = "logits"


@dataclass(frozen=True)
class ModelMetadata:
    """Everything the runtime needs to use an export, plus its provenance."""

    classes: Tuple[str, ...]
    palette: Tuple[Tuple[int, int, int], ...]
    size_divisor: int
    mean: Tuple[float, ...] = (0.485, 0.456, 0.406)
    std: Tuple[float, ...] = (0.229, 0.224, 0.225)
    source: Dict[str, Any] = field(default_factory=dict)
    metrics: Dict[str, Any] = field(default_factory=dict)
    model_spec: Dict[str, Any] = field(default_factory=dict)
    sdk_version: str = "unknown"
    export_time: str = ""
    fp16: bool = False
    opset: int = 17
    quantization: Dict[str, Any] = field(default_factory=dict)

    @property
    def precision(self) -> str:
        """``"int8"``, ``"fp16"`` or ``"fp32"``: the arithmetic of the graph (inputs/outputs are always float32)."""
        if self.quantization:
            return str(self.quantization.get("precision", "int8"))
        return "fp16" if self.fp16 else "fp32"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def miou(self) -> Optional[float]:
        """The source checkpoint's mIoU, when it was recorded."""
        value = self.metrics.get("miou")
        return None if value is None else float(value)

    @property
    def scored_tile(self) -> Optional[int]:
        """The square tile that repeats how the source run was scored: the shorter side of its evaluation window
        (the training crop unless the run chose another); None (whole images) for a run scored in ``whole`` mode
        or an export that does not record it."""
        window = self.source.get("eval_window")
        return int(min(window)) if window and self.source.get("eval_mode") != "whole" else None

    def input_spec(self) -> Dict[str, Any]:
        return {"name": INPUT_NAME, "layout": "NCHW", "channels": "RGB", "dtype": "float32", "range": [0, 1],
                "normalization": "inside-graph", "mean": list(self.mean), "std": list(self.std)}

    def to_props(self) -> Dict[str, str]:
        """The ``metadata_props`` entries (key -> JSON text) that encode this metadata."""
        values: Dict[str, Any] = {
            "format": FORMAT,
            "classes": list(self.classes),
            "palette": [list(c) for c in self.palette],
            "input": self.input_spec(),
            "output": {"name": OUTPUT_NAME, "layout": "NCHW", "dtype": "float32"},
            "size_divisor": int(self.size_divisor),
            "source": self.source,
            "metrics": self.metrics,
            "model_spec": self.model_spec,
            "sdk_version": self.sdk_version,
            "export_time": self.export_time,
            "fp16": bool(self.fp16),
            "opset": int(self.opset),
            "quantization": self.quantization,
        }
        return {PREFIX + k: json.dumps(v, default=str) for k, v in values.items()}

    @classmethod
    def from_props(cls, props: Mapping[str, str], source_file: str) -> "ModelMetadata":
        """Decode ``metadata_props``; raises ModelFileError naming ``source_file`` when they are absent or bad."""
        if PREFIX + "format" not in props:
            raise ModelFileError(f"{source_file}: not a semiseg export (no '{PREFIX}format' metadata); "
                                 "export it with `semiseg export`")
        values: Dict[str, Any] = {}
        for key in KEYS:
            if PREFIX + key not in props:
                if key in REQUIRED:
                    raise ModelFileError(f"{source_file}: semiseg metadata lacks '{PREFIX}{key}'")
                continue
            try:
                values[key] = json.loads(props[PREFIX + key])
            except json.JSONDecodeError as exc:
                raise ModelFileError(f"{source_file}: metadata '{PREFIX}{key}' is not JSON ({exc})") from exc
        if values["format"] != FORMAT:
            raise ModelFileError(f"{source_file}: metadata format {values['format']!r}, expected {FORMAT!r}")
        classes = tuple(str(c) for c in values["classes"])
        palette = tuple(tuple(int(v) for v in c) for c in values["palette"])
        if len(palette) != len(classes) or any(len(c) != 3 for c in palette):
            raise ModelFileError(f"{source_file}: metadata has {len(classes)} classes but a palette of "
                                 f"{len(palette)} entries (need one [r, g, b] per class)")
        spec = values["input"]
        return cls(
            classes=classes, palette=palette,  # type: ignore[arg-type]
            size_divisor=int(values["size_divisor"]),
            mean=tuple(float(v) for v in spec.get("mean", cls.mean)),
            std=tuple(float(v) for v in spec.get("std", cls.std)),
            source=values.get("source") or {}, metrics=values.get("metrics") or {},
            model_spec=values.get("model_spec") or {}, sdk_version=str(values.get("sdk_version", "unknown")),
            export_time=str(values.get("export_time", "")), fp16=bool(values.get("fp16", False)),
            opset=int(values.get("opset", 0)), quantization=dict(values.get("quantization") or {}),
        )

