"""Triton Inference Server model repository for an export: ``REPO/NAME/config.pbtxt`` + ``REPO/NAME/1/model.onnx``.

The repository's model is end to end, so a Triton client sends an image and gets its mask back:

    input  "image"  UINT8  [N, H, W, 3]  RGB pixels, any H and W (one size per request; Triton batches equal sizes)
    output "mask"   INT32  [N, H, W]     class ids

Inside the graph, around the exported network: scale to [0, 1], NHWC -> NCHW, reflect-pad the bottom/right to the
network's size divisor (as the runtime pads), the network (which normalises inside), crop back to H x W, argmax.

An export that records the window its run was scored on (its training crop; ``ModelMetadata.scored_tile``) gets the
sliding-window graph instead, as ``semiseg infer`` and the HTTP service predict: an image larger than the window
is cut into windows of that size stepping by three quarters of it (the last one flush with the border); a ``Loop``
runs one row of windows (a band) through the network at a time, as the runtime does: each window's softmax
probabilities, weighted by the runtime's raised-cosine ramp, are added into the band (``ScatterND`` with
``reduction="add"``) on top of what earlier bands added to its rows, which the loop carries from band to band. The
rows above the next band are then final: the loop hands out their class ids (one byte a pixel for up to 256
classes) and slides the rest up. Memory grows with the image only by its pixels and class ids, not by its windows
or class scores. An image within the window is one window, the whole-image mask. ``tile=0`` keeps whole-image
prediction for every size.

Pure ONNX around the exported file, so fp32, fp16 and int8 exports all get one, and onnxruntime runs it the same way
(tests/test_export.py checks it equals the runtime's ``Segmenter.predict`` and ``Segmenter.predict_tiled``).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Union

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from semiseg_sdk.utils.atomic import atomic_path, write_text_atomic
from semiseg_serving.metadata import INPUT_NAME, OUTPUT_NAME, ModelMetadata
from semiseg_serving.errors import ServingError
from semiseg_serving.sliding_window import check_tile_flag, default_overlap

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


P = "e2e_"  # prefix of every name the wrappers add, so none collides with the network's


def end_to_end_graph(network: onnx.ModelProto, size_divisor: int, pad_mode: str = "reflect") -> onnx.ModelProto:
    """``network`` (float NCHW [0, 1] in, logits out) wrapped into uint8 NHWC RGB in, int32 class-id mask out."""
    _check_inputs(network, pad_mode)
    p = P
    before = _image_nodes() + _pad_nodes("nchw", "hw", pad_mode)
    after = [
        helper.make_node("Slice", [p + "logits", p + "hw_starts", p + "hw", p + "hw_axes"], [p + "cropped"]),
        helper.make_node("ArgMax", [p + "cropped"], [p + "ids"], axis=1, keepdims=0),
        helper.make_node("Cast", [p + "ids"], [MASK_NAME], to=TensorProto.INT32),
    ]
    # the network reads the padded image and writes e2e_logits
    return _wrapped(network, before + _rewired(network, p + "network_in", p + "logits") + after,
                    _shared_consts(size_divisor))


def _shared_consts(size_divisor: int) -> list:
    """The constants :func:`_image_nodes`, :func:`_pad_nodes` and the crop back to the image size read."""
    i64 = lambda name, values: numpy_helper.from_array(np.array(values, np.int64), P + name)  # noqa: E731
    return [numpy_helper.from_array(np.array(1.0 / 255.0, np.float32), P + "scale"), i64("two_1", [2]),
            i64("four_1", [4]), i64("divisor", [size_divisor, size_divisor]), i64("zeros6", np.zeros(6)),
            i64("hw_axes", [2, 3]), i64("hw_starts", [0, 0])]


def _unit_nchw_nodes(source: str, target: str) -> list:
    """uint8 NHWC ``source`` -> float NCHW [0, 1] ``e2e_<target>`` (intermediates named after ``target``)."""
    p = P
    return [
        helper.make_node("Cast", [source], [p + target + "_float"], to=TensorProto.FLOAT),
        helper.make_node("Mul", [p + target + "_float", p + "scale"], [p + target + "_unit"]),
        helper.make_node("Transpose", [p + target + "_unit"], [p + target], perm=[0, 3, 1, 2]),
    ]


def _image_nodes() -> list:
    """uint8 NHWC ``image`` -> float NCHW [0, 1] ``e2e_nchw``, and its [H, W] as ``e2e_hw``."""
    p = P
    return _unit_nchw_nodes(INPUT_NAME, "nchw") + [
        helper.make_node("Shape", [p + "nchw"], [p + "shape"]),
        helper.make_node("Slice", [p + "shape", p + "two_1", p + "four_1"], [p + "hw"]),
    ]


def _pad_nodes(source: str, size: str, pad_mode: str) -> list:
    """``e2e_<source>`` (N, C, h, w; ``e2e_<size>`` = [h, w]) padded at the bottom and right to the size divisor, as
    the runtime pads: ``e2e_network_in``."""
    p = P
    return [  # pad = (divisor - hw % divisor) % divisor
        helper.make_node("Mod", [p + size, p + "divisor"], [p + "rest"]),
        helper.make_node("Sub", [p + "divisor", p + "rest"], [p + "short"]),
        helper.make_node("Mod", [p + "short", p + "divisor"], [p + "pad_hw"]),
        helper.make_node("Concat", [p + "zeros6", p + "pad_hw"], [p + "pads"], axis=0),
        helper.make_node("Pad", [p + source, p + "pads"], [p + "network_in"], mode=PAD_MODES[pad_mode]),
    ]


def check_triton_tile(tile: object) -> None:
    """Refuse a Triton window that is neither None (the run's scored window), 0 (whole images) nor a size in
    pixels, in one line naming ``--triton_tile``."""
    try:
        check_tile_flag(tile, "--triton_tile")
    except ServingError as exc:
        raise ExportError(str(exc)) from None


def windowed_graph(network: onnx.ModelProto, size_divisor: int, tile: int, num_classes: int,
                   pad_mode: str = "reflect") -> onnx.ModelProto:
    """``network`` wrapped like :func:`end_to_end_graph`, predicting by sliding ``tile``-px windows with a quarter
    overlap and the runtime's blend (``semiseg_serving.sliding_window``). A ``Loop`` runs one row of windows (a band)
    through the network at a time, converting only that band's pixels to float, adds its blended class scores to
    those earlier bands left on its rows (carried by the loop) and hands out the class ids of the rows no later band
    reaches; after the loop each image row is gathered from the band that finished it. Memory holds one band of
    windows and scores, and the class ids of the image (a third more for the bands' overlap), not every window."""
    if tile < 2:
        raise ExportError(f"window {tile}: need at least 2 px")
    _check_inputs(network, pad_mode)
    overlap = default_overlap(tile)
    label_type = TensorProto.UINT8 if num_classes <= 256 else TensorProto.INT32  # the bands' class ids
    p = P
    i64 = lambda name, values: numpy_helper.from_array(np.array(values, np.int64), p + name)  # noqa: E731
    f64 = lambda name, value: numpy_helper.from_array(np.array(value, np.float64), p + name)  # noqa: E731
    consts = _shared_consts(size_divisor) + [
        i64("tile", [tile, tile]), i64("stride", tile - overlap), i64("stride_less1", tile - overlap - 1),
        i64("zero", 0), i64("one", 1), i64("zero_1", [0]), i64("one_1", [1]), i64("minus1_1", [-1]),
        i64("three_1", [3]), i64("k_1", [num_classes]), i64("axis0", [0]), i64("axis1", [1]),
        i64("max_1", [np.iinfo(np.int64).max]),
        f64("one_f", 1.0), f64("half", 0.5), f64("pi", np.pi), f64("ramp_len", overlap + 1.0),
    ]
    outer: list = []
    body: list = []

    def node(op: str, inputs: list, output: str, into: Optional[list] = None, **attrs) -> str:
        (outer if into is None else into).append(helper.make_node(
            op, [i if i.startswith(p) or i == INPUT_NAME else p + i for i in inputs], [p + output], **attrs))
        return output

    node("Shape", [INPUT_NAME], "shape")                                       # N, H, W, 3: the uint8 image
    node("Slice", ["shape", "one_1", "three_1"], "hw")
    node("Slice", ["shape", "zero_1", "one_1"], "n_1")                         # [N]
    node("Min", ["hw", "tile"], "t_hw")                                        # window [th, tw]
    node("Sub", ["hw", "t_hw"], "span")                                        # last start per axis
    node("Add", ["span", "stride_less1"], "span_up")
    node("Div", ["span_up", "stride"], "steps")                                # ceil(span / stride)
    node("Add", ["steps", "one"], "count")                                     # windows per axis
    for axis, name in enumerate("yx"):
        a = f"{name}_"
        index = "zero" if axis == 0 else "one"
        node("Gather", ["count", index], a + "count", axis=0)
        node("Gather", ["span", index], a + "span", axis=0)
        node("Gather", ["t_hw", index], a + "size", axis=0)
        node("Range", ["zero", a + "count", "one"], a + "index")
        node("Mul", [a + "index", "stride"], a + "raw_starts")
        node("Min", [a + "raw_starts", a + "span"], a + "starts")              # flush with the border at the end
        node("Range", ["zero", a + "size", "one"], a + "offsets")
        if name == "x":  # the columns of every window of a band, to cut them and to add them back
            node("Unsqueeze", [a + "starts", "axis1"], a + "starts_col")
            node("Unsqueeze", [a + "offsets", "axis0"], a + "offsets_row")
            node("Add", [a + "starts_col", a + "offsets_row"], a + "pixels")   # [count, size] image coordinates
            node("Reshape", [a + "pixels", "minus1_1"], a + "flat")
            node("Unsqueeze", [a + "flat", "axis1"], a + "scatter_index")     # [count * size, 1]
        node("Reshape", [a + "count", "one_1"], a + "count_1")
        node("Reshape", [a + "size", "one_1"], a + "size_1")
        # blend weights of the runtime: raised cosine over `overlap` px from each end, computed in float64
        node("Cast", [a + "offsets"], a + "pos", to=TensorProto.DOUBLE)
        node("Cast", [a + "size"], a + "size_f", to=TensorProto.DOUBLE)
        node("Sub", [a + "size_f", "one_f"], a + "last")
        node("Sub", [a + "last", a + "pos"], a + "from_end")
        node("Min", [a + "pos", a + "from_end"], a + "dist")
        node("Add", [a + "dist", "one_f"], a + "dist1")
        node("Div", [a + "dist1", "ramp_len"], a + "ramp_raw")
        node("Min", [a + "ramp_raw", "one_f"], a + "ramp")
        node("Mul", [a + "ramp", "pi"], a + "angle")
        node("Cos", [a + "angle"], a + "cos")
        node("Mul", [a + "cos", "half"], a + "half_cos")
        node("Sub", ["half", a + "half_cos"], a + "blend_d")
        node("Cast", [a + "blend_d"], a + "blend", to=TensorProto.FLOAT)
    node("Unsqueeze", ["y_blend", "axis1"], "y_blend_col")
    node("Unsqueeze", ["x_blend", "axis0"], "x_blend_row")
    node("Mul", ["y_blend_col", "x_blend_row"], "blend")                       # [th, tw]
    node("Concat", ["n_1", "three_1", "y_size_1", "x_count_1", "x_size_1"], "band_shape", axis=0)
    node("Concat", ["minus1_1", "three_1", "y_size_1", "x_size_1"], "batch_shape", axis=0)
    node("Concat", ["n_1", "x_count_1", "k_1", "y_size_1", "x_size_1"], "w5_shape", axis=0)
    node("Concat", ["minus1_1", "n_1", "k_1", "y_size_1"], "by_col_shape", axis=0)
    node("Slice", ["hw", "one_1", "two_1"], "w_1")
    node("Concat", ["w_1", "n_1", "k_1", "y_size_1"], "col_acc_shape", axis=0)
    node("Slice", ["hw", "zero_1", "one_1"], "h_1")
    node("Concat", ["y_size_1", "w_1", "n_1", "k_1"], "open_shape", axis=0)
    zero = helper.make_tensor("z", TensorProto.FLOAT, [1], [0.0])
    node("ConstantOfShape", ["open_shape"], "open0", value=zero)               # th, W, N, K class scores
    node("Slice", ["y_starts", "one_1", "max_1"], "y_next")
    node("Concat", ["y_next", "h_1"], "y_ends", axis=0)                        # the row each band finishes up to

    # the loop's body, once per band: cut its windows, run them as one batch, add their blended scores to the
    # open rows, hand out the band's class ids
    b = body
    node("Gather", ["y_starts", "band"], "y0", into=b, axis=0)
    node("Unsqueeze", ["y0", "axis0"], "y0_1", into=b)
    node("Add", ["y0_1", "y_size_1"], "y1_1", into=b)
    node("Slice", [INPUT_NAME, "y0_1", "y1_1", "one_1"], "band_pixels", into=b)  # N, th, W, 3 uint8
    b.extend(_unit_nchw_nodes(p + "band_pixels", "band_rows"))                # N, 3, th, W float, one band at a time
    node("Gather", ["band_rows", "x_flat"], "cut", into=b, axis=3)             # N, 3, th, nx*tw
    node("Reshape", ["cut", "band_shape"], "cut5", into=b)
    node("Transpose", ["cut5"], "cut5_t", into=b, perm=[0, 3, 1, 2, 4])        # N, nx, 3, th, tw
    node("Reshape", ["cut5_t", "batch_shape"], "windows", into=b)
    b.extend(_pad_nodes("windows", "t_hw", pad_mode))
    b.extend(_rewired(network, p + "network_in", p + "logits"))
    node("Slice", ["logits", "hw_starts", "t_hw", "hw_axes"], "window_logits", into=b)
    node("Cast", ["window_logits"], "window_logits_f", into=b, to=TensorProto.FLOAT)
    node("Softmax", ["window_logits_f"], "probs", into=b, axis=1)              # N*nx, K, th, tw
    node("Mul", ["probs", "blend"], "weighted", into=b)
    node("Reshape", ["weighted", "w5_shape"], "w5", into=b)                    # N, nx, K, th, tw
    # add the band's windows into one band of the image (ScatterND sums the columns windows share)
    node("Transpose", ["w5"], "by_col", into=b, perm=[1, 4, 0, 2, 3])          # nx, tw, N, K, th
    node("Reshape", ["by_col", "by_col_shape"], "col_updates", into=b)
    node("ConstantOfShape", ["col_acc_shape"], "col_zeros", into=b, value=zero)
    node("ScatterND", ["col_zeros", "x_scatter_index", "col_updates"], "col_acc", into=b, reduction="add")
    node("Transpose", ["col_acc"], "row_updates", into=b, perm=[3, 0, 1, 2])   # th, W, N, K
    # the band's rows hold what earlier bands added to them (open_in): the rows above the next band are final
    node("Add", ["open_in", "row_updates"], "band_acc", into=b)
    node("Gather", ["y_ends", "band"], "y_end", into=b, axis=0)
    node("Sub", ["y_end", "y0"], "done", into=b)                               # rows this band finishes
    node("Unsqueeze", ["done", "axis0"], "done_1", into=b)
    node("Slice", ["band_acc", "done_1", "y_size_1", "axis0"], "still_open", into=b)
    node("Concat", ["zero_1", "zero_1", "zero_1", "zero_1", "done_1", "zero_1", "zero_1", "zero_1"],
         "open_pads", into=b, axis=0)
    node("Pad", ["still_open", "open_pads"], "open_out", into=b)               # slid up to the next band's rows
    node("ArgMax", ["band_acc"], "band_ids", into=b, axis=3, keepdims=0)       # th, W, N
    node("Cast", ["band_ids"], "band_labels", into=b, to=label_type)
    node("Identity", ["cond_in"], "cond_out", into=b)
    scalar = lambda name, kind: helper.make_tensor_value_info(p + name, kind, [])  # noqa: E731
    loop_body = helper.make_graph(  # the network's weights live in the body, where onnxruntime can fold them
        body, "band",
        [scalar("band", TensorProto.INT64), scalar("cond_in", TensorProto.BOOL),
         helper.make_tensor_value_info(p + "open_in", TensorProto.FLOAT, None)],
        [scalar("cond_out", TensorProto.BOOL), helper.make_tensor_value_info(p + "open_out", TensorProto.FLOAT, None),
         helper.make_tensor_value_info(p + "band_labels", label_type, None)],
        initializer=list(network.graph.initializer))
    # every band's class ids, stacked [ny, th, W, N]; image row r is row r - y of the band that finished it
    outer.append(helper.make_node("Loop", [p + "y_count", "", p + "open0"], [p + "open_last", p + "band_ids"],
                                  body=loop_body))
    node("Concat", ["minus1_1", "w_1", "n_1"], "rows_shape", axis=0)
    node("Reshape", ["band_ids", "rows_shape"], "band_rows_ids")               # ny * th, W, N
    node("Gather", ["hw", "zero"], "h", axis=0)
    node("Range", ["zero", "h", "one"], "rows")
    node("Div", ["rows", "stride"], "rows_band_up")                            # band of a row above the last start
    node("Sub", ["y_count", "one"], "last_band")
    node("GreaterOrEqual", ["rows", "y_span"], "in_last")
    node("Where", ["in_last", "last_band", "rows_band_up"], "rows_band")
    node("Gather", ["y_starts", "rows_band"], "rows_band_start", axis=0)
    node("Mul", ["rows_band", "y_size"], "rows_band_base")
    node("Sub", ["rows", "rows_band_start"], "rows_in_band")
    node("Add", ["rows_band_base", "rows_in_band"], "rows_index")
    node("Gather", ["band_rows_ids", "rows_index"], "ids", axis=0)             # H, W, N
    node("Transpose", ["ids"], "ids_nhw", perm=[2, 0, 1])
    outer.append(helper.make_node("Cast", [p + "ids_nhw"], [MASK_NAME], to=TensorProto.INT32))
    return _wrapped(network, outer, consts, with_weights=False)


def _check_inputs(network: onnx.ModelProto, pad_mode: str) -> None:
    """Refuse a pad mode the wrappers cannot express, or a network that is not a semiseg export."""
    if pad_mode not in PAD_MODES:
        raise ExportError(f"pad_mode {pad_mode!r}: use one of {', '.join(PAD_MODES)}")
    graph = network.graph
    if [i.name for i in graph.input] != [INPUT_NAME] or OUTPUT_NAME not in [o.name for o in graph.output]:
        raise ExportError(f"not a semiseg export: inputs {[i.name for i in graph.input]}, outputs "
                          f"{[o.name for o in graph.output]} (expected {INPUT_NAME!r} -> {OUTPUT_NAME!r})")


def _rewired(network: onnx.ModelProto, new_input: str, new_output: str) -> list:
    """The network's nodes reading ``new_input`` instead of its input and writing ``new_output`` for its output."""
    inner = onnx.ModelProto()
    inner.CopyFrom(network)
    for node in inner.graph.node:
        node.input[:] = [new_input if x == INPUT_NAME else x for x in node.input]
        node.output[:] = [new_output if x == OUTPUT_NAME else x for x in node.output]
    return list(inner.graph.node)


def _wrapped(network: onnx.ModelProto, nodes: list, consts: list, with_weights: bool = True) -> onnx.ModelProto:
    """The end-to-end model: uint8 NHWC ``image`` in, int32 ``mask`` out, the network's metadata kept, and its
    weights too unless a subgraph of ``nodes`` holds them (``with_weights=False``)."""
    new = helper.make_graph(
        nodes, "semiseg_end_to_end",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["N", "H", "W", 3])],
        [helper.make_tensor_value_info(MASK_NAME, TensorProto.INT32, ["N", "H", "W"])],
        initializer=consts + (list(network.graph.initializer) if with_weights else []),
    )
    model = helper.make_model(new, opset_imports=list(network.opset_import), producer_name="semiseg-sdk")
    model.ir_version = network.ir_version
    model.metadata_props.extend(network.metadata_props)
    onnx.checker.check_model(model)
    return model


def write_triton_repository(onnx_file: Union[str, Path], repo: Union[str, Path], name: str, max_batch_size: int = 8,
                            version: int = 1, pad_mode: str = "reflect", tile: Optional[int] = None) -> Path:
    """Write ``repo/name/version/model.onnx`` (the export wrapped end to end, see the module docstring) and
    ``repo/name/config.pbtxt``; returns the model folder. ``name`` may hold letters, digits, '-', '_' and '.' only
    (Triton uses it in URLs). ``tile``: the sliding window in pixels; None takes the window the export's run was
    scored on (whole images for an export that records none), 0 predicts whole images."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ExportError(f"triton model name {name!r}: use letters, digits, '-', '_' and '.' only")
    check_triton_tile(tile)
    network = onnx.load(str(onnx_file))
    meta = ModelMetadata.from_props({p.key: p.value for p in network.metadata_props}, str(onnx_file))
    window = meta.scored_tile if tile is None else tile
    if window:
        model = windowed_graph(network, meta.size_divisor, window, meta.num_classes, pad_mode)
    else:
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
