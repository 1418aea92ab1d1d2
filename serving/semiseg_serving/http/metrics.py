"""The service's Prometheus metrics, kept by prometheus_client in a registry of the app's own (text format 0.0.4).

=============================================  =========  ============================================
metric                                         type       labels / meaning
=============================================  =========  ============================================
semiseg_http_requests_total                    counter    endpoint, status
semiseg_http_errors_total                      counter    endpoint, code (the JSON error code)
semiseg_http_request_duration_seconds          histogram  endpoint; time from request to response
semiseg_batch_size                             histogram  images per network call
semiseg_inference_duration_seconds             histogram  seconds per network call
semiseg_in_flight_requests                     gauge      segment requests being served now (body received)
semiseg_receiving_requests                     gauge      segment requests whose body is still arriving
semiseg_model_reloads_total                    counter    result = success | failure
semiseg_model_info                             gauge      name, version, provider of the serving model (1)
semiseg_ready                                  gauge      1 once the model is loaded and warmed up
=============================================  =========  ============================================

``endpoint`` is one of the service's route paths or ``other``, so odd URLs cannot grow the label set.
"""
from __future__ import annotations

from typing import Dict, Mapping, Tuple

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)
CONTENT_TYPE = prometheus_client.exposition.CONTENT_TYPE_PLAIN_0_0_4  # the format generate_latest writes

prometheus_client.disable_created_metrics()  # no *_created samples: the names and series stay as documented above


class Metrics:
    """The service's metrics in one registry per app (several apps in one process keep their own counts)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("semiseg_http_requests", "HTTP requests answered, by endpoint and status.",
                                ["endpoint", "status"], registry=r)
        self.errors = Counter("semiseg_http_errors", "Refused or failed requests, by endpoint and error code.",
                              ["endpoint", "code"], registry=r)
        self.latency = Histogram("semiseg_http_request_duration_seconds", "Time from request to response.",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("semiseg_batch_size", "Images per network call (dynamic micro-batching).",
                                    buckets=BATCH_BUCKETS, registry=r)
        self.inference = Histogram("semiseg_inference_duration_seconds", "Seconds per network call.",
                                   buckets=LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("semiseg_in_flight_requests", "Segment requests being served now.", registry=r)
        self.receiving = Gauge("semiseg_receiving_requests", "Segment requests whose body is still arriving.",
                               registry=r)
        self.reloads = Counter("semiseg_model_reloads", "Hot reloads of the model, by result.", ["result"], registry=r)
        for result in ("success", "failure"):
            self.reloads.labels(result=result)
        self.model_info = Gauge("semiseg_model_info", "The model being served (value 1).",
                                ["name", "version", "provider"], registry=r)
        self.ready = Gauge("semiseg_ready", "1 once the model is loaded and warmed up.", registry=r)

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint=endpoint, status=str(int(status))).inc()
        self.latency.labels(endpoint=endpoint).observe(seconds)

    def observe_error(self, endpoint: str, code: str) -> None:
        self.errors.labels(endpoint=endpoint, code=code).inc()

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.inference.observe(seconds)

    def add_in_flight(self, delta: int) -> None:
        self.in_flight.inc(delta)

    def add_receiving(self, delta: int) -> None:
        self.receiving.inc(delta)

    def observe_reload(self, ok: bool) -> None:
        self.reloads.labels(result="success" if ok else "failure").inc()

    def render(self, model_info: Mapping[str, str], ready: bool) -> str:
        """The exposition text (``Content-Type: CONTENT_TYPE``), with the serving model's identity and readiness."""
        self.model_info.clear()
        if model_info:
            self.model_info.labels(**{k: str(model_info[k]) for k in ("name", "version", "provider")}).set(1)
        self.ready.set(int(bool(ready)))
        return generate_latest(self.registry).decode()


def parse_samples(text: str) -> Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]:
    """Read exposition text back into ``{(name, ((label, value), ...)): value}`` (tests, the load script); label
    values as written (histogram buckets: ``le="1.0"``)."""
    return {(sample.name, tuple(sample.labels.items())): float(sample.value)
            for family in text_string_to_metric_families(text) for sample in family.samples}
