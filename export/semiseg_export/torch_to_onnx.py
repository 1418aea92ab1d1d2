"""PyTorch ``Segmentor`` -> ONNX graph with dynamic batch, height and width (legacy TorchScript exporter).

Why the legacy exporter (``dynamo=False``): the torch.export-based one needs ``onnxscript`` (not a dependency
here) and, per PITFALLS.md, can hit shape guards from stride arithmetic with dynamic height/width; the legacy
exporter with ``dynamic_axes`` traces conv nets predictably, and the parity check is what decides either way.
"""
from __future__ import annotations

import copy
import tempfile
import warnings
from pathlib import Path
from typing import Dict, List, Tuple

import onnx
import torch
from torch import nn

from semiseg_serving.metadata import INPUT_NAME, OUTPUT_NAME

from .errors import ExportError

MIN_OPSET = 17
DYNAMIC_AXES = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}, OUTPUT_NAME: {0: "batch", 2: "height", 3: "width"}}


def example_size(size_divisor: int) -> Tuple[int, int]:
    """A non-square trace size, multiple of the divisor, at least 64 x 96 (so every stride has >= 2 pixels)."""
    d = max(int(size_divisor), 1)
    return -(-64 // d) * d, -(-96 // d) * d


def trace_to_onnx(model: nn.Module, opset: int = MIN_OPSET, fold_constants: bool = True) -> onnx.ModelProto:
    """Export ``model`` (eval mode, CPU, float32) with a batch of 2; returns the ONNX model in memory.

    Input ``image``: float32 (N, 3, H, W) RGB in [0, 1]; output ``logits``: float32 (N, C, H, W); N, H and W
    are dynamic. ``fold_constants=False`` skips constant folding and BatchNorm fusion, so every parameter and
    buffer stays one initializer under its own name (used by :func:`audit_initializers`).
    """
    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset} < {MIN_OPSET}: the exporter needs opset >= {MIN_OPSET}")
    h, w = example_size(getattr(model, "size_divisor", 32))
    example = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(0))
    model = model.eval()
    with tempfile.TemporaryDirectory(prefix="semiseg-export-") as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter warns that it is deprecated, on every call
        path = Path(tmp) / "model.onnx"
        try:
            torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=DYNAMIC_AXES,
                              do_constant_folding=fold_constants, export_params=True,
                              training=torch.onnx.TrainingMode.EVAL if fold_constants
                              else torch.onnx.TrainingMode.PRESERVE)  # PRESERVE + eval(): no BN fusion
        except Exception as exc:
            name = getattr(model, "spec", {}).get("name", type(model).__name__)
            raise ExportError(f"model '{name}' could not be traced to ONNX ({type(exc).__name__}: {exc})") from exc
        return onnx.load(str(path))


def weight_count(graph_model: onnx.ModelProto) -> Tuple[int, int]:
    """(number of initializers, total number of weight elements) of an ONNX model."""
    sizes = [int(_numel(t.dims)) for t in graph_model.graph.initializer]
    return len(sizes), sum(sizes)


def module_weight_count(model: nn.Module) -> Tuple[int, int]:
    """(number of parameters + buffers, their total elements), counting ``num_batches_tracked`` out (unused at
    inference: the exporter drops it)."""
    tensors = [t for _, t in model.named_parameters()]
    tensors += [b for n, b in model.named_buffers() if not n.endswith("num_batches_tracked")]
    return len(tensors), sum(t.numel() for t in tensors)


UNUSED_AT_INFERENCE = ("num_batches_tracked", "mask_token")  # buffers a correct graph does not ship


def audit_initializers(model: nn.Module, opset: int = MIN_OPSET) -> Dict[str, List[str]]:
    """Which tensors does the traced graph ship? Compares the initializer names of an unfolded export with the
    model's parameters and buffers (``UNUSED_AT_INFERENCE`` excluded: BatchNorm's step counters, DINOv2's
    masked-modelling token).

    The exporter merges initializers with identical values (e.g. freshly initialised BatchNorms), so the audit
    works on a copy whose tensors are all made distinct and whose non-persistent buffers are made persistent. Returns ``{"extra": [...], "missing": [...],
    "initializers": [...], "module": [...]}``; a clean export has both lists empty.
    """
    model = copy.deepcopy(model).float().cpu().eval()
    for module in model.modules():  # non-persistent buffers (mean/std) would be inlined as Constant nodes
        module._non_persistent_buffers_set.clear()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            if t.is_floating_point():
                t.add_(torch.rand(t.shape, generator=gen) * 1e-3)  # positive: running_var stays > 0
    graph = trace_to_onnx(model, opset, fold_constants=False)
    names = sorted(t.name for t in graph.graph.initializer)
    own = sorted([n for n, _ in model.named_parameters()]
                 + [n for n, _ in model.named_buffers() if not n.endswith(UNUSED_AT_INFERENCE)])
    return {"extra": sorted(set(names) - set(own)), "missing": sorted(set(own) - set(names)),
            "initializers": names, "module": own}


def _numel(dims) -> int:
    n = 1
    for d in dims:
        n *= d
    return n
