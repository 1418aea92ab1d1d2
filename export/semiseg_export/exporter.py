"""Export a checkpoint (or an in-memory model) to a checked ONNX file with semiseg metadata.

Steps: trace (legacy exporter, opset >= 17, dynamic N/H/W) -> onnxslim (kept when it does not grow the graph)
-> optional fp16 -> metadata -> write to a temporary file -> parity check against PyTorch on that file ->
rename over ``output``. A failed parity check raises ParityError and leaves ``output`` untouched.
With int8 the float graph is checked first, then quantised (see :mod:`.int8`) and checked on the calibration
images, in a temporary folder; only the int8 graph is written to ``output``.
"""
from __future__ import annotations

import copy
import dataclasses
import datetime
import logging
import os
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import onnx
import torch
from torch import nn

from semiseg_sdk.utils.atomic import atomic_path
from semiseg_sdk.models.segmentor import Segmentor
from semiseg_serving.metadata import ModelMetadata

from .errors import ExportError, ParityError
from .fp16 import convert_to_fp16
from .int8 import Calibration, load_calibration, quantization_entry, quantize_int8
from .parity import INT8_MIN_AGREEMENT, TOLERANCES, check_int8_parity, check_parity
from .torch_to_onnx import MIN_OPSET, module_weight_count, trace_to_onnx, weight_count
from .triton import check_triton_tile, write_triton_repository

log = logging.getLogger(__name__)


def sdk_version() -> str:
    """The installed semiseg-sdk version ("unknown" when running from a source tree that was never installed)."""
    import semiseg_sdk

    return str(semiseg_sdk.__version__)


def build_metadata(model: Segmentor, checkpoint: Optional[Dict[str, Any]], fp16: bool, opset: int,
                   classes: Optional[Sequence[str]] = None,
                   palette: Optional[Sequence[Sequence[int]]] = None) -> ModelMetadata:
    """Metadata for ``model``: classes/palette/metrics/provenance from the checkpoint when there is one."""
    from semiseg_sdk.data.base import default_palette

    ckpt = checkpoint or {}
    dataset = ckpt.get("dataset") or {}
    names = list(classes or dataset.get("classes") or [f"class_{i}" for i in range(model.num_classes)])
    colours = list(palette or dataset.get("palette") or default_palette(len(names)))
    if len(names) != model.num_classes or len(colours) != len(names):
        raise ExportError(f"model has {model.num_classes} classes but {len(names)} class names and "
                          f"{len(colours)} palette colours were given")
    return ModelMetadata(
        classes=tuple(str(n) for n in names), palette=tuple(tuple(int(v) for v in c) for c in colours),
        size_divisor=int(model.size_divisor),
        mean=tuple(float(v) for v in model.mean.flatten()), std=tuple(float(v) for v in model.std.flatten()),
        source={"checkpoint": ckpt.get("path"), "run_dir": ckpt.get("run_dir"), "step": ckpt.get("step"),
                "dataset": dataset.get("name"), **scoring_window(ckpt),
                **({"weights": ckpt["weights"]} if ckpt.get("weights", "saved") != "saved" else {})},
        metrics={k: v for k, v in (ckpt.get("metrics") or {}).items() if isinstance(v, (int, float, str))},
        model_spec=dict(getattr(model, "spec", {})), sdk_version=sdk_version(),
        export_time=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        fp16=bool(fp16), opset=int(opset),
    )


def scoring_window(checkpoint: Dict[str, Any]) -> Dict[str, Any]:
    """``{"crop_size": [H, W], "eval_window": [H, W], "eval_mode": mode}`` of the run a checkpoint came from (its
    config.json): how it was scored, which ``semiseg infer`` and the service repeat by default (windows of that
    size, or whole images for a run scored in ``whole`` mode); ``{}`` without a run config."""
    from semiseg_sdk.models.checkpoint import run_scoring

    mode, window, crop = run_scoring(checkpoint)
    return {"crop_size": list(crop), "eval_window": list(window), "eval_mode": mode} if crop else {}


def _writable_target(output: Path) -> None:
    if output.is_dir():
        raise ExportError(f"{output}: is a folder; give a file name such as {output / 'model.onnx'}")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"{output}: cannot create the output folder {output.parent} ({exc})") from exc
    if not os.access(output.parent, os.W_OK | os.X_OK):
        raise ExportError(f"{output}: the output folder {output.parent} is not writable")


def _simplify(graph: onnx.ModelProto) -> Tuple[onnx.ModelProto, bool]:
    """onnxslim the graph; keep the original when onnxslim fails or does not reduce the node count."""
    import onnxslim

    try:
        slim = onnxslim.slim(graph)
    except Exception as exc:  # onnxslim is best effort: the exported graph is already valid
        log.warning("onnxslim failed (%s: %s); keeping the unsimplified graph", type(exc).__name__, exc)
        return graph, False
    if slim is None or len(slim.graph.node) > len(graph.graph.node):
        return graph, False
    return slim, True


