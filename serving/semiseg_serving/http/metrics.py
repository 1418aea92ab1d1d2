"""The service's Prometheus metrics, kept in memory and written in the text exposition format (version 0.0.4).

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

import threading
from collections import Counter
from typing import Dict, List, Mapping, Sequence, Tuple

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)


def _labels(pairs: Mapping[str, object]) -> str:
    if not pairs:
        return ""
    esc = {k: str(v).replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n") for k, v in pairs.items()}
    return "{" + ",".join(f'{k}="{v}"' for k, v in esc.items()) + "}"


def _number(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(float(value)) if isinstance(value, float) else str(value)


class Histogram:
    """Cumulative-bucket histogram of one label set."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * len(self.buckets)
        self.total, self.count = 0.0, 0

    def observe(self, value: float) -> None:
        for i, edge in enumerate(self.buckets):
            if value <= edge:
                self.counts[i] += 1
                break
        self.total += value
        self.count += 1

    def lines(self, name: str, labels: Mapping[str, object]) -> List[str]:
        out, running = [], 0
        for edge, n in zip(self.buckets, self.counts):
            running += n
            out.append(f"{name}_bucket{_labels({**labels, 'le': _number(edge)})} {running}")
        out.append(f"{name}_bucket{_labels({**labels, 'le': '+Inf'})} {self.count}")
        out.append(f"{name}_sum{_labels(labels)} {_number(self.total)}")
        out.append(f"{name}_count{_labels(labels)} {self.count}")
        return out


class Metrics:
    """Thread-safe store of the service's metrics (updated from the event loop and the inference thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter = Counter()
        self.errors: Counter = Counter()
        self.latency: Dict[str, Histogram] = {}
        self.batch_size = Histogram(BATCH_BUCKETS)
        self.inference = Histogram(LATENCY_BUCKETS)
        self.in_flight = 0
        self.receiving = 0
        self.reloads: Counter = Counter({"success": 0, "failure": 0})

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(endpoint, int(status))] += 1
            self.latency.setdefault(endpoint, Histogram(LATENCY_BUCKETS)).observe(seconds)

    def observe_error(self, endpoint: str, code: str) -> None:
        with self._lock:
            self.errors[(endpoint, code)] += 1

    def observe_batch(self, size: int, seconds: float) -> None:
        with self._lock:
            self.batch_size.observe(size)
            self.inference.observe(seconds)

    def add_in_flight(self, delta: int) -> None:
        with self._lock:
            self.in_flight += delta

    def add_receiving(self, delta: int) -> None:
        with self._lock:
            self.receiving += delta

    def observe_reload(self, ok: bool) -> None:
        with self._lock:
            self.reloads["success" if ok else "failure"] += 1

    def render(self, model_info: Mapping[str, str], ready: bool) -> str:
        """The exposition text (``Content-Type: text/plain; version=0.0.4``)."""
        with self._lock:
            out: List[str] = []

            def family(name: str, kind: str, help_text: str) -> None:
                out.extend([f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"])

            family("semiseg_http_requests_total", "counter", "HTTP requests answered, by endpoint and status.")
            for (endpoint, status), n in sorted(self.requests.items()):
                out.append(f"semiseg_http_requests_total{_labels({'endpoint': endpoint, 'status': status})} {n}")
            family("semiseg_http_errors_total", "counter", "Refused or failed requests, by endpoint and error code.")
            for (endpoint, code), n in sorted(self.errors.items()):
                out.append(f"semiseg_http_errors_total{_labels({'endpoint': endpoint, 'code': code})} {n}")
            family("semiseg_http_request_duration_seconds", "histogram", "Time from request to response.")
            for endpoint, hist in sorted(self.latency.items()):
                out.extend(hist.lines("semiseg_http_request_duration_seconds", {"endpoint": endpoint}))
            family("semiseg_batch_size", "histogram", "Images per network call (dynamic micro-batching).")
            out.extend(self.batch_size.lines("semiseg_batch_size", {}))
            family("semiseg_inference_duration_seconds", "histogram", "Seconds per network call.")
            out.extend(self.inference.lines("semiseg_inference_duration_seconds", {}))
            family("semiseg_in_flight_requests", "gauge", "Segment requests being served now.")
            out.append(f"semiseg_in_flight_requests {self.in_flight}")
            family("semiseg_receiving_requests", "gauge", "Segment requests whose body is still arriving.")
            out.append(f"semiseg_receiving_requests {self.receiving}")
            family("semiseg_model_reloads_total", "counter", "Hot reloads of the model, by result.")
            for result, n in sorted(self.reloads.items()):
                out.append(f"semiseg_model_reloads_total{_labels({'result': result})} {n}")
            family("semiseg_model_info", "gauge", "The model being served (value 1).")
            if model_info:
                out.append(f"semiseg_model_info{_labels(model_info)} 1")
            family("semiseg_ready", "gauge", "1 once the model is loaded and warmed up.")
            out.append(f"semiseg_ready {int(bool(ready))}")
            return "\n".join(out) + "\n"


def parse_samples(text: str) -> Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]:
    """Read exposition text back into ``{(name, ((label, value), ...)): value}`` (for tests and the load script).

    Handles the label values this module writes (no commas or escaped quotes inside a value).
    """
    samples: Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, _, rest = head.partition("{")
        pairs = tuple(tuple(p.split("=", 1)) for p in rest.rstrip("}").split(",") if p) if rest else ()
        labels = tuple((k, v.strip('"')) for k, v in pairs)  # type: ignore[misc]
        samples[(name, labels)] = float(value)
    return samples
