"""The HTTP inference service on the torch-free runtime (FastAPI + uvicorn, ``pip install semiseg-sdk[serve]``).

    from semiseg_serving.http import serve
    serve("model.onnx", host="127.0.0.1", port=8080, max_batch=8, max_wait_ms=5.0)

Or embed it: ``create_app("model.onnx")`` is a plain ASGI app; ``start_in_thread(app)`` runs it in-process.
JSON masks are run-length encoded (see :mod:`.rle`); :func:`decode_rle` turns one back into an array.
"""
from .api_error import ApiError
from .app import create_app
from .config import ServiceConfig
from .model_holder import LoadedModel, ModelHolder
from .rle import decode_rle, encode_rle
from .server import RunningService, serve, start_in_thread

__all__ = [
    "serve", "create_app", "start_in_thread", "RunningService", "ServiceConfig", "ModelHolder", "LoadedModel",
    "ApiError", "decode_rle", "encode_rle",
]
