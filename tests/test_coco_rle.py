"""COCO RLE in the service's JSON answers: what pycocotools decodes is the mask the runtime predicts."""
from __future__ import annotations

import json

import numpy as np
import pytest

from semiseg_serving.http.rle import coco_rle, encode_coco
from test_service import models, seg_a  # noqa: F401  (fixtures: two exported tiny models, a Segmenter)

mask_api = pytest.importorskip("pycocotools.mask")


@pytest.mark.parametrize("seed", range(6))
def test_coco_rle_equals_pycocotools(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 40, size=2)
    binary = rng.random((h, w)) < [0.0, 0.02, 0.5, 0.98, 1.0, 0.3][seed]  # empty, sparse, ... full
    if seed == 5:
        binary = np.zeros((h, w), bool)
        binary[h // 3: h - 1, w // 4:] = True  # long runs: counts above 31 need several 5-bit groups
    ours = coco_rle(binary)
    theirs = mask_api.encode(np.asfortranarray(binary.astype(np.uint8)))
    assert ours["counts"] == theirs["counts"].decode() and ours["size"] == [int(h), int(w)]
    decoded = mask_api.decode({"size": ours["size"], "counts": ours["counts"].encode()})
    assert np.array_equal(decoded.astype(bool), binary)


def test_the_service_answers_coco_rle_per_class(models, seg_a):
    from test_service import GOOD, call, smooth_bgr, png, start

    with start(models[0]) as svc:
        image = smooth_bgr(48, 80, seed=3)
        status, _, body = call(svc.port, "POST", "/v1/segment?format=json&mask_encoding=coco", png(image),
                               {"Content-Type": "image/png"})
        assert status == 200
        answer = json.loads(body)["mask"]
        expected = seg_a.predict(image, channel_order="bgr")
        assert answer["encoding"] == "coco-rle" and answer["size"] == [48, 80]
        rebuilt = np.full((48, 80), 255, np.uint8)
        for entry in answer["classes"]:
            m = mask_api.decode({"size": entry["segmentation"]["size"], "counts": entry["segmentation"]["counts"].encode()})
            assert entry["area"] == int(m.sum()) == int((expected == entry["class_id"]).sum())
            rebuilt[m.astype(bool)] = entry["class_id"]
        assert np.array_equal(rebuilt, expected)
        status, _, body = call(svc.port, "POST", "/v1/segment?format=json&mask_encoding=polygons", GOOD,
                               {"Content-Type": "image/png"})
        assert status == 400 and "mask_encoding" in json.loads(body)["error"]["message"]


def test_encode_coco_lists_only_present_classes():
    mask = np.array([[0, 0, 2], [2, 2, 2]], np.uint8)
    out = encode_coco(mask, ["a", "b", "c"])
    assert [(e["class_id"], e["class"], e["area"]) for e in out["classes"]] == [(0, "a", 2), (2, "c", 4)]
