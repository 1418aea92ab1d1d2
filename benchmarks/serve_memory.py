"""Peak memory of ``semiseg serve`` for large requests: RSS of the service process after each request.

Starts the service in a subprocess on a small exported model, sends PNG images of growing size (smooth content, so
the bodies are small: the decompression-bomb shape of a hostile request), and prints the status, the process's
peak RSS (VmHWM) and current RSS (VmRSS) after each, then checks that a normal request still succeeds.

    python benchmarks/serve_memory.py --sizes 512 2000 6000 [--model model.onnx] [--serve_args "--memory_budget_mb 1024"]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np


def rss_mb(pid: int) -> dict:
    """VmHWM (peak) and VmRSS of a Linux process, in MiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def smooth_png(size: int) -> bytes:
    y, x = np.mgrid[0:size, 0:size]
    img = np.stack([(x * 255 // max(1, size - 1)), (y * 255 // max(1, size - 1)), np.full_like(x, 128)], -1)
    return cv2.imencode(".png", img.astype(np.uint8))[1].tobytes()


def tiny_model(folder: Path) -> Path:
    import torch

    from semiseg_export import export_model
    from semiseg_sdk.models import build_model

    torch.manual_seed(0)
    model = build_model("unet", encoder="tiny", num_classes=10).eval()
    path = folder / "tiny.onnx"
    export_model(model, str(path), check_sizes=[(64, 64)], verbose=False)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port: int, body: bytes, timeout: float = 600.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/v1/segment?format=json", body, {"Content-Type": "image/png"})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, data
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 2000, 6000])
    parser.add_argument("--model", default=None, help="an exported .onnx (default: a tiny 10-class UNet)")
    parser.add_argument("--serve_args", default="", help="extra `semiseg serve` flags")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else tiny_model(Path(tmp))
        port = free_port()
        cmd = [sys.executable, "-m", "semiseg_sdk.cli", "serve", str(model), "--port", str(port), "--threads", "1",
               "--max_pixels", str(40_000_000), *shlex.split(args.serve_args)]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                    conn.request("GET", "/readyz")
                    if conn.getresponse().status == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"service did not start: {proc.stderr.read().decode()[-2000:] if proc.poll() is not None else 'timeout'}")
                time.sleep(0.2)
            print(f"idle: {rss_mb(proc.pid)}")
            rows = []
            for size in [*args.sizes, 256]:
                body = smooth_png(size)
                t0 = time.perf_counter()
                status, data = post(port, body)
                row = {"size": f"{size}x{size}", "body_kb": round(len(body) / 1024, 1), "status": status,
                       "seconds": round(time.perf_counter() - t0, 2), **rss_mb(proc.pid)}
                if status != 200:
                    row["error"] = json.loads(data).get("error", {}).get("message", "")[:120]
                rows.append(row)
                print(row, flush=True)
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
