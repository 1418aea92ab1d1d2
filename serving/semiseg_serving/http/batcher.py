"""Dynamic micro-batching: concurrent requests share network calls, run on one inference thread.

A request hands in its padded image (:func:`semiseg_serving.preprocess.prepare` output) and awaits the logits.
The collector takes the first waiting image, waits up to ``max_wait_ms`` after it arrived for more (stopping
early at ``max_batch``), then runs the batch off the event loop. Images of different padded sizes, or of
different models during a hot reload, go into separate network calls, so every answer equals
``Segmenter.predict`` on its own image. While a batch runs, new requests queue up and form the next batch at
once (their wait has already passed), so the batch size follows the load. ``max_batch=1`` turns batching off.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Deque, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from ..preprocess import to_nchw
from .api_error import ApiError
from .metrics import Metrics
from .model_holder import LoadedModel

log = logging.getLogger(__name__)


class BatchResult(NamedTuple):
    """What a request gets back: its logits (C, H', W'), seconds queued, seconds of its network call, batch size."""

    logits: np.ndarray
    queued_s: float
    inference_s: float
    batch_size: int


@dataclass
class _Job:
    model: LoadedModel
    pixels: np.ndarray
    future: "asyncio.Future[BatchResult]"
    enqueued: float


class MicroBatcher:
    """Groups concurrent :meth:`submit` calls into batched network calls; start/stop inside the event loop."""

    def __init__(self, max_batch: int, max_wait_ms: float, metrics: Metrics) -> None:
        self.max_batch = int(max_batch)
        self.max_wait_s = float(max_wait_ms) / 1000.0
        self.metrics = metrics
        self._pending: Deque[_Job] = deque()
        self._wake: Optional[asyncio.Event] = None
        self._task: Optional["asyncio.Task[None]"] = None
        self._executor: Optional[ThreadPoolExecutor] = None

    async def start(self) -> None:
        """Start the collector task and the inference thread (call from the running event loop)."""
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="semiseg-inference")
        self._task = asyncio.get_running_loop().create_task(self._collect(), name="semiseg-batcher")

    async def stop(self) -> None:
        """Stop collecting; requests still waiting get a 503."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        while self._pending:
            job = self._pending.popleft()
            if not job.future.done():
                job.future.set_exception(ApiError(503, "not_ready", "the service is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def submit(self, model: LoadedModel, pixels: np.ndarray) -> BatchResult:
        """Queue one padded (H', W', 3) uint8 RGB image for ``model``; returns when its batch has run."""
        if self._wake is None:
            raise ApiError(503, "not_ready", "the batcher is not running")
        loop = asyncio.get_running_loop()
        job = _Job(model, pixels, loop.create_future(), loop.time())
        self._pending.append(job)
        self._wake.set()
        return await job.future

    async def _wait_for_more(self) -> None:
        """Wait until ``max_batch`` images wait or ``max_wait_ms`` passed since the oldest one arrived."""
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        deadline = self._pending[0].enqueued + self.max_wait_s
        while len(self._pending) < self.max_batch:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except asyncio.TimeoutError:
                return

    async def _collect(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            if self.max_batch > 1 and self.max_wait_s > 0:
                await self._wait_for_more()
            count = min(self.max_batch, len(self._pending))
            jobs = [self._pending.popleft() for _ in range(count)]
            jobs = [j for j in jobs if not j.future.done()]  # requests that timed out or went away
            if not jobs:
                continue
            started = loop.time()
            try:
                results = await loop.run_in_executor(self._executor, self._run, jobs)
            except Exception as exc:  # a bug here must fail the batch, never stop the collector
                log.exception("batch of %d failed", len(jobs))
                results = [exc] * len(jobs)
            for job, result in zip(jobs, results):
                if job.future.done():
                    continue
                if isinstance(result, BaseException):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result._replace(queued_s=started - job.enqueued))

    def _run(self, jobs: List[_Job]) -> List[Any]:
        """Inference thread: one network call per (model, padded size) group; an error fails only its group."""
        groups: Dict[Tuple[int, Tuple[int, ...]], List[int]] = defaultdict(list)
        for i, job in enumerate(jobs):
            groups[(id(job.model), job.pixels.shape)].append(i)
        results: List[Any] = [None] * len(jobs)
        for indices in groups.values():
            model = jobs[indices[0]].model
            start = time.perf_counter()
            try:
                logits = model.segmenter.run(to_nchw([jobs[i].pixels for i in indices]))
            except Exception as exc:
                log.exception("network call on %s failed", model.name)
                for i in indices:
                    results[i] = exc
                continue
            seconds = time.perf_counter() - start
            self.metrics.observe_batch(len(indices), seconds)
            for k, i in enumerate(indices):
                results[i] = BatchResult(logits[k], 0.0, seconds, len(indices))
        return results
