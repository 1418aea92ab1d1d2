"""semiseg_export: PyTorch segmentation models -> checked ONNX files (and Triton repositories).

    from semiseg_export import export_checkpoint
    summary = export_checkpoint("runs/exp1", "model.onnx")   # prints the parity figures
    export_checkpoint("runs/exp1", "model_int8.onnx", int8=True, calibration="frames/")  # int8 for CPU
"""
from .errors import ExportError, ParityError
from .exporter import build_metadata, export_checkpoint, export_model
from .fp16 import convert_to_fp16
from .int8 import load_calibration, quantize_int8
from .parity import check_int8_parity, check_parity
from .torch_to_onnx import trace_to_onnx, weight_count
from .triton import end_to_end_graph, triton_config, windowed_graph, write_triton_repository

__all__ = [
    "export_checkpoint", "export_model", "build_metadata", "check_parity", "check_int8_parity", "convert_to_fp16",
    "load_calibration", "quantize_int8", "trace_to_onnx", "weight_count", "write_triton_repository", "triton_config",
    "end_to_end_graph", "windowed_graph",
    "ExportError", "ParityError",
]
