"""Torch-free runtime: predictions vs PyTorch, pre/post-processing, batching, sliding window, errors, no torch."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from semiseg_export import export_model, trace_to_onnx
from semiseg_sdk.models import build_model
from semiseg_serving import ModelFileError, Segmenter, ServingError, resolve_providers
from semiseg_serving.sliding_window import blend_window, predict_tiled_rgb, tile_positions

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["bg", "road", "car"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(torch model, path of its export): a tiny UNet (size divisor 32) with realistic logit magnitudes."""
    torch.manual_seed(0)
    model = build_model("unet", encoder="tiny", num_classes=len(CLASSES)).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(30.0)
    path = tmp_path_factory.mktemp("runtime") / "unet.onnx"
    export_model(model, str(path), check_sizes=[(64, 96)], classes=CLASSES, verbose=False)
    return model, path


@pytest.fixture(scope="module")
def seg(exported) -> Segmenter:
    return Segmenter(str(exported[1]), providers="cpu", intra_op_threads=1)


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A uint8 RGB image with large blobs (so predictions have structure, not noise)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(h // 8, 2), max(w // 8, 2), 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def torch_predict(model, rgb: np.ndarray, pad_to=None):
    """Reference: PyTorch logits of an RGB uint8 image, reflect-padded at bottom/right to ``pad_to`` then cropped."""
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0
    h, w = rgb.shape[:2]
    if pad_to is not None:
        x = F.pad(x, (0, pad_to[1] - w, 0, pad_to[0] - h), mode="reflect")
    with torch.no_grad():
        return model(x)[0, :, :h, :w].numpy()


def test_reads_metadata_and_provider(seg: Segmenter) -> None:
    assert seg.classes == tuple(CLASSES) and seg.num_classes == 3 and seg.size_divisor == 32
    assert len(seg.palette) == 3 and seg.provider == "CPUExecutionProvider"


def test_predict_equals_torch_argmax_rgb_and_bgr(exported, seg: Segmenter) -> None:
    model, _ = exported
    rgb = smooth_image(64, 96)
    logits = torch_predict(model, rgb)
    expected = logits.argmax(0)
    assert len(np.unique(expected)) > 1  # a meaningful comparison: several classes present
    mask, conf = seg.predict(rgb, return_confidence=True)
    assert mask.shape == (64, 96) and mask.dtype == np.uint8
    assert (mask == expected).mean() >= 0.999
    softmax_max = torch.softmax(torch.from_numpy(logits), 0).max(0).values.numpy()
    assert conf.dtype == np.float32 and np.allclose(conf, softmax_max, atol=1e-4)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    assert (seg.predict(bgr, channel_order="bgr") == mask).all()
    assert (seg.predict(bgr) != mask).any()  # the channel order really matters for this model


def test_odd_sizes_are_padded_like_reflect_padding(exported, seg: Segmenter) -> None:
    model, _ = exported
    rgb = smooth_image(50, 77, seed=3)
    expected = torch_predict(model, rgb, pad_to=(64, 96)).argmax(0)
    mask = seg.predict(rgb)
    assert mask.shape == (50, 77) and (mask == expected).mean() >= 0.999


def test_gray_rgba_float_and_resize_inputs(seg: Segmenter) -> None:
    rgb = smooth_image(64, 96, seed=5)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    assert (seg.predict(gray) == seg.predict(np.repeat(gray[:, :, None], 3, axis=2))).all()
    assert (seg.predict(gray[:, :, None]) == seg.predict(gray)).all()
    rgba = np.concatenate([rgb, np.full((64, 96, 1), 7, np.uint8)], axis=2)
    assert (seg.predict(rgba) == seg.predict(rgb)).all()
    assert (seg.predict(rgb.astype(np.float32) / 255.0) == seg.predict(rgb)).all()
    assert (seg.predict(rgb, resize_to=(64, 96)) == seg.predict(rgb)).all()  # same size: a no-op resize
    small = seg.predict(rgb, resize_to=(32, 64))
    assert small.shape == (64, 96) and small.dtype == np.uint8
    with pytest.raises(ServingError, match="shape"):
        seg.predict(np.zeros((8, 8, 2), np.uint8))
    with pytest.raises(ServingError, match="channel_order"):
        seg.predict(rgb, channel_order="rbg")


def test_predict_batch_equals_predict(seg: Segmenter) -> None:
    images = [smooth_image(64, 96, 1), smooth_image(50, 77, 2), smooth_image(40, 90, 3), smooth_image(96, 64, 4)]
    batch = seg.predict_batch(images, batch_size=2)
    for img, mask in zip(images, batch):
        single = seg.predict(img)
        assert mask.shape == img.shape[:2] and (mask == single).mean() >= 0.999
    with_conf = seg.predict_batch(images[:2], return_confidence=True)
    assert with_conf[1][1].shape == (50, 77)


def test_tiled_equals_whole_image_when_it_fits_one_tile(seg: Segmenter) -> None:
    rgb = smooth_image(64, 96, seed=8)
    mask, conf = seg.predict(rgb, return_confidence=True)
    tiled, tconf = seg.predict_tiled(rgb, tile=128, overlap=32, return_confidence=True)
    assert (tiled == mask).all() and np.allclose(tconf, conf, atol=1e-5)


def test_tiled_covers_every_pixel_with_known_predictions() -> None:
    """A fake network whose class is a per-pixel function of the red channel: every pixel's answer is known,
    and ids start at 1, so a pixel no tile covered would show as a wrong value."""
    levels = np.array([0, 1, 2, 3], dtype=np.float32)
    calls = []

    def run(batch: np.ndarray) -> np.ndarray:
        assert batch.shape[2] % 16 == 0 and batch.shape[3] % 16 == 0
        calls.append(batch.shape[0])
        red = batch[:, 0:1] * 3.0  # 0..3
        return -8.0 * np.abs(red - levels[None, :, None, None])  # class = nearest level

    rng = np.random.default_rng(0)
    truth = rng.integers(1, 4, (300, 500)).astype(np.uint8)
    rgb = np.zeros((300, 500, 3), np.uint8)
    rgb[..., 0] = np.round(truth * 85.0).astype(np.uint8)  # red = class * 85 -> red/255*3 == class
    mask, conf = predict_tiled_rgb(run, rgb, 4, 16, tile=128, overlap=32, batch_size=3, return_confidence=True)
    assert mask.shape == (300, 500) and (mask == truth).all()
    assert conf.min() > 0.9
    n_tiles = len(tile_positions(300, 128, 96)) * len(tile_positions(500, 128, 96))
    assert sum(calls) == n_tiles == 3 * 5


def test_tile_geometry() -> None:
    assert tile_positions(300, 128, 96) == [0, 96, 172]
    assert tile_positions(100, 128, 96) == [0]
    w = blend_window(128, 32)
    assert w.min() > 0 and w[40:88].min() == 1.0 and w[0] < 0.01 and np.allclose(w, w[::-1])


def test_tiled_on_the_real_model_is_close_to_whole_image(seg: Segmenter) -> None:
    rgb = smooth_image(160, 224, seed=9)
    tiled = seg.predict_tiled(rgb, tile=128, overlap=64)
    assert tiled.shape == (160, 224) and tiled.max() < seg.num_classes
    assert (tiled == seg.predict(rgb)).mean() > 0.8  # different context per tile; mostly the same answer
    with pytest.raises(ServingError, match="overlap"):
        seg.predict_tiled(rgb, tile=64, overlap=64)


def test_bad_model_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="nothing.onnx"):
        Segmenter(str(tmp_path / "nothing.onnx"))
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a protobuf")
    with pytest.raises(ModelFileError, match="notes.onnx"):
        Segmenter(str(text))
    plain = tmp_path / "plain.onnx"
    import onnx

    onnx.save(trace_to_onnx(build_model("fcn", encoder="tiny", num_classes=2)), str(plain))
    with pytest.raises(ModelFileError, match="plain.onnx: not a semiseg export"):
        Segmenter(str(plain))


def test_provider_resolution() -> None:
    import onnxruntime as ort

    auto = [name for name, _ in resolve_providers("auto")]
    assert auto[-1] == "CPUExecutionProvider" and set(auto) <= set(ort.get_available_providers())
    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(ServingError, match="TensorrtExecutionProvider is not available"):
            resolve_providers("tensorrt")


def test_runtime_works_where_torch_cannot_be_imported(exported) -> None:
    code = textwrap.dedent(f"""
        import sys
        for blocked in ("torch", "semiseg_sdk", "onnx"):
            sys.modules[blocked] = None  # any import of these now raises ImportError
        import numpy as np
        import semiseg_serving
        seg = semiseg_serving.Segmenter({str(exported[1])!r})
        mask = seg.predict(np.full((40, 50, 3), 120, np.uint8))
        assert mask.shape == (40, 50), mask.shape
        assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules if sys.modules[m] is not None)
        print("ok", seg.provider)
    """)
    env = {"PYTHONPATH": str(ROOT / "serving"), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok CPUExecutionProvider")
