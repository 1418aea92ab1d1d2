"""An onnxruntime session with provider choice (TensorRT > CUDA > CPU), thread settings and IOBinding on GPU."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import onnxruntime as ort

from .errors import ModelFileError, ServingError

log = logging.getLogger(__name__)

PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
ProviderArg = Union[str, Sequence[Union[str, Tuple[str, Dict[str, Any]]]]]


def resolve_providers(providers: ProviderArg = "auto", trt_fp16: bool = False,
                      trt_cache_dir: Optional[str] = None) -> List[Tuple[str, Dict[str, Any]]]:
    """Turn ``"auto"``, ``"cpu"``/``"cuda"``/``"tensorrt"`` or an explicit list into ``[(name, options), ...]``.

    ``"auto"`` takes TensorRT, then CUDA, then CPU among ``onnxruntime.get_available_providers()``.
    A provider that was asked for explicitly but is not available raises ServingError listing the available ones.
    """
    available = ort.get_available_providers()
    short = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider",
             "trt": "TensorrtExecutionProvider"}
    if isinstance(providers, str):
        if providers == "auto":
            wanted: List[Any] = [p for p in PREFERENCE if p in available]
        else:
            wanted = [short.get(p.strip().lower(), p.strip()) for p in providers.split(",")]
    else:
        wanted = [short.get(p.lower(), p) if isinstance(p, str) else p for p in providers]
    out: List[Tuple[str, Dict[str, Any]]] = []
    for item in wanted:
        name, opts = (item, {}) if isinstance(item, str) else (item[0], dict(item[1]))
        if name not in available:
            raise ServingError(f"providers: {name} is not available in this onnxruntime build "
                               f"(available: {', '.join(available)})")
        if name == "TensorrtExecutionProvider":
            opts.setdefault("trt_fp16_enable", bool(trt_fp16))
            if trt_cache_dir:
                os.makedirs(trt_cache_dir, exist_ok=True)
                opts.setdefault("trt_engine_cache_enable", True)
                opts.setdefault("trt_engine_cache_path", str(trt_cache_dir))
        out.append((name, opts))
    if "CPUExecutionProvider" not in [n for n, _ in out]:
        out.append(("CPUExecutionProvider", {}))  # fallback for nodes the GPU providers do not take
    return out


class OnnxSession:
    """Owns one ``onnxruntime.InferenceSession``; ``run(batch) -> logits`` with IOBinding on GPU providers.

    ``provider`` is the provider onnxruntime actually put first (it drops providers that fail to initialise).
    """

    def __init__(self, path: Union[str, Path], providers: ProviderArg = "auto",
                 intra_op_threads: Optional[int] = None, inter_op_threads: Optional[int] = None,
                 trt_fp16: bool = False, trt_cache_dir: Optional[str] = None,
                 optimization: str = "all", cpu_arena: bool = True) -> None:
        self.path = str(path)
        if not Path(self.path).is_file():
            raise ModelFileError(f"{self.path}: model file not found")
        options = ort.SessionOptions()
        options.enable_cpu_mem_arena = bool(cpu_arena)  # off: memory a large input took goes back after the call
        if intra_op_threads:
            options.intra_op_num_threads = int(intra_op_threads)
        if inter_op_threads:
            options.inter_op_num_threads = int(inter_op_threads)
        levels = {"none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
        if optimization not in levels:
            raise ServingError(f"optimization: {optimization!r} is not one of {', '.join(levels)}")
        options.graph_optimization_level = levels[optimization]
        chosen = resolve_providers(providers, trt_fp16=trt_fp16, trt_cache_dir=trt_cache_dir)
        try:
            self.session = ort.InferenceSession(self.path, sess_options=options,
                                                providers=[n for n, _ in chosen],
                                                provider_options=[o for _, o in chosen])
        except Exception as exc:  # onnxruntime raises its own InvalidProtobuf / Fail / InvalidGraph types
            raise ModelFileError(f"{self.path}: not a loadable ONNX model ({type(exc).__name__}: {exc})") from exc
        self.providers = self.session.get_providers()
        self.provider = self.providers[0]
        log.info("%s: running on %s", self.path, self.provider)
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.use_iobinding = self.provider in GPU_PROVIDERS
        self._device_id = int(chosen[0][1].get("device_id", 0)) if self.use_iobinding else 0

    @property
    def custom_metadata(self) -> Dict[str, str]:
        """The ONNX ``metadata_props`` as a dict."""
        return dict(self.session.get_modelmeta().custom_metadata_map)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Run a float32 (N, 3, H, W) batch; returns float32 logits (N, C, H, W) on the host."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if not self.use_iobinding:
            return self.session.run([self.output_name], {self.input_name: batch})[0]
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.input_name, batch)
        binding.bind_output(self.output_name, "cuda", self._device_id)
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]
