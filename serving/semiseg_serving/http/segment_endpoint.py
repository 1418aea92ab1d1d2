"""``POST /v1/segment``: image in (raw PNG/JPEG or multipart field ``image``), mask out (palette PNG or JSON).

PNG answer: the mask as an indexed PNG (pixel value = class id, palette = class colours; a 16-bit grey PNG when
the model has over 256 classes) with headers ``X-Model-Name``, ``X-Model-Version``, ``X-Mean-Confidence``,
``X-Latency-Ms``, ``X-Batch-Size``.

JSON answer::

    {"model": {"name", "version"}, "size": [H, W], "classes": [...],
     "mask": {"encoding": "rle-row-major", "size": [H, W], "values": [...], "counts": [...]},   # see rle.py
              # with ?mask_encoding=coco: {"encoding": "coco-rle", "size": [H, W], "classes": [{"class_id", "class",
              #   "area", "segmentation": {"size": [H, W], "counts": "<COCO compressed RLE>"}}, ...]}
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

from ..memory import request_bytes, tiles_per_call
from ..image_codec import encode_palette_png
from ..postprocess import logits_to_mask
from ..preprocess import Prepared, prepare
from ..sliding_window import default_overlap, predict_tiled_rgb
from .api_error import ApiError
from .batcher import BatchResult
from .image_decode import checked_size, decode_image
from .model_holder import LoadedModel
from .negotiation import choose_format
from .request_body import check_content_type, image_bytes, read_body
from .rle import encode_coco, encode_rle
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
    mean_conf = float(conf.mean()) if conf is not None else 0.0
    return _response(fmt, model, mask, mean_conf, result.batch_size, timing,
                     {"queue": result.queued_s, "inference": result.inference_s}, post_start)


def _tiled_answer(fmt: str, model: LoadedModel, data: bytes, max_pixels: int, tile: int, batch: int,
                  timing: _Timing, deadline: float) -> Response:
    """Decode and predict an image tile by tile (one row of tiles in memory, ``batch`` tiles per network call),
    then build the response."""
    image = decode_image(data, max_pixels)
    timing.decoded = time.perf_counter()
    seg = model.segmenter
    try:
        mask, mean_conf = predict_tiled_rgb(seg.run, image, seg.num_classes, seg.size_divisor, tile,
                                            default_overlap(tile), batch_size=batch, pad_mode=seg.pad_mode, bgr=True,
                                            mean_confidence=True, should_stop=lambda: time.perf_counter() > deadline)
    except TimeoutError:
        raise ApiError(504, "timeout", "the request ran out of time while its tiles were being predicted") from None
    inferred = time.perf_counter()
    return _response(fmt, model, mask, float(mean_conf), 1, timing, {"queue": 0.0, "inference": inferred - timing.decoded},
                     inferred)


def _response(fmt: str, model: LoadedModel, mask: np.ndarray, mean_conf: float, batch_size: int, timing: _Timing,
              network: Dict[str, float], post_start: float) -> Response:
    seg = model.segmenter
    if fmt == "png":
        if mask.dtype == np.uint8:
            body = encode_palette_png(mask, seg.palette)
        else:
            body = cv2.imencode(".png", mask)[1].tobytes()
        total = time.perf_counter() - timing.started
        headers = {"X-Model-Name": model.name, "X-Model-Version": model.version,
                   "X-Mean-Confidence": f"{mean_conf:.6f}", "X-Latency-Ms": f"{timing.ms(total):.3f}",
                   "X-Batch-Size": str(batch_size)}
        return Response(body, media_type="image/png", headers=headers)
    counts = np.bincount(mask.ravel(), minlength=seg.num_classes)[: seg.num_classes]
    payload: Dict[str, Any] = {
        "model": model.identity(), "size": [int(mask.shape[0]), int(mask.shape[1])], "classes": list(seg.classes),
        "mask": encode_coco(mask, seg.classes) if fmt == "json-coco" else encode_rle(mask),
        "pixel_counts": {name: int(n) for name, n in zip(seg.classes, counts)},
        "mean_confidence": round(mean_conf, 6), "batch_size": batch_size,
    }
    done = time.perf_counter()
    payload["latency_ms"] = {
        "total": timing.ms(done - timing.started), "decode": timing.ms(timing.decoded - timing.started),
        "queue": timing.ms(network["queue"]), "inference": timing.ms(network["inference"]),
        "postprocess": timing.ms(done - post_start),
    }
    return Response(json.dumps(payload, separators=(",", ":")), media_type="application/json")


MASK_ENCODINGS = ("rle-row-major", "coco")


def _answer_format(request: Request) -> str:
    """``"png"``, ``"json"`` or ``"json-coco"`` (JSON with ``?mask_encoding=coco``); 400 for an unknown encoding."""
    fmt = choose_format(request.query_params.get("format"), request.headers.get("accept"))
    encoding = request.query_params.get("mask_encoding", "rle-row-major").strip().lower()
    if encoding not in MASK_ENCODINGS:
        raise ApiError(400, "bad_request", f"mask_encoding={encoding!r}: use one of {', '.join(MASK_ENCODINGS)}")
    return "json-coco" if fmt == "json" and encoding == "coco" else fmt


async def _receive(request: Request, state: ServiceState) -> bytes:
    """The image bytes, read while holding a receiving slot (never a serving one) under ``body_timeout_s``."""
    check_content_type(request)
    state.start_receiving()
    try:
        body = await read_body(request, state.config.max_body_bytes, state.config.body_timeout_s)
    finally:
        state.stop_receiving()
    return await image_bytes(request, body)


async def _process(request: Request, state: ServiceState, data: bytes, timing: _Timing, deadline: float) -> Response:
    fmt = _answer_format(request)
    model = state.require_model()  # this request uses this model to the end, even across a reload
    cfg = state.config
    width, height = checked_size(data, cfg.max_pixels)  # from the header: nothing decoded yet
    tile = cfg.tile_for(width, height, model.segmenter.metadata.scored_tile)
    batch = tiles_per_call(tile, cfg.tile) if tile else 1
    need = request_bytes(width, height, model.segmenter.num_classes, model.bytes_per_pixel, tile is not None,
                         tile or cfg.tile, batch)
    if need > state.memory.capacity:
        raise ApiError(413, "memory_limit", f"the image is {width}x{height}; serving it needs about "
                       f"{need / 2**20:.0f} MB, over the service's memory budget of {cfg.memory_budget_mb} MB "
                       "(--memory_budget_mb)")
    if not await state.memory.acquire(need, deadline - time.perf_counter()):
        raise ApiError(503, "overloaded", f"the memory budget ({cfg.memory_budget_mb} MB) stayed taken by other "
                       "requests until this one's deadline; retry later", headers={"Retry-After": str(cfg.retry_after_s)})
    try:
        if tile:  # alone in a worker thread, not batched; it stops at its deadline between rows of tiles
            return await anyio.to_thread.run_sync(_tiled_answer, fmt, model, data, cfg.max_pixels, tile, batch,
                                                  timing, deadline, limiter=state.limiter)
        return await _whole(state, fmt, model, data, timing, deadline)
    finally:
        await state.memory.release(need)


async def _whole(state: ServiceState, fmt: str, model: LoadedModel, data: bytes, timing: _Timing,
                 deadline: float) -> Response:
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
    _answer_format(request)  # 400/406 and 503 before the body
    state.require_model()
    data = await _receive(request, state)
    state.enter()
    try:
        return await _process(request, state, data, timing, timing.started + state.config.request_timeout_s)
    finally:
        state.leave()

