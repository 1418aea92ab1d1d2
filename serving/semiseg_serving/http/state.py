"""What the handlers share: settings, the model holder, the batcher, the metrics and the in-flight count."""
from __future__ import annotations

import asyncio
from typing import Any, Optional, Set

from anyio import CapacityLimiter

from .api_error import ApiError
from .batcher import MicroBatcher
from .config import ServiceConfig
from .metrics import Metrics
from .model_holder import LoadedModel, ModelHolder


class ServiceState:
    """One per app (``app.state.service``); the in-flight count is only touched on the event loop."""

    def __init__(self, holder: ModelHolder, config: ServiceConfig) -> None:
        self.holder = holder
        self.config = config
        self.metrics = Metrics()
        self.batcher = MicroBatcher(config.max_batch, config.max_wait_ms, self.metrics)
        self.limiter: Optional[CapacityLimiter] = None  # decode/encode worker threads, made at start-up
        self.in_flight = 0
        self.background: Set["asyncio.Task[Any]"] = set()  # tasks started by signal handlers

    def require_model(self) -> LoadedModel:
        """The model to use now; 503 ``not_ready`` (with the load error, if any) before one is loaded."""
        model = self.holder.current
        if model is None:
            reason = f": {self.holder.error}" if self.holder.error else " (loading and warming up)"
            raise ApiError(503, "not_ready", f"the model {self.holder.path} is not ready{reason}",
                           headers={"Retry-After": str(self.config.retry_after_s)})
        return model

    def enter(self) -> None:
        self.in_flight += 1
        self.metrics.add_in_flight(1)

    def leave(self) -> None:
        self.in_flight -= 1
        self.metrics.add_in_flight(-1)
