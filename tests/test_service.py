"""HTTP service: real HTTP on a loopback port; masks equal Segmenter.predict, refusals, batching, limits, reload."""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from semiseg_export import export_model
from semiseg_sdk.models import build_model
from semiseg_serving import Segmenter, ServingError, read_palette_png
from semiseg_serving.http import ServiceConfig, create_app, decode_rle, encode_rle, start_in_thread
from semiseg_serving.http.app import is_loopback
from semiseg_serving.http.metrics import parse_samples
from semiseg_serving.http.negotiation import choose_format

ROOT = Path(__file__).resolve().parents[1]
CLASSES_A, CLASSES_B = ["bg", "road", "car", "sky"], ["water", "land", "cloud"]
PALETTE_B = [[0, 0, 255], [0, 255, 0], [255, 255, 255]]


def export_tiny(path: Path, classes, seed: int, palette=None) -> Path:
    torch.manual_seed(seed)
    model = build_model("unet", encoder="tiny", num_classes=len(classes)).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(30.0)  # realistic logit magnitudes: several classes, no near-ties
    export_model(model, str(path), check_sizes=[(64, 96)], classes=classes, palette=palette, verbose=False)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("service_models")
    return export_tiny(folder / "a.onnx", CLASSES_A, 0), export_tiny(folder / "b.onnx", CLASSES_B, 1, PALETTE_B)


@pytest.fixture(scope="module")
def seg_a(models) -> Segmenter:
    return Segmenter(str(models[0]), providers="cpu", intra_op_threads=1)


