"""Load test of the HTTP service on loopback: throughput, p50/p99 latency and failures, batching on vs off.

    python benchmarks/service_load.py                                   # tiny UNet, 8 clients x 500, batch 8 vs 1
    python benchmarks/service_load.py --model model.onnx --size 256x256 --threads 2
    python benchmarks/service_load.py --url http://127.0.0.1:8080        # a service already running (one row)

For each ``--batches`` value the script starts ``semiseg_serving.http.serve`` in a subprocess on a free loopback
port (``max_batch`` = that value, ``max_wait_ms``, ``--threads`` onnxruntime intra-op threads), waits for
``/readyz``, sends a few warm-up requests, then runs ``--clients`` threads, each sending ``--requests`` PNG
images over its own keep-alive connection. Every run stops by itself: after its requests or after
``--max-seconds``, whichever comes first. The mean batch size comes from the service's ``/metrics``.
Without ``--model`` a tiny UNet is exported first (needs the ``[export]`` extra); the service never imports torch.
"""
from __future__ import annotations

import argparse
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple
from urllib.parse import urlparse

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "export"), str(ROOT / "serving")]  # run from a source checkout too

from semiseg_serving.http.metrics import parse_samples  # noqa: E402

COLUMNS = ("max_batch", "clients", "done", "failed", "seconds", "req_per_s", "p50_ms", "p99_ms", "mean_batch")


def export_default_model(folder: Path, classes: int) -> Path:
    """A tiny UNet with ``classes`` outputs (random weights: the timing does not depend on them)."""
    import torch

    from semiseg_export import export_model
    from semiseg_sdk.models import build_model

    torch.manual_seed(0)
    model = build_model("unet", encoder="tiny", num_classes=classes).eval()
    path = folder / "unet_tiny.onnx"
    export_model(model, str(path), verbose=False)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(host: str, port: int, path: str, timeout: float = 5.0) -> Tuple[int, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def start_service(model: Path, port: int, max_batch: int, max_wait_ms: float,
                  threads: Optional[int]) -> subprocess.Popen:
    """``serve`` in a subprocess (its own interpreter: the load threads here do not share its GIL)."""
    code = textwrap.dedent(f"""
        from semiseg_serving.http import serve
        serve({str(model)!r}, port={port}, max_batch={max_batch}, max_wait_ms={max_wait_ms}, providers="cpu",
              threads={threads!r}, max_in_flight=1024, log_level="warning")
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "serving"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", code], env=env)


def wait_ready(host: str, port: int, proc: Optional[subprocess.Popen], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"the service exited with code {proc.returncode} before it was ready")
        try:
            if get(host, port, "/readyz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"the service on {host}:{port} was not ready within {timeout_s:.0f} s")


def batch_stats(host: str, port: int) -> Tuple[float, float]:
    """(sum, count) of the service's ``semiseg_batch_size`` histogram."""
    samples = parse_samples(get(host, port, "/metrics")[1].decode())
    return samples.get(("semiseg_batch_size_sum", ()), 0.0), samples.get(("semiseg_batch_size_count", ()), 0.0)


def run_load(host: str, port: int, bodies: List[bytes], clients: int, requests: int,
             max_seconds: float) -> Tuple[List[float], int, float]:
    """(latencies of the successful requests in s, failures, wall seconds); each client stops by itself."""
    latencies: List[List[float]] = [[] for _ in range(clients)]
    failures = [0] * clients
    deadline = time.monotonic() + max_seconds
    barrier = threading.Barrier(clients + 1)

    def client(k: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=60)
        barrier.wait()
        for i in range(requests):
            if time.monotonic() > deadline:
                break
            start = time.perf_counter()
            try:
                conn.request("POST", "/v1/segment?format=png", bodies[(k + i) % len(bodies)],
                             {"Content-Type": "image/png"})
                resp = conn.getresponse()
                resp.read()
                ok = resp.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=60)
            if ok:
                latencies[k].append(time.perf_counter() - start)
            else:
                failures[k] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join(max_seconds + 120)
    wall = time.perf_counter() - start
    return [x for per in latencies for x in per], sum(failures), wall


def measure(host: str, port: int, bodies: List[bytes], args: argparse.Namespace, max_batch: object) -> Dict:
    for body in bodies[:4] * 3:  # warm-up outside the timed region
        conn = http.client.HTTPConnection(host, port, timeout=60)
        conn.request("POST", "/v1/segment", body, {"Content-Type": "image/png"})
        conn.getresponse().read()
        conn.close()
    before = batch_stats(host, port)
    lat, failed, wall = run_load(host, port, bodies, args.clients, args.requests, args.max_seconds)
    after = batch_stats(host, port)
    calls = after[1] - before[1]
    ms = np.asarray(lat) * 1000.0 if lat else np.zeros(1)
    return {"max_batch": max_batch, "clients": args.clients, "done": len(lat), "failed": failed,
            "seconds": round(wall, 2), "req_per_s": round(len(lat) / wall, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 1), "p99_ms": round(float(np.percentile(ms, 99)), 1),
            "mean_batch": round((after[0] - before[0]) / calls, 2) if calls else None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="ONNX export to serve (default: export a tiny UNet into a temp folder)")
    p.add_argument("--url", help="load an already running service instead (http://127.0.0.1:PORT)")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=500, help="requests per client")
    p.add_argument("--size", default="128x128", help="image size HxW")
    p.add_argument("--batches", default="8,1", help="max_batch values to compare (1 = batching off)")
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads of the service")
    p.add_argument("--classes", type=int, default=19, help="classes of the default model")
    p.add_argument("--max-seconds", type=float, default=240.0, help="time limit of each run")
    args = p.parse_args()

    h, w = (int(v) for v in args.size.lower().split("x"))
    rng = np.random.default_rng(0)
    bodies = [cv2.imencode(".png", cv2.resize(rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8), (w, h)))[1]
              .tobytes() for _ in range(8)]
    rows = []
    if args.url:
        url = urlparse(args.url)
        wait_ready(url.hostname or "127.0.0.1", url.port or 80, None)
        rows.append(measure(url.hostname or "127.0.0.1", url.port or 80, bodies, args, "(running)"))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            model = Path(args.model) if args.model else export_default_model(Path(tmp), args.classes)
            for max_batch in (int(v) for v in args.batches.split(",")):
                port = free_port()
                proc = start_service(model, port, max_batch, args.max_wait_ms, args.threads)
                try:
                    wait_ready("127.0.0.1", port, proc)
                    rows.append(measure("127.0.0.1", port, bodies, args, max_batch))
                finally:
                    proc.terminate()
                    proc.wait(60)
                print(rows[-1], flush=True)
    print(f"\n{args.clients} clients x {args.requests} requests, {h}x{w} PNG in, palette PNG out, "
          f"max_wait_ms={args.max_wait_ms}, threads={args.threads}, {os.cpu_count()} CPUs")
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in COLUMNS) + " |")


if __name__ == "__main__":
    main()
