"""float32 -> float16 conversion of an ONNX graph, keeping float32 inputs/outputs and Resize in float32.

Written with the onnx API (onnxconverter-common is not a dependency). The rule:
  * a node runs in fp16 when it depends on the *values* of the image input (the data path); nodes that only
    see shapes (after Shape/Size) or constants stay fp32, so size arithmetic never loses precision;
  * blocked ops (Resize, see onnxruntime#14827) always run in fp32;
  * float initializers and Constant tensors used only by fp16 nodes are stored as fp16 (half the file size);
  * a Cast is inserted on every edge where producer and consumer precision differ, including after the
    float32 ``image`` input and before a float32 ``logits`` output.
Graphs with sub-graphs (If/Loop/Scan) are refused: segmentation nets do not need them.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Set, Tuple

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .errors import ExportError

FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
BLOCKED_OPS = ("Resize",)
SHAPE_OPS = ("Shape", "Size")


def _elem_types(model: onnx.ModelProto) -> Dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.input, *g.output, *g.value_info]}
    types.update({t.name: t.data_type for t in g.initializer})
    for node in g.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    types[node.output[0]] = a.t.data_type
    return types


def _fp16_nodes(graph: onnx.GraphProto, blocked: Sequence[str]) -> List[bool]:
    """Per node: does it run in fp16 (depends on image values, not blocked, not a shape op)?"""
    inits = {t.name for t in graph.initializer}
    data: Set[str] = {v.name for v in graph.input if v.name not in inits}
    out: List[bool] = []
    for node in graph.node:
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            raise ExportError(f"fp16: node {node.name or node.op_type} has a sub-graph; not supported")
        on_data = node.op_type not in SHAPE_OPS and any(i in data for i in node.input if i)
        if on_data:
            data.update(o for o in node.output if o)
        out.append(on_data and node.op_type not in blocked)
    return out


def _to_half(array: np.ndarray) -> np.ndarray:
    limit = float(np.finfo(np.float16).max)
    return np.clip(array, -limit, limit).astype(np.float16)


def convert_to_fp16(model: onnx.ModelProto, blocked: Sequence[str] = BLOCKED_OPS) -> onnx.ModelProto:
    """Return an fp16 copy of ``model`` whose graph inputs and outputs are still float32 (see module doc)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    types = _elem_types(model)
    half_node = _fp16_nodes(graph, blocked)
    consumers: Dict[str, List[bool]] = {}
    for node, half in zip(graph.node, half_node):
        for i in node.input:
            if i:
                consumers.setdefault(i, []).append(half)

    dtype: Dict[str, int] = dict(types)  # the element type each value has after conversion
    for init in graph.initializer:
        if init.data_type == FLOAT and consumers.get(init.name) and all(consumers[init.name]):
            init.CopyFrom(numpy_helper.from_array(_to_half(numpy_helper.to_array(init)), init.name))
            dtype[init.name] = HALF
    for node, half in zip(graph.node, half_node):
        if node.op_type == "Constant":
            attr = next((a for a in node.attribute if a.name == "value"), None)
            if attr is not None and attr.t.data_type == FLOAT and consumers.get(node.output[0]) \
                    and all(consumers[node.output[0]]):
                attr.t.CopyFrom(numpy_helper.from_array(_to_half(numpy_helper.to_array(attr.t)), attr.t.name))
                dtype[node.output[0]] = HALF
            continue
        if not half:
            continue
        if node.op_type == "Cast":
            attr = next(a for a in node.attribute if a.name == "to")
            if attr.i == FLOAT:
                attr.i = HALF
        for o in node.output:
            if types.get(o) == FLOAT:
                dtype[o] = HALF

    new_nodes: List[onnx.NodeProto] = []
    casts: Dict[Tuple[str, int], str] = {}
    for node, half in zip(graph.node, half_node):
        want = HALF if half else FLOAT
        for k, name in enumerate(node.input):
            have = dtype.get(name)
            if not name or have not in (FLOAT, HALF) or have == want:
                continue
            key = (name, want)
            if key not in casts:
                casts[key] = f"{name}/as_{'fp16' if want == HALF else 'fp32'}"
                new_nodes.append(helper.make_node("Cast", [name], [casts[key]], to=want, name=casts[key]))
            node.input[k] = casts[key]
        new_nodes.append(node)

    for out in graph.output:
        if dtype.get(out.name) == HALF:  # produced in fp16: rename it and cast back to the float32 output
            inner = f"{out.name}/fp16"
            for node in new_nodes:
                node.output[:] = [inner if o == out.name else o for o in node.output]
                node.input[:] = [inner if i == out.name else i for i in node.input]
            new_nodes.append(helper.make_node("Cast", [inner], [out.name], to=FLOAT, name=f"{out.name}/as_fp32"))
    del graph.node[:]
    graph.node.extend(new_nodes)
    del graph.value_info[:]  # stale types; onnxruntime re-infers them
    try:
        onnx.checker.check_model(model)
        onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except Exception as exc:
        raise ExportError(f"fp16 conversion produced an invalid graph ({type(exc).__name__}: {exc})") from exc
    return model
