"""semiseg_serving: run semiseg ONNX exports with onnxruntime, numpy and OpenCV only (no torch).

    from semiseg_serving import Segmenter
    mask = Segmenter("model.onnx").predict(image)
"""
from .errors import ImageError, ModelFileError, ServingError
from .infer import infer_path
from .metadata import ModelMetadata
from .image_codec import encode_palette_png, read_palette_png, write_palette_png
from .segmenter import Segmenter
from .session import resolve_providers

__all__ = [
    "Segmenter", "infer_path", "ModelMetadata", "ServingError", "ModelFileError", "ImageError",
    "write_palette_png", "read_palette_png", "encode_palette_png", "resolve_providers",
]
