"""Triton Inference Server model repository for an export: ``REPO/NAME/config.pbtxt`` + ``REPO/NAME/1/model.onnx``.

The repository's model is end to end, so a Triton client sends an image and gets its mask back:

    input  "image"  UINT8  [N, H, W, 3]  RGB pixels, any H and W (one size per request; Triton batches equal sizes)
    output "mask"   INT32  [N, H, W]     class ids

Inside the graph, around the exported network: scale to [0, 1], NHWC -> NCHW, reflect-pad the bottom/right to the
network's size divisor (as the runtime pads), the network (which normalises inside), crop back to H x W, argmax.
Pure ONNX around the exported file, so fp32, fp16 and int8 exports all get one, and onnxruntime runs it the same way
(tests/test_export.py checks it equals the runtime's ``Segmenter.predict``).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Union

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from semiseg_sdk.utils.atomic import atomic_path, write_text_atomic
from semiseg_serving.metadata import INPUT_NAME, OUTPUT_NAME, ModelMetadata

from .errors import ExportError

MASK_NAME = "mask"
PAD_MODES = {"reflect": "reflect", "constant": "constant", "replicate": "edge"}  # runtime pad mode -> ONNX Pad mode


def triton_config(name: str, max_batch_size: int = 8) -> str:
    """config.pbtxt text: onnxruntime backend, batch dimension left out of ``dims``, -1 for height and width."""
    return (
        f'name: "{name}"\n'
        'platform: "onnxruntime_onnx"\n'
        f"max_batch_size: {int(max_batch_size)}\n"
        "input [\n"
        f'  {{\n    name: "{INPUT_NAME}"\n    data_type: TYPE_UINT8\n    dims: [ -1, -1, 3 ]\n  }}\n'
        "]\n"
        "output [\n"
        f'  {{\n    name: "{MASK_NAME}"\n    data_type: TYPE_INT32\n    dims: [ -1, -1 ]\n  }}\n'
        "]\n"
        "dynamic_batching { }\n"
    )


def end_to_end_graph(network: onnx.ModelProto, size_divisor: int, pad_mode: str = "reflect") -> onnx.ModelProto:
    """``network`` (float NCHW [0, 1] in, logits out) wrapped into uint8 NHWC RGB in, int32 class-id mask out."""
    if pad_mode not in PAD_MODES:
        raise ExportError(f"pad_mode {pad_mode!r}: use one of {', '.join(PAD_MODES)}")
    graph = network.graph
    if [i.name for i in graph.input] != [INPUT_NAME] or OUTPUT_NAME not in [o.name for o in graph.output]:
        raise ExportError(f"not a semiseg export: inputs {[i.name for i in graph.input]}, outputs "
                          f"{[o.name for o in graph.output]} (expected {INPUT_NAME!r} -> {OUTPUT_NAME!r})")
    p = "e2e_"  # prefix of every name added here, so none collides with the network's
    consts = [
        numpy_helper.from_array(np.array(1.0 / 255.0, np.float32), p + "scale"),
        numpy_helper.from_array(np.array([2], np.int64), p + "two"),
        numpy_helper.from_array(np.array([4], np.int64), p + "four"),
        numpy_helper.from_array(np.array([size_divisor, size_divisor], np.int64), p + "divisor"),
        numpy_helper.from_array(np.zeros(6, np.int64), p + "zeros6"),
        numpy_helper.from_array(np.array([2, 3], np.int64), p + "hw_axes"),
        numpy_helper.from_array(np.zeros(2, np.int64), p + "hw_starts"),
    ]
    before = [
        helper.make_node("Cast", [INPUT_NAME], [p + "float"], to=TensorProto.FLOAT),
        helper.make_node("Mul", [p + "float", p + "scale"], [p + "unit"]),
        helper.make_node("Transpose", [p + "unit"], [p + "nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Shape", [p + "nchw"], [p + "shape"]),
        helper.make_node("Slice", [p + "shape", p + "two", p + "four"], [p + "hw"]),
        # pad = (divisor - hw % divisor) % divisor at the bottom and right
        helper.make_node("Mod", [p + "hw", p + "divisor"], [p + "rest"]),
        helper.make_node("Sub", [p + "divisor", p + "rest"], [p + "short"]),
        helper.make_node("Mod", [p + "short", p + "divisor"], [p + "pad_hw"]),
        helper.make_node("Concat", [p + "zeros6", p + "pad_hw"], [p + "pads"], axis=0),
        helper.make_node("Pad", [p + "nchw", p + "pads"], [p + "network_in"], mode=PAD_MODES[pad_mode]),
    ]
    after = [
        helper.make_node("Slice", [p + "logits", p + "hw_starts", p + "hw", p + "hw_axes"], [p + "cropped"]),
        helper.make_node("ArgMax", [p + "cropped"], [p + "ids"], axis=1, keepdims=0),
        helper.make_node("Cast", [p + "ids"], [MASK_NAME], to=TensorProto.INT32),
    ]
    inner = onnx.ModelProto()
    inner.CopyFrom(network)
    for node in inner.graph.node:  # the network now reads the padded image and writes e2e_logits
        node.input[:] = [p + "network_in" if n == INPUT_NAME else n for n in node.input]
        node.output[:] = [p + "logits" if n == OUTPUT_NAME else n for n in node.output]
    new = helper.make_graph(
        before + list(inner.graph.node) + after, "semiseg_end_to_end",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["N", "H", "W", 3])],
        [helper.make_tensor_value_info(MASK_NAME, TensorProto.INT32, ["N", "H", "W"])],
        initializer=consts + list(inner.graph.initializer),
    )
    model = helper.make_model(new, opset_imports=list(network.opset_import), producer_name="semiseg-sdk")
    model.ir_version = network.ir_version
    model.metadata_props.extend(network.metadata_props)
    onnx.checker.check_model(model)
    return model


def write_triton_repository(onnx_file: Union[str, Path], repo: Union[str, Path], name: str, max_batch_size: int = 8,
                            version: int = 1, pad_mode: str = "reflect") -> Path:
    """Write ``repo/name/version/model.onnx`` (the export wrapped end to end, see the module docstring) and
    ``repo/name/config.pbtxt``; returns the model folder. ``name`` may hold letters, digits, '-', '_' and '.' only
    (Triton uses it in URLs)."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ExportError(f"triton model name {name!r}: use letters, digits, '-', '_' and '.' only")
    network = onnx.load(str(onnx_file))
    meta = ModelMetadata.from_props({p.key: p.value for p in network.metadata_props}, str(onnx_file))
    model = end_to_end_graph(network, meta.size_divisor, pad_mode)
    folder = Path(repo) / name
    try:
        (folder / str(version)).mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / str(version) / "model.onnx") as tmp:
            onnx.save(model, str(tmp))
        write_text_atomic(folder / "config.pbtxt", triton_config(name, max_batch_size))
    except OSError as exc:
        raise ExportError(f"{folder}: cannot write the Triton repository ({exc})") from exc
    return folder
