"""``POST /v1/segment``: image in (raw PNG/JPEG or multipart field ``image``), mask out (palette PNG or JSON).

PNG answer: the mask as an indexed PNG (pixel value = class id, palette = class colours; a 16-bit grey PNG when
the model has over 256 classes) with headers ``X-Model-Name``, ``X-Model-Version``, ``X-Mean-Confidence``,
``X-Latency-Ms``, ``X-Batch-Size``.

JSON answer::

    {"model": {"name", "version"}, "size": [H, W], "classes": [...],
     "mask": {"encoding": "rle-row-major", "size": [H, W], "values": [...], "counts": [...]},   # see rle.py
     "pixel_counts": {class name: pixels}, "mean_confidence": mean of the per-pixel max softmax probability,
     "batch_size": images in the network call this image ran in,
     "latency_ms": {"total", "decode", "queue", "inference", "postprocess"}}
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any, Dict

import anyio.to_thread
import cv2
import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from ..png_palette import encode_palette_png
from ..postprocess import logits_to_mask
from ..preprocess import Prepared, prepare
from .api_error import ApiError
from .batcher import BatchResult
from .image_decode import decode_image
from .model_holder import LoadedModel
from .negotiation import choose_format
from .request_body import check_content_type, image_bytes, read_body
from .rle import encode_rle
from .state import ServiceState


@dataclass
class _Timing:
    started: float
    decoded: float = 0.0

    def ms(self, seconds: float) -> float:
        return round(1000.0 * seconds, 3)


def _decode(data: bytes, model: LoadedModel, max_pixels: int) -> Prepared:
    image = decode_image(data, max_pixels)
    return prepare(image, model.segmenter.size_divisor, channel_order="bgr", pad_mode=model.segmenter.pad_mode)


def _answer(fmt: str, model: LoadedModel, item: Prepared, result: BatchResult, timing: _Timing) -> Response:
    """Post-process one image's logits and build the response (runs in a worker thread)."""
    post_start = time.perf_counter()
    mask, conf = logits_to_mask(result.logits, item.content, item.original, return_confidence=True)
    seg = model.segmenter
    mean_conf = float(conf.mean()) if conf is not None else 0.0
    if fmt == "png":
        if mask.dtype == np.uint8:
            body = encode_palette_png(mask, seg.palette)
        else:
            body = cv2.imencode(".png", mask)[1].tobytes()
        total = time.perf_counter() - timing.started
        headers = {"X-Model-Name": model.name, "X-Model-Version": model.version,
                   "X-Mean-Confidence": f"{mean_conf:.6f}", "X-Latency-Ms": f"{timing.ms(total):.3f}",
                   "X-Batch-Size": str(result.batch_size)}
        return Response(body, media_type="image/png", headers=headers)
    counts = np.bincount(mask.ravel(), minlength=seg.num_classes)[: seg.num_classes]
    payload: Dict[str, Any] = {
        "model": model.identity(), "size": [int(mask.shape[0]), int(mask.shape[1])], "classes": list(seg.classes),
        "mask": encode_rle(mask),
        "pixel_counts": {name: int(n) for name, n in zip(seg.classes, counts)},
        "mean_confidence": round(mean_conf, 6), "batch_size": result.batch_size,
    }
    done = time.perf_counter()
    payload["latency_ms"] = {
        "total": timing.ms(done - timing.started), "decode": timing.ms(timing.decoded - timing.started),
        "queue": timing.ms(result.queued_s), "inference": timing.ms(result.inference_s),
        "postprocess": timing.ms(done - post_start),
    }
    return Response(json.dumps(payload, separators=(",", ":")), media_type="application/json")


async def _receive(request: Request, state: ServiceState) -> bytes:
    """The image bytes, read while holding a receiving slot (never a serving one) under ``body_timeout_s``."""
    check_content_type(request)
    state.start_receiving()
    try:
        body = await read_body(request, state.config.max_body_bytes, state.config.body_timeout_s)
    finally:
        state.stop_receiving()
    return image_bytes(request, body)


async def _process(request: Request, state: ServiceState, data: bytes, timing: _Timing, deadline: float) -> Response:
    fmt = choose_format(request.query_params.get("format"), request.headers.get("accept"))
    model = state.require_model()  # this request uses this model to the end, even across a reload

    async def infer() -> Response:
        item = await anyio.to_thread.run_sync(_decode, data, model, state.config.max_pixels, limiter=state.limiter)
        timing.decoded = time.perf_counter()
        result = await state.batcher.submit(model, item.pixels)
        return await anyio.to_thread.run_sync(_answer, fmt, model, item, result, timing, limiter=state.limiter)

    try:
        return await asyncio.wait_for(infer(), max(deadline - time.perf_counter(), 0.001))
    except asyncio.TimeoutError:
        raise ApiError(504, "timeout", f"the request took longer than {state.config.request_timeout_s:g} s") from None


async def segment(request: Request) -> Response:
    """Handler of ``POST /v1/segment`` (refusals are raised as :class:`ApiError`)."""
    state: ServiceState = request.app.state.service
    timing = _Timing(time.perf_counter())
    choose_format(request.query_params.get("format"), request.headers.get("accept"))  # 406 and 503 before the body
    state.require_model()
    data = await _receive(request, state)
    state.enter()
    try:
        return await _process(request, state, data, timing, timing.started + state.config.request_timeout_s)
    finally:
        state.leave()

