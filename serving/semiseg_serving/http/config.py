"""The service's settings: batching, limits and model-session options, validated once at start-up."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional

from ..errors import ServingError
from ..sliding_window import check_tile_flag


@dataclass(frozen=True)
class ServiceConfig:
    """Settings of the HTTP service (defaults suit a CPU box; every one is a ``semiseg serve`` flag).

    Batching: concurrent ``/v1/segment`` requests are grouped up to ``max_batch`` images, waiting at most
    ``max_wait_ms`` after the first one arrived; ``max_batch=1`` turns batching off.
    Limits: ``max_body_bytes`` (413), ``max_pixels`` = width * height of the decoded image (413),
    ``body_timeout_s`` for receiving the body (408), ``request_timeout_s`` for the whole request (504),
    ``max_receiving`` requests whose body is still arriving and ``max_in_flight`` requests being served (body
    received) at once (503 with ``Retry-After``): a slow upload holds a receiving slot only, never a serving one.
    Windows: ``window`` N predicts an image larger than N px on a side by sliding N-px windows (a quarter
    overlapping), as ``semiseg infer --tile N``; None (the default) takes the window the model's run was scored on
    (:attr:`~semiseg_serving.metadata.ModelMetadata.scored_tile`, its training crop unless it chose another), so the
    service answers with the masks ``infer`` writes and the score the run reported; 0, or a model that records no
    window, predicts whole images. Images no larger than the window are batched; larger ones run alone.
    Memory: a request is admitted once the memory it needs (its pixels x the model's bytes per pixel, measured at
    load; images predicted by windows, and whole-image requests over ``tile_above_pixels``, which run tile by tile,
    ``tile`` pixels a side, need far less) fits in ``memory_budget_mb`` beside the requests being served; it waits
    for that up to its deadline (503 after), and an image that alone needs more than the budget gets 413
    ``memory_limit``.
    Session: ``providers`` (``"auto"``, ``"cpu"``, ``"cuda,cpu"``...) and onnxruntime thread pools
    (``intra_op_threads`` None = onnxruntime's default, one thread per core).
    """

    max_batch: int = 8
    max_wait_ms: float = 5.0
    max_body_bytes: int = 20 * 2**20
    max_pixels: int = 40_000_000
    request_timeout_s: float = 30.0
    body_timeout_s: float = 10.0
    max_in_flight: int = 64
    max_receiving: int = 256
    memory_budget_mb: int = 1024
    tile_above_pixels: int = 1024 * 1024
    tile: int = 512
    window: Optional[int] = None
    retry_after_s: int = 1
    providers: str = "auto"
    intra_op_threads: Optional[int] = None
    inter_op_threads: Optional[int] = None
    warmup_size: int = 64

    def __post_init__(self) -> None:
        positive = {"max_batch": self.max_batch, "max_body_bytes": self.max_body_bytes,
                    "max_pixels": self.max_pixels, "request_timeout_s": self.request_timeout_s,
                    "body_timeout_s": self.body_timeout_s, "max_in_flight": self.max_in_flight,
                    "max_receiving": self.max_receiving, "memory_budget_mb": self.memory_budget_mb,
                    "tile_above_pixels": self.tile_above_pixels, "tile": self.tile, "warmup_size": self.warmup_size}
        for name, value in positive.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ServingError(f"{name}: must be a positive number, got {value!r}")
        check_tile_flag(self.window, "window")
        if not isinstance(self.max_wait_ms, (int, float)) or self.max_wait_ms < 0:
            raise ServingError(f"max_wait_ms: must be >= 0, got {self.max_wait_ms!r}")
        if not isinstance(self.retry_after_s, int) or self.retry_after_s < 0:
            raise ServingError(f"retry_after_s: must be a whole number of seconds >= 0, got {self.retry_after_s!r}")
        for name in ("intra_op_threads", "inter_op_threads"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ServingError(f"{name}: must be None or an int >= 1, got {value!r}")

    def window_for(self, scored_tile: Optional[int]) -> Optional[int]:
        """The window images of a model are predicted by: ``window``, else the model's own ``scored_tile`` (None
        when it records none); None for whole images."""
        return (scored_tile if self.window is None else self.window) or None

    def tile_for(self, width: int, height: int, scored_tile: Optional[int]) -> Optional[int]:
        """The tile side an image of ``width x height`` is predicted by (sliding windows), or None for one whole,
        batched network call; ``scored_tile`` is the model's own window (None when it records none)."""
        window = self.window_for(scored_tile)
        if window and (width > window or height > window):
            return window
        return self.tile if width * height > self.tile_above_pixels else None

    def to_dict(self) -> Dict[str, Any]:
        """Plain dict (shown by ``GET /v1/model`` under ``service``)."""
        return asdict(self)