def start(model: Path, wait_ready: bool = True, **settings):
    config = ServiceConfig(providers="cpu", intra_op_threads=1, **settings)
    svc = start_in_thread(create_app(str(model), config))
    deadline = time.monotonic() + 30
    while wait_ready and call(svc.port, "GET", "/readyz")[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    return svc


@pytest.fixture(scope="module")
def svc(models):
    with start(models[0], max_batch=8, max_wait_ms=20.0, max_body_bytes=256 * 1024, max_pixels=128 * 128,
               max_in_flight=32) as running:
        yield running


def call(port: int, method: str, path: str, body: bytes = None, headers: dict = None, timeout: float = 30.0):
    """(status, headers with lower-case names, body bytes) of one request."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body, headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def segment(port: int, data: bytes, fmt: str = "json", ctype: str = "image/png"):
    status, headers, body = call(port, "POST", f"/v1/segment?format={fmt}", data, {"Content-Type": ctype})
    assert status == 200, body
    return json.loads(body) if fmt == "json" else (headers, body)


def smooth_bgr(h: int, w: int, seed: int) -> np.ndarray:
    small = np.random.default_rng(seed).integers(0, 256, (max(h // 8, 2), max(w // 8, 2), 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def metric(port: int, name: str, **labels) -> float:
    samples = parse_samples(call(port, "GET", "/metrics")[2].decode())
    return samples.get((name, tuple(labels.items())), 0.0)


def test_health_ready_and_model_endpoints(svc, models) -> None:
    assert call(svc.port, "GET", "/healthz")[:3:2] == (200, b'{"status":"ok"}')
    version = "sha256:" + hashlib.sha256(models[0].read_bytes()).hexdigest()[:12]
    status, _, body = call(svc.port, "GET", "/readyz")
    assert status == 200 and json.loads(body)["model"] == {"name": "a", "version": version}
    info = json.loads(call(svc.port, "GET", "/v1/model")[2])
    assert info["version"] == version and info["metadata"]["classes"] == CLASSES_A and info["num_classes"] == 4
    assert info["metadata"]["size_divisor"] == 32 and len(info["metadata"]["palette"]) == 4
    assert info["provider"] == "CPUExecutionProvider" and info["service"]["max_batch"] == 8


def test_png_answer_equals_predict(svc, seg_a, tmp_path) -> None:
    image = smooth_bgr(50, 77, seed=1)
    expected = seg_a.predict(image, channel_order="bgr")
    assert len(np.unique(expected)) > 1
    headers, body = segment(svc.port, png(image), fmt="png")
    (tmp_path / "mask.png").write_bytes(body)
    mask, palette = read_palette_png(tmp_path / "mask.png")
    assert mask.shape == (50, 77) and (mask == expected).all()
    assert [list(c) for c in palette[:4]] == [list(c) for c in seg_a.palette]
    assert headers["content-type"] == "image/png" and headers["x-model-name"] == "a"
    assert 0.25 <= float(headers["x-mean-confidence"]) <= 1.0


def test_json_answer_decodes_to_predict_for_jpeg(svc, seg_a) -> None:
    data = cv2.imencode(".jpg", smooth_bgr(64, 96, seed=2))[1].tobytes()
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # what the service sees
    expected, conf = seg_a.predict(image, channel_order="bgr", return_confidence=True)
    status, headers, body = call(svc.port, "POST", "/v1/segment", data,
                                 {"Content-Type": "image/jpeg", "Accept": "application/json"})
    assert status == 200 and headers["content-type"] == "application/json"
    answer = json.loads(body)
    mask = decode_rle(answer["mask"])
    assert (mask == expected).all() and answer["size"] == [64, 96] and answer["classes"] == CLASSES_A
    counts = np.bincount(expected.ravel(), minlength=4)
    assert answer["pixel_counts"] == {name: int(n) for name, n in zip(CLASSES_A, counts)}
    assert abs(answer["mean_confidence"] - float(conf.mean())) < 1e-4
    assert answer["model"]["name"] == "a" and answer["latency_ms"]["total"] >= answer["latency_ms"]["inference"] > 0


def test_multipart_upload(svc, seg_a) -> None:
    image = smooth_bgr(48, 64, seed=3)
    data = png(image)
    assert b"\r\n" in data  # the PNG signature itself holds CR LF: the parser must keep it byte for byte
    boundary = "xYzBoundary42"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    answer = segment(svc.port, body, ctype=f"multipart/form-data; boundary={boundary}")
    assert (decode_rle(answer["mask"]) == seg_a.predict(image, channel_order="bgr")).all()
    no_image = f"--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n--{boundary}--\r\n"
    for bad in (no_image.encode(), body[:-20], body[: len(body) // 2], b"not a multipart body"):  # missing, cut short
        status, _, err = call(svc.port, "POST", "/v1/segment", bad,
                              {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert status == 400 and json.loads(err)["error"]["code"] == "bad_multipart", err
    assert segment(svc.port, body, ctype=f"multipart/form-data; boundary={boundary}")["size"] == [48, 64]


def test_rle_format_by_hand() -> None:
    mask = np.array([[0, 0, 2], [2, 2, 1]], np.uint8)
    rle = encode_rle(mask)
    assert rle == {"encoding": "rle-row-major", "size": [2, 3], "values": [0, 2, 1], "counts": [2, 3, 1]}
    assert (decode_rle(rle) == mask).all()
    with pytest.raises(ServingError, match="rle.counts"):
        decode_rle({**rle, "counts": [2, 3, 2]})


def test_format_negotiation() -> None:
    assert choose_format(None, None) == "png" and choose_format(None, "*/*") == "png"
    assert choose_format(None, "application/json;q=0.5, image/png;q=0.9") == "png"
    assert choose_format(None, "image/*;q=0.1, application/json") == "json"
    assert choose_format("JSON", "image/png") == "json"


def fake_png_header(width: int, height: int) -> bytes:
    """A PNG signature + IHDR claiming a size (a decompression bomb needs no more to be refused)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))