def _quantize_checked(model: Segmentor, graph: onnx.ModelProto, meta: ModelMetadata, calib: Calibration,
                      sizes: Sequence[Tuple[int, int]], min_agreement: float, verbose: bool, target: Path,
                      name: str) -> Tuple[onnx.ModelProto, ModelMetadata, Dict[str, Any]]:
    """int8 steps: check the float graph (fp32 tolerances), quantise, check the int8 graph on the calibration
    images, then write it to ``target`` with ``meta`` plus the quantisation entry."""
    onnx.save(graph, str(target))  # the float graph is only ever a temporary file
    check_parity(model, target, sizes, (1, 2), *TOLERANCES[False], verbose=False,
                 name=f"{name} (float graph before quantisation)")
    quantized = quantize_int8(graph, calib)
    onnx.save(quantized, str(target))
    parity = check_int8_parity(model, target, calib, min_agreement, verbose=verbose, name=name)
    meta = dataclasses.replace(meta, quantization=quantization_entry(calib, parity["argmax_agreement"]))
    onnx.helper.set_model_props(quantized, meta.to_props())
    quantized.producer_name, quantized.doc_string = graph.producer_name, graph.doc_string
    onnx.save(quantized, str(target))
    return quantized, meta, parity


def default_check_sizes(size_divisor: int) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    """Two non-square parity sizes, multiples of the divisor: about 256 x 384 and 384 x 256."""
    d = max(int(size_divisor), 1)
    a, b = -(-256 // d) * d, -(-384 // d) * d
    return (a, b), (b, a)


def export_model(model: nn.Module, output: str, opset: int = MIN_OPSET, fp16: bool = False, simplify: bool = True,
                 triton: Optional[str] = None, check_sizes: Optional[Sequence[Sequence[int]]] = None,
                 atol: Optional[float] = None, min_agreement: Optional[float] = None,
                 checkpoint: Optional[Dict[str, Any]] = None, classes: Optional[Sequence[str]] = None,
                 palette: Optional[Sequence[Sequence[int]]] = None, triton_max_batch: int = 8,
                 triton_tile: Optional[int] = None, int8: bool = False, calibration: Optional[str] = None,
                 calibration_images: int = 32, verbose: bool = True) -> Dict[str, Any]:
    """Export an in-memory 2D ``Segmentor`` (see :func:`export_checkpoint` for the arguments and the result)."""
    start = time.perf_counter()
    if not isinstance(model, Segmentor):
        name = getattr(model, "spec", {}).get("name", type(model).__name__)
        raise ExportError(f"model '{name}' is not a 2D Segmentor: 3D models such as vnet are not exported "
                          "(the runtime serves 2D images)")
    if fp16 and int8:
        raise ExportError("fp16 and int8 were both asked for: choose one")
    if calibration is not None and not int8:
        raise ExportError(f"calibration {calibration!r} is only used by an int8 export: add --int8")
    check_triton_tile(triton_tile)  # before any work: a bad flag writes nothing
    if triton_tile is not None and not triton:
        raise ExportError(f"--triton_tile {triton_tile} is only used by a Triton repository: add --triton DIR")
    out = Path(output)
    _writable_target(out)
    model = copy.deepcopy(model).float().cpu().eval()  # never move or change the caller's model
    bad = [n for n, t in list(model.named_parameters()) + list(model.named_buffers())
           if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise ExportError(f"the model has non-finite (NaN or inf) values in {len(bad)} tensor(s), first: "
                          f"{', '.join(bad[:3])}; it was saved from a diverged run: export an earlier checkpoint")
    default_atol, default_agree = (None, INT8_MIN_AGREEMENT) if int8 else TOLERANCES[bool(fp16)]
    atol = default_atol if atol is None or int8 else float(atol)  # int8: bounded by agreement on real images only
    min_agreement = default_agree if min_agreement is None else float(min_agreement)
    sizes = [tuple(int(v) for v in s) for s in (check_sizes or default_check_sizes(model.size_divisor))]
    calib = load_calibration(calibration, calibration_images, model.size_divisor, checkpoint) if int8 else None

    graph = trace_to_onnx(model, opset)
    traced_nodes = len(graph.graph.node)
    simplified = False
    if simplify:
        graph, simplified = _simplify(graph)
    if fp16:
        graph = convert_to_fp16(graph)
    meta = build_metadata(model, checkpoint, fp16, opset, classes, palette)
    onnx.helper.set_model_props(graph, meta.to_props())
    graph.producer_name, graph.doc_string = "semiseg-sdk", f"semiseg-sdk {meta.sdk_version} export"
    try:
        with atomic_path(out) as tmp:
            try:
                if calib is None:
                    onnx.save(graph, str(tmp))
                    parity = check_parity(model, tmp, sizes, (1, 2), atol, min_agreement, verbose=verbose,
                                          name=str(out))
                else:
                    graph, meta, parity = _quantize_checked(model, graph, meta, calib, sizes, min_agreement,
                                                            verbose, tmp, str(out))
            except ParityError as exc:
                raise ParityError(f"{exc}; {out} was not written (a previous file there is left as it was)") from exc
    except OSError as exc:
        raise ExportError(f"{out}: cannot write the ONNX file ({exc})") from exc
    repo = None
    if triton:
        repo = write_triton_repository(out, triton, out.stem, triton_max_batch, tile=triton_tile)
    n_init, n_weights = weight_count(graph)
    summary = {
        "output": str(out), "checkpoint": meta.source.get("checkpoint"), "opset": opset, "fp16": bool(fp16),
        "precision": meta.precision, "quantization": meta.quantization,
        "simplified": simplified, "nodes": len(graph.graph.node), "traced_nodes": traced_nodes,
        "initializers": n_init, "weights": n_weights, "model_weights": module_weight_count(model)[1],
        "size_mb": round(out.stat().st_size / 2**20, 3),
        "classes": list(meta.classes), "size_divisor": meta.size_divisor, "metrics": meta.metrics,
        "max_abs_diff": parity["max_abs_diff"], "argmax_agreement": parity["argmax_agreement"],
        "tolerance": {"atol": atol, "min_agreement": min_agreement}, "parity": parity["cases"],
        "triton": None if repo is None else str(repo), "seconds": round(time.perf_counter() - start, 2),
    }
    if verbose:
        print(f"exported {out} ({summary['size_mb']} MB, {summary['nodes']} nodes, {meta.precision}): max |diff| "
              f"{summary['max_abs_diff']:.3e}, argmax agreement {100 * summary['argmax_agreement']:.3f} %")
    return summary


def export_checkpoint(checkpoint: str, output: str, opset: int = MIN_OPSET, fp16: bool = False,
                      simplify: bool = True, triton: Optional[str] = None,
                      check_sizes: Optional[Sequence[Sequence[int]]] = None, atol: Optional[float] = None,
                      min_agreement: Optional[float] = None, triton_max_batch: int = 8,
                      triton_tile: Optional[int] = None, int8: bool = False,
                      calibration: Optional[str] = None, calibration_images: int = 32,
                      verbose: bool = True, weights: str = "saved") -> Dict[str, Any]:
    """Export the inference network of a run folder or ``.pt`` checkpoint to ONNX ``output``; returns a summary.

    Args:
        checkpoint: run folder (its best.pt, else last.pt) or checkpoint file; errors raise CheckpointError.
        output: the ``.onnx`` file; written atomically, only after the parity check passed.
        opset: ONNX opset, >= 17.
        fp16: float16 weights and arithmetic (Resize kept fp32), float32 input/output.
        simplify: run onnxslim on the graph (kept only when it does not grow the graph).
        triton: also write a Triton model repository ``TRITON/<output stem>/{config.pbtxt,1/model.onnx}``.
        check_sizes: parity sizes [[h, w], ...], multiples of the size divisor (default ~256x384 and 384x256).
        atol / min_agreement: parity tolerances (default 1e-3 and 0.999 for fp32, 5e-2 and 0.99 for fp16;
            the difference bound is ``atol * max(1, max |logit|)``; int8: min_agreement only, default 0.95).
        triton_max_batch: ``max_batch_size`` of the Triton config.
        triton_tile: the Triton model's sliding window in pixels (a quarter overlapping, as ``semiseg infer``);
            None: the window the run was scored on (its training crop; whole images for a run scored whole or a
            checkpoint without its run's config.json); 0: whole images.
        int8: static int8 quantisation for CPU deployment (QDQ, per-channel int8 weights, uint8 activations,
            MinMax calibration; Resize stays float). Checked by argmax agreement with PyTorch fp32 on the
            calibration images; the float graph is only a temporary file.
        calibration: int8 calibration images: a folder of .png/.jpg, or a dataset ``NAME[:SPLIT]`` (split ``val``
            by default); default: the validation split of the checkpoint's run (from its config.json).
        calibration_images: how many calibration images, spread evenly over the source.
        weights: ``"saved"`` (the network the checkpoint saves: a ``--weight_ema`` run's average) or ``"trained"``
            (that run's weights as trained); recorded in the metadata's ``source``.

    Returns a plain dict: output, opset, fp16, precision, quantization, nodes, initializers, size_mb, classes,
    size_divisor, metrics, max_abs_diff, argmax_agreement, tolerance, parity (per size and batch, or per
    calibration image for int8), triton, seconds.
    """
    from semiseg_sdk.models.checkpoint import load_inference_model

    model, ckpt = load_inference_model(checkpoint, map_location="cpu", weights=weights)
    ckpt = {**ckpt, "weights": weights}
    return export_model(model, output, opset=opset, fp16=fp16, simplify=simplify, triton=triton,
                        check_sizes=check_sizes, atol=atol, min_agreement=min_agreement, checkpoint=ckpt,
                        triton_max_batch=triton_max_batch, triton_tile=triton_tile, int8=int8,
                        calibration=calibration, calibration_images=calibration_images, verbose=verbose)
