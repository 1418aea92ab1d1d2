"""``infer_path`` on folders and videos, and the indexed-PNG writer/reader."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from semiseg_export import export_model
from semiseg_sdk.models import build_model
from semiseg_serving import ServingError, Segmenter, encode_palette_png, infer_path, read_palette_png, write_palette_png
from semiseg_serving.overlay import draw_legend, legend_entries, overlay

CLASSES = ["bg", "road", "car"]
PALETTE = [(0, 0, 0), (128, 64, 128), (0, 0, 142)]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = build_model("fcn", encoder="tiny", num_classes=len(CLASSES)).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(30.0)
    path = tmp_path_factory.mktemp("infer") / "fcn.onnx"
    export_model(model, str(path), check_sizes=[(64, 96)], classes=CLASSES, palette=PALETTE, verbose=False)
    return path


def blobs(h: int, w: int, seed: int) -> np.ndarray:
    small = np.random.default_rng(seed).integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def test_palette_png_round_trip(tmp_path: Path) -> None:
    mask = np.random.default_rng(0).integers(0, 3, (37, 53)).astype(np.uint8)
    mask[0, :5] = 255  # ignore index: the palette is padded up to it
    path = tmp_path / "m.png"
    write_palette_png(path, mask, PALETTE)
    indices, colours = read_palette_png(path)
    assert (indices == mask).all() and colours[:3] == PALETTE and len(colours) == 256
    # OpenCV expands palette PNGs to BGR colours even with IMREAD_UNCHANGED: compare with the colours.
    decoded = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    lut = np.zeros((256, 3), np.uint8)
    lut[:3] = PALETTE
    assert decoded.shape == (37, 53, 3) and (decoded == lut[mask][:, :, ::-1]).all()
    assert path.read_bytes()[25] == 3  # IHDR colour type 3: indexed


def test_png_reader_undoes_every_filter(tmp_path: Path) -> None:
    """Rows filtered with Sub, Up, Average and Paeth (encoded here by hand, as PNG encoders do)."""
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (4, 6)).astype(np.int32)
    rows = []
    for y, kind in enumerate([1, 2, 3, 4]):
        prev = img[y - 1] if y else np.zeros(6, np.int32)
        out = []
        for x in range(6):
            a, b, c = (img[y, x - 1] if x else 0), prev[x], (prev[x - 1] if x else 0)
            p = a + b - c
            pred = {1: a, 2: b, 3: (a + b) // 2,
                    4: a if abs(p - a) <= abs(p - b) and abs(p - a) <= abs(p - c) else (b if abs(p - b) <= abs(p - c) else c)}[kind]
            out.append((img[y, x] - pred) % 256)
        rows.append(bytes([kind] + out))
    base = encode_palette_png(img.astype(np.uint8), [(i, i, i) for i in range(256)])
    idat = zlib.compress(b"".join(rows))
    chunk = struct.pack(">I", len(idat)) + b"IDAT" + idat + struct.pack(">I", zlib.crc32(b"IDAT" + idat))
    start = base.index(b"IDAT") - 4
    end = start + 12 + struct.unpack(">I", base[start:start + 4])[0]
    (tmp_path / "f.png").write_bytes(base[:start] + chunk + base[end:])
    indices, _ = read_palette_png(tmp_path / "f.png")
    assert (indices == img).all()
    assert (cv2.imread(str(tmp_path / "f.png"), cv2.IMREAD_UNCHANGED)[:, :, 0] == img).all()


def test_infer_folder_with_a_corrupt_file(model_path: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    cv2.imwrite(str(src / "a.png"), blobs(64, 96, 1))
    cv2.imwrite(str(src / "sub" / "b.jpg"), blobs(50, 70, 2))
    (src / "broken.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    (src / "notes.txt").write_text("ignored: not an image")
    out = tmp_path / "out"
    summary = infer_path(str(model_path), str(src), str(out), confidence=True, progress=False)
    assert summary["images_done"] == 2 and summary["frames_done"] == 0
    assert [f["path"] for f in summary["images_failed"]] == [str(src / "broken.jpg")]
    assert "not a decodable image" in summary["images_failed"][0]["reason"]
    assert sum(summary["pixels_per_class"].values()) == 64 * 96 + 50 * 70
    assert list(summary["pixels_per_class"]) == CLASSES and summary["mean_latency_ms"] > 0
    seg = Segmenter(str(model_path))
    for name, stem in (("a.png", "a"), ("sub/b.jpg", "sub/b")):
        bgr = cv2.imread(str(src / name))
        indices, colours = read_palette_png(out / f"{stem}.png")
        expected = seg.predict(bgr, channel_order="bgr")
        assert (indices == expected).all() and colours[:3] == PALETTE
        over = cv2.imread(str(out / f"{stem}_overlay.jpg"))
        want = draw_legend(overlay(bgr[:, :, ::-1], expected, PALETTE), expected, CLASSES, PALETTE)[:, :, ::-1]
        assert over.shape == bgr.shape and np.abs(over.astype(int) - want).mean() < 4  # JPEG loss only
        plain = overlay(bgr[:, :, ::-1], expected, PALETTE)[:, :, ::-1]
        assert np.abs(over[:12, :12].astype(int) - plain[:12, :12]).mean() > 20  # the legend panel is there
        conf = cv2.imread(str(out / f"{stem}_conf.png"), cv2.IMREAD_UNCHANGED)
        _, ref_conf = seg.predict(bgr, return_confidence=True, channel_order="bgr")
        assert conf.dtype == np.uint16 and np.abs(conf / 65535.0 - ref_conf).max() < 1e-4
    assert not (out / "broken.png").exists() and not (out / "notes.png").exists()


def test_infer_single_image_with_tiles(model_path: Path, tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "big.png"), blobs(200, 300, 4))
    summary = infer_path(str(model_path), str(tmp_path / "big.png"), str(tmp_path / "o"), overlay=False,
                         tile=96, progress=False)
    assert summary["images_done"] == 1 and summary["images_failed"] == []
    indices, _ = read_palette_png(tmp_path / "o" / "big.png")
    assert indices.shape == (200, 300) and not (tmp_path / "o" / "big_overlay.jpg").exists()


def test_infer_video(model_path: Path, tmp_path: Path) -> None:
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (96, 64))
    assert writer.isOpened()
    for i in range(3):
        writer.write(blobs(64, 96, 10 + i))
    writer.release()
    out = tmp_path / "out"
    summary = infer_path(str(model_path), str(video), str(out), progress=False)
    assert summary["frames_done"] == 3 and summary["images_failed"] == []
    names = sorted(p.name for p in (out / "clip").iterdir())
    assert names == [f"frame_{i:06d}{s}" for i in range(3) for s in (".png", "_overlay.jpg")]
    assert read_palette_png(out / "clip" / "frame_000002.png")[0].shape == (64, 96)


def test_infer_bad_input_paths(model_path: Path, tmp_path: Path) -> None:
    with pytest.raises(ServingError, match="missing_dir"):
        infer_path(str(model_path), str(tmp_path / "missing_dir"), str(tmp_path / "o"), progress=False)
    (tmp_path / "data.csv").write_text("a,b")
    with pytest.raises(ServingError, match="data.csv"):
        infer_path(str(model_path), str(tmp_path / "data.csv"), str(tmp_path / "o"), progress=False)


def test_the_legend_lists_the_classes_present_most_frequent_first():
    mask = np.zeros((40, 60), np.uint8)
    mask[:, :20] = 2
    mask[:10, 20:] = 1
    assert [(c, n) for c, n, _ in legend_entries(mask, CLASSES)] == [(0, "bg"), (2, "car"), (1, "road")]
    assert abs(sum(share for _, _, share in legend_entries(mask, CLASSES)) - 1.0) < 1e-9
    assert legend_entries(np.zeros((4, 4), np.uint8), CLASSES) == [(0, "bg", 1.0)]
    image = np.full((120, 200, 3), 200, np.uint8)
    mask = cv2.resize(mask, (200, 120), interpolation=cv2.INTER_NEAREST)
    drawn = draw_legend(image, mask, CLASSES, PALETTE)
    assert drawn.shape == image.shape and (drawn[:20, :20] != 200).any() and (drawn[-5:, -5:] == 200).all()