GOOD = png(smooth_bgr(32, 32, seed=4))
BAD_REQUESTS = [  # (case, method, path, body, headers, status, code)
    ("malformed bytes", "POST", "/v1/segment", b"\x00\x01junk", {"Content-Type": "image/png"}, 400, "bad_image"),
    ("truncated png", "POST", "/v1/segment", GOOD[: len(GOOD) // 2], {"Content-Type": "image/png"}, 400, "bad_image"),
    ("truncated header", "POST", "/v1/segment", GOOD[:20], {"Content-Type": "image/png"}, 400, "bad_image"),
    ("wrong content type", "POST", "/v1/segment", GOOD, {"Content-Type": "text/plain"}, 415, "unsupported_media"),
    ("no content type", "POST", "/v1/segment", GOOD, {}, 415, "unsupported_media"),
    ("empty body", "POST", "/v1/segment", b"", {"Content-Type": "image/png"}, 400, "empty_body"),
    ("oversized body", "POST", "/v1/segment", GOOD + bytes(300 * 1024), {"Content-Type": "image/png"}, 413,
     "body_too_large"),
    ("over pixel limit", "POST", "/v1/segment", png(np.zeros((200, 100, 3), np.uint8)),
     {"Content-Type": "image/png"}, 413, "too_many_pixels"),
    ("bomb header", "POST", "/v1/segment", fake_png_header(100000, 100000), {"Content-Type": "image/png"}, 413,
     "too_many_pixels"),
    ("bad format", "POST", "/v1/segment?format=xml", GOOD, {"Content-Type": "image/png"}, 400, "bad_format"),
    ("not acceptable", "POST", "/v1/segment", GOOD, {"Content-Type": "image/png", "Accept": "text/html"}, 406,
     "not_acceptable"),
    ("wrong method", "GET", "/v1/segment", None, {}, 405, "method_not_allowed"),
    ("unknown path", "GET", "/v2/nothing", None, {}, 404, "not_found"),
    # traversal-looking paths reach no route (no route reads files): refused like any unknown path
    ("dot-dot", "GET", "/v1/../../etc/passwd", None, {}, 404, "not_found"),
    ("encoded dot-dot", "GET", "/v1/%2e%2e/%2E%2E/etc/passwd", None, {}, 404, "not_found"),
    ("in a path segment", "POST", "/v1/segment/..%2f..%2fetc%2fpasswd", GOOD, {"Content-Type": "image/png"}, 404,
     "not_found"),
    ("backslash", "GET", "/v1/model%5c..%5csecret", None, {}, 404, "not_found"),
]


@pytest.mark.parametrize("case,method,path,body,headers,status,code", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_request_is_refused_and_service_keeps_serving(svc, case, method, path, body, headers, status,
                                                          code) -> None:
    got, resp_headers, raw = call(svc.port, method, path, body, headers)
    error = json.loads(raw)["error"]
    assert (got, error["code"]) == (status, code), raw
    assert error["message"] and resp_headers["content-type"] == "application/json"
    assert segment(svc.port, GOOD)["size"] == [32, 32]


def test_the_openapi_document_describes_every_route_and_real_answers_match_it(svc) -> None:
    """/openapi.json lists every route with its answers and errors; real answers validate against its schemas."""
    from semiseg_serving.http import schemas

    status, _, raw = call(svc.port, "GET", "/openapi.json")
    doc = json.loads(raw)
    assert status == 200 and doc["openapi"].startswith("3.")
    assert {p: sorted(ops) for p, ops in doc["paths"].items()} == {
        "/v1/segment": ["post"], "/v1/model": ["get"], "/healthz": ["get"], "/readyz": ["get"], "/metrics": ["get"],
        "/admin/reload": ["post"]}
    post = doc["paths"]["/v1/segment"]["post"]
    assert {"image/png", "image/jpeg", "multipart/form-data"} <= set(post["requestBody"]["content"])
    assert set(post["responses"]["200"]["content"]) == {"image/png", "application/json"}
    assert {"400", "406", "408", "413", "415", "503", "504"} <= set(post["responses"])
    assert [q["name"] for q in post["parameters"]] == ["format", "mask_encoding"]
    assert "422" not in post["responses"]  # the handlers answer bad input with 400 and the service's own codes
    schemas.SegmentJSON.model_validate(segment(svc.port, GOOD))
    _, _, coco = call(svc.port, "POST", "/v1/segment?format=json&mask_encoding=coco", GOOD, {"Content-Type": "image/png"})
    assert schemas.SegmentJSON.model_validate_json(coco).mask.encoding == "coco-rle"
    for path, model in (("/v1/model", schemas.ModelInfo), ("/readyz", schemas.Ready), ("/healthz", schemas.Health)):
        model.model_validate_json(call(svc.port, "GET", path)[2])
    schemas.ErrorBody.model_validate_json(call(svc.port, "POST", "/v1/segment?format=xml", GOOD, {"Content-Type": "image/png"})[2])
    status, headers, page = call(svc.port, "GET", "/docs")
    assert status == 200 and headers["content-type"].startswith("text/html") and b"/openapi.json" in page


def test_concurrent_requests_are_batched_and_all_correct(svc, seg_a) -> None:
    images = [smooth_bgr(70, 40, 10 + i) if i % 2 else smooth_bgr(50, 77, 10 + i) for i in range(16)]  # 2 padded sizes
    def multi_image_calls() -> float:
        return metric(svc.port, "semiseg_batch_size_count") - metric(svc.port, "semiseg_batch_size_bucket", le="1.0")

    batched_before = multi_image_calls()
    answers, barrier = [None] * 16, threading.Barrier(16, timeout=30)

    def client(i: int) -> None:
        barrier.wait()
        answers[i] = segment(svc.port, png(images[i]))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for image, answer in zip(images, answers):
        assert answer is not None and (decode_rle(answer["mask"]) == seg_a.predict(image, channel_order="bgr")).all()
    assert max(a["batch_size"] for a in answers) > 1
    assert multi_image_calls() > batched_before  # network calls with more than one image, seen in /metrics
    assert metric(svc.port, "semiseg_in_flight_requests") == 0
    assert metric(svc.port, "semiseg_http_requests_total", endpoint="/v1/segment", status="200") >= 16


def _stalled_upload(port: int, sent: bytes = GOOD[:100]) -> socket.socket:
    """A client that sends the headers and part of a body, then stalls."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"POST /v1/segment HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                 b"Content-Length: 100000\r\n\r\n" + sent)
    return sock


def _wait_metric(port: int, name: str, value: float, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while metric(port, name) != value and time.monotonic() < deadline:
        time.sleep(0.01)
    assert metric(port, name) == value, name


def test_slow_uploads_hold_receiving_slots_only_and_time_out(models) -> None:
    """Stalled uploads count as receiving, never in flight: a good client is served while they stall; over
    max_receiving a new request gets 503; each stalled upload gets 408 after body_timeout_s."""
    with start(models[0], max_batch=1, max_in_flight=1, max_receiving=4, body_timeout_s=1.5, request_timeout_s=10.0) as tight:
        slow = [_stalled_upload(tight.port) for _ in range(3)]
        _wait_metric(tight.port, "semiseg_receiving_requests", 3)
        assert metric(tight.port, "semiseg_in_flight_requests") == 0
        assert segment(tight.port, GOOD)["batch_size"] == 1  # the one serving slot is free
        slow.append(_stalled_upload(tight.port))
        _wait_metric(tight.port, "semiseg_receiving_requests", 4)
        status, headers, body = call(tight.port, "POST", "/v1/segment", GOOD, {"Content-Type": "image/png"})
        assert status == 503 and json.loads(body)["error"]["code"] == "overloaded" and headers["retry-after"] == "1"
        assert b"bodies arriving" in body
        for sock in slow:
            reply = sock.recv(4096)
            sock.close()
            assert reply.startswith(b"HTTP/1.1 408") and b"body_timeout" in reply
        _wait_metric(tight.port, "semiseg_receiving_requests", 0)
        assert segment(tight.port, GOOD)["batch_size"] == 1


def test_in_flight_cap_counts_requests_being_served(models) -> None:
    """max_in_flight 1: a request waiting in the batcher holds the slot; a second one meanwhile gets 503."""
    with start(models[0], max_batch=2, max_wait_ms=1500.0, max_in_flight=1) as tight:
        first = {}
        thread = threading.Thread(target=lambda: first.update(segment(tight.port, GOOD)))
        thread.start()
        _wait_metric(tight.port, "semiseg_in_flight_requests", 1)
        status, headers, body = call(tight.port, "POST", "/v1/segment", GOOD, {"Content-Type": "image/png"})
        assert status == 503 and b"in flight" in body and headers["retry-after"] == "1"
        thread.join(30)
        assert first["batch_size"] == 1


def test_a_drip_feed_attack_does_not_starve_real_clients(models) -> None:
    """70 connections each sending one body byte every 0.5 s (the attack that locked every client out while
    slow bodies counted as in flight): a real client meanwhile gets 200 every time."""
    with start(models[0], max_batch=1, max_in_flight=4, body_timeout_s=3.0) as svc_attacked:
        attackers = [_stalled_upload(svc_attacked.port, sent=b"") for _ in range(70)]
        stop = threading.Event()

        def drip() -> None:
            while not stop.is_set():
                for sock in attackers:
                    try:
                        sock.send(b"x")
                    except OSError:
                        pass
                stop.wait(0.5)

        dripper = threading.Thread(target=drip)
        dripper.start()
        try:
            _wait_metric(svc_attacked.port, "semiseg_receiving_requests", 70)
            answers = [segment(svc_attacked.port, GOOD) for _ in range(5)]
        finally:
            stop.set()
            dripper.join(10)
            for sock in attackers:
                sock.close()
        assert [a["batch_size"] for a in answers] == [1] * 5


def test_not_ready_until_a_model_loads_then_reload_fixes_it(models, tmp_path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"not an onnx file")
    with start(path, wait_ready=False) as svc_broken:
        assert call(svc_broken.port, "GET", "/healthz")[0] == 200
        deadline = time.monotonic() + 20
        while True:  # 503 while loading, then 503 with the load error
            status, headers, body = call(svc_broken.port, "GET", "/readyz")
            error = json.loads(body)["error"]
            assert status == 503 and error["code"] == "not_ready" and "model.onnx" in error["message"]
            if "ModelFileError" in error["message"] or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert "not a loadable ONNX model" in error["message"] and headers["retry-after"] == "1"
        status, _, body = call(svc_broken.port, "POST", "/v1/segment", GOOD, {"Content-Type": "image/png"})
        assert status == 503 and json.loads(body)["error"]["code"] == "not_ready"
        shutil.copy(models[0], path)
        assert call(svc_broken.port, "POST", "/admin/reload")[0] == 200
        assert call(svc_broken.port, "GET", "/readyz")[0] == 200 and segment(svc_broken.port, GOOD)["size"] == [32, 32]


def test_hot_reload_under_load_and_broken_model_keeps_old(models, tmp_path) -> None:
    path = tmp_path / "live.onnx"
    shutil.copy(models[0], path)
    segs = {"bg": Segmenter(str(models[0]), providers="cpu"), "water": Segmenter(str(models[1]), providers="cpu")}
    image = smooth_bgr(64, 64, seed=20)
    with start(path, max_batch=4, max_wait_ms=5.0) as live:
        answers, stop, lock = [], threading.Event(), threading.Lock()

        def client() -> None:
            for _ in range(40):  # bounded; stops earlier once the main thread has seen enough
                if stop.is_set():
                    return
                answer = segment(live.port, png(image))
                with lock:
                    answers.append(answer)

        threads = [threading.Thread(target=client) for _ in range(6)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(answers) < 6 and time.monotonic() < deadline:
            time.sleep(0.01)
        staged = tmp_path / ".live.onnx.new"
        shutil.copy(models[1], staged)
        os.replace(staged, path)  # deploy = atomic rename over the file, then reload
        status, _, body = call(live.port, "POST", "/admin/reload")
        version_b = "sha256:" + hashlib.sha256(models[1].read_bytes()).hexdigest()[:12]
        assert status == 200 and json.loads(body)["model"] == {"name": "live", "version": version_b}
        seen = len(answers)
        while len(answers) < seen + 12 and time.monotonic() < deadline:
            time.sleep(0.01)
        stop.set()
        for t in threads:
            t.join(60)
        assert {a["classes"][0] for a in answers} == {"bg", "water"}  # both models answered, no request failed
        for answer in answers:
            expected = segs[answer["classes"][0]].predict(image, channel_order="bgr")
            assert (decode_rle(answer["mask"]) == expected).all()
        assert json.loads(call(live.port, "GET", "/v1/model")[2])["metadata"]["classes"] == CLASSES_B

        path.write_bytes(b"\x08\x01 truncated protobuf")  # a broken model file: reload fails, B keeps serving
        status, _, body = call(live.port, "POST", "/admin/reload")
        answer = json.loads(body)
        assert status == 500 and answer["error"]["code"] == "reload_failed"
        assert "live.onnx" in answer["error"]["message"] and answer["model"]["version"] == version_b
        assert segment(live.port, png(image))["classes"] == CLASSES_B
        assert call(live.port, "GET", "/readyz")[0] == 200
        assert metric(live.port, "semiseg_model_reloads_total", result="success") == 1
        assert metric(live.port, "semiseg_model_reloads_total", result="failure") == 1


def test_reload_refused_for_non_loopback_clients(svc) -> None:
    # uvicorn trusts X-Forwarded-For from 127.0.0.1 (a local reverse proxy): the client is then 203.0.113.7.
    status, _, body = call(svc.port, "POST", "/admin/reload", b"", {"X-Forwarded-For": "203.0.113.7"})
    assert status == 403 and json.loads(body)["error"]["code"] == "forbidden"
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("::ffff:127.0.0.1")
    assert not is_loopback("10.0.0.1") and not is_loopback(None) and not is_loopback("testclient")


def test_serve_without_torch_and_reload_on_sighup(models, tmp_path) -> None:
    path = tmp_path / "hup.onnx"
    shutil.copy(models[0], path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = textwrap.dedent(f"""
        import sys
        for blocked in ("torch", "semiseg_sdk"):
            sys.modules[blocked] = None  # any import of these now raises ImportError
        from semiseg_serving.http import serve
        serve({str(path)!r}, port={port}, max_batch=2, providers="cpu", threads=1, log_level="warning")
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "serving"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60

        def version() -> str:
            try:
                status, _, body = call(port, "GET", "/v1/model", timeout=2)
            except OSError:
                return ""
            return json.loads(body)["metadata"]["classes"][0] if status == 200 else ""

        while version() != "bg" and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert version() == "bg", proc.stdout.read().decode() if proc.poll() is not None else "not ready in time"
        shutil.copy(models[1], path)
        proc.send_signal(signal.SIGHUP)
        while version() != "water" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert version() == "water" and segment(port, GOOD)["classes"] == CLASSES_B
    finally:
        proc.terminate()
        proc.wait(30)


def test_large_images_run_tile_by_tile_and_memory_is_admitted_by_budget(models, seg_a) -> None:
    """Above tile_above_pixels an image is predicted tile by tile (the runtime's sliding window: same mask as
    Segmenter.predict_tiled); an image that alone needs more than the memory budget gets 413 naming it."""
    with start(models[0], tile_above_pixels=64 * 64, tile=64, max_pixels=10**7) as tiled:
        described = json.loads(call(tiled.port, "GET", "/v1/model")[2])
        assert described["bytes_per_pixel"] > 0
        image = smooth_bgr(96, 160, seed=7)
        answer = segment(tiled.port, png(image))
        expected = seg_a.predict_tiled(image, tile=64, overlap=16, channel_order="bgr")
        assert (decode_rle(answer["mask"]) == expected).all() and answer["batch_size"] == 1
    with start(models[0], memory_budget_mb=1, max_pixels=10**7) as small:
        status, _, body = call(small.port, "POST", "/v1/segment", png(smooth_bgr(512, 512, seed=8)),
                               {"Content-Type": "image/png"})
        error = json.loads(body)["error"]
        assert status == 413 and error["code"] == "memory_limit" and "memory budget of 1 MB" in error["message"]
        assert segment(small.port, GOOD)["batch_size"] == 1  # a small image still fits


def test_the_service_predicts_by_the_window_its_model_was_scored_on(tmp_path, models, seg_a) -> None:
    """An export that records its run's 32-px evaluation window is served as ``semiseg infer`` predicts: an image
    larger than the window by sliding 32-px windows (the masks of ``predict_tiled(tile=32, overlap=8)``, not the
    whole-image ones), an image within it whole and batched; ``--tile 0`` serves whole images, ``window`` another
    size; ``GET /v1/model`` names the window; a bad ``--tile`` is refused in one line."""
    torch.manual_seed(0)
    model = build_model("unet", encoder="tiny", num_classes=len(CLASSES_A)).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(30.0)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"crop_size": [32, 32], "eval_window": [32, 32], "eval_mode": "auto"}))
    windowed = tmp_path / "windowed.onnx"
    export_model(model, str(windowed), check_sizes=[(64, 96)], classes=CLASSES_A, verbose=False,
                 checkpoint={"run_dir": str(run)})
    seg = Segmenter(str(windowed), providers="cpu", intra_op_threads=1)
    assert seg.metadata.scored_tile == 32
    image = smooth_bgr(64, 96, seed=11)
    by_window = seg.predict_tiled(image, tile=32, overlap=8, channel_order="bgr")
    whole = seg.predict(image, channel_order="bgr")
    assert not np.array_equal(by_window, whole)  # else the test could not tell the two apart
    with start(windowed) as served:
        assert json.loads(call(served.port, "GET", "/v1/model")[2])["window"] == 32
        assert np.array_equal(decode_rle(segment(served.port, png(image))["mask"]), by_window)
        small = smooth_bgr(32, 32, seed=12)
        answer = segment(served.port, png(small))
        assert np.array_equal(decode_rle(answer["mask"]), seg.predict(small, channel_order="bgr"))
    with start(windowed, window=0) as whole_images:
        assert json.loads(call(whole_images.port, "GET", "/v1/model")[2])["window"] is None
        assert np.array_equal(decode_rle(segment(whole_images.port, png(image))["mask"]), whole)
    with start(windowed, window=48) as other:
        expected = seg.predict_tiled(image, tile=48, overlap=12, channel_order="bgr")
        assert np.array_equal(decode_rle(segment(other.port, png(image))["mask"]), expected)
    with start(models[0]) as unrecorded:  # an export without a run config: whole images, as before
        assert json.loads(call(unrecorded.port, "GET", "/v1/model")[2])["window"] is None
        assert np.array_equal(decode_rle(segment(unrecorded.port, png(image))["mask"]),
                              seg_a.predict(image, channel_order="bgr"))
    proc = subprocess.run([sys.executable, "-m", "semiseg_sdk.cli", "serve", str(windowed), "--tile=-3"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "--tile -3" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the service's peak memory from /proc")
def test_a_huge_image_in_a_small_request_stays_within_a_memory_bound(models, tmp_path) -> None:
    """A 6000x6000 PNG of about 2 MB (a 2000x2000 one first) used to take the service to 4+ GB and kill the next
    request; now its peak memory rises by under 1 GB over the idle process, and a normal request succeeds after."""
    def status_mb(pid: int, key: str) -> float:
        line = next(l for l in Path(f"/proc/{pid}/status").read_text().splitlines() if l.startswith(key + ":"))
        return int(line.split()[1]) / 1024

    port = free_port()
    cmd = [sys.executable, "-m", "semiseg_sdk.cli", "serve", str(models[0]), "--port", str(port), "--threads", "1",
           "--providers", "cpu", "--request_timeout_s", "10"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if call(port, "GET", "/readyz", timeout=2)[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)
        idle = status_mb(proc.pid, "VmRSS")
        for side in (2000, 6000):
            y, x = np.mgrid[0:side, 0:side]
            img = np.stack([x * 255 // side, y * 255 // side, np.full_like(x, 128)], -1).astype(np.uint8)
            status, _, _ = call(port, "POST", "/v1/segment", cv2.imencode(".png", img)[1].tobytes(),
                                {"Content-Type": "image/png"}, timeout=120)
            assert status in (200, 504)  # 504: this CPU did not finish all tiles within the 10 s deadline
            assert status_mb(proc.pid, "VmHWM") - idle < 1024, (side, status_mb(proc.pid, "VmHWM"), idle)
        assert segment(port, GOOD)["batch_size"] == 1
    finally:
        proc.terminate()
        proc.wait(60)


def test_serving_a_store_follows_promotion_and_rollback(models, tmp_path) -> None:
    """--store serves the current version's model and hot-reloads when current.json moves (promote, rollback),
    without failing a request of the clients that keep sending all along."""
    import shutil as sh

    store = tmp_path / "store"
    for version, model in (("v0001", models[0]), ("v0002", models[1])):
        (store / version).mkdir(parents=True)
        sh.copyfile(model, store / version / "model.onnx")

    def point(version: str) -> None:
        tmp = store / ".current.json.tmp"
        tmp.write_text(json.dumps({"version": version, "event": "promote"}))
        os.replace(tmp, store / "current.json")

    def served() -> tuple:
        info = json.loads(call(svc.port, "GET", "/v1/model")[2])
        return info["store_version"], info["num_classes"]

    point("v0001")
    config = ServiceConfig(providers="cpu", intra_op_threads=1)
    with start_in_thread(create_app(config=config, store=str(store), follow_interval_s=0.1)) as svc:
        deadline = time.monotonic() + 30
        while call(svc.port, "GET", "/readyz")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert served() == ("v0001", len(CLASSES_A))
        stop, answers, failures = threading.Event(), [], []

        def client() -> None:  # sends requests all through the switches, over its own connections
            while not stop.is_set():
                status, _, raw = call(svc.port, "POST", "/v1/segment?format=json", GOOD, {"Content-Type": "image/png"})
                (answers if status == 200 else failures).append(json.loads(raw)["classes"] if status == 200 else raw)

        clients = [threading.Thread(target=client) for _ in range(3)]
        for t in clients:
            t.start()
        for version, classes in (("v0002", CLASSES_B), ("v0001", CLASSES_A)):  # promote, then roll back
            point(version)
            deadline = time.monotonic() + 30
            while served()[0] != version and time.monotonic() < deadline:
                time.sleep(0.05)
            assert served() == (version, len(classes))
            assert segment(svc.port, GOOD)["classes"] == classes
        stop.set()
        for t in clients:
            t.join(timeout=30)
        assert failures == [] and len(answers) > 0  # no request dropped or refused while the model switched
        assert CLASSES_A in answers and CLASSES_B in answers  # requests were served by both versions
    with pytest.raises(ServingError, match="current.json: not found"):
        create_app(config=config, store=str(tmp_path / "empty"))
