"""What the handlers share: settings, the model holder, the batcher, the metrics, the receiving and in-flight counts."""
from __future__ import annotations

import asyncio
from typing import Any, Optional, Set

from anyio import CapacityLimiter

from ..memory import MemoryBudget
from .api_error import ApiError
from .batcher import MicroBatcher
from .config import ServiceConfig
from .metrics import Metrics
from .model_holder import LoadedModel, ModelHolder


class ServiceState:
    """One per app (``app.state.service``); the counts are only touched on the event loop."""

    def __init__(self, holder: ModelHolder, config: ServiceConfig) -> None:
        self.holder = holder
        self.config = config
        self.metrics = Metrics()
        self.batcher = MicroBatcher(config.max_batch, config.max_wait_ms, self.metrics)
        self.limiter: Optional[CapacityLimiter] = None  # decode/encode worker threads, made at start-up
        self.in_flight = 0
        self.receiving = 0
        self.memory = MemoryBudget(config.memory_budget_mb * 2**20)  # bytes reserved by requests being served
        self.background: Set["asyncio.Task[Any]"] = set()  # tasks started by signal handlers
        self.served_version: Optional[str] = None  # the store version being served (serving a store)

    def require_model(self) -> LoadedModel:
        """The model to use now; 503 ``not_ready`` (with the load error, if any) before one is loaded."""
        model = self.holder.current
        if model is None:
            reason = f": {self.holder.error}" if self.holder.error else " (loading and warming up)"
            raise ApiError(503, "not_ready", f"the model {self.holder.path} is not ready{reason}",
                           headers={"Retry-After": str(self.config.retry_after_s)})
        return model

    def start_receiving(self) -> None:
        """Count a request whose body is arriving; 503 when ``max_receiving`` are already."""
        if self.receiving >= self.config.max_receiving:
            raise ApiError(503, "overloaded", f"{self.receiving} request bodies arriving (limit "
                           f"{self.config.max_receiving}); retry later",
                           headers={"Retry-After": str(self.config.retry_after_s)})
        self.receiving += 1
        self.metrics.add_receiving(1)

    def stop_receiving(self) -> None:
        self.receiving -= 1
        self.metrics.add_receiving(-1)

    def enter(self) -> None:
        """Count a request being served (its body has arrived); 503 when ``max_in_flight`` are already."""
        if self.in_flight >= self.config.max_in_flight:
            raise ApiError(503, "overloaded", f"{self.in_flight} requests in flight (limit "
                           f"{self.config.max_in_flight}); retry later",
                           headers={"Retry-After": str(self.config.retry_after_s)})
        self.in_flight += 1
        self.metrics.add_in_flight(1)

    def leave(self) -> None:
        self.in_flight -= 1
        self.metrics.add_in_flight(-1)
