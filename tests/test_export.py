"""ONNX export: parity for every registered 2D model, shipped tensors, metadata, fp16, failure paths, Triton."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from semiseg_export import ExportError, ParityError, export_checkpoint, export_model
from semiseg_export.torch_to_onnx import audit_initializers, trace_to_onnx
from semiseg_sdk.models.checkpoint import save_checkpoint
from semiseg_sdk.errors import CheckpointError
from semiseg_sdk.models import build_model, list_models
from semiseg_serving import Segmenter

SIZES = [(64, 96), (96, 64)]
# vnet is a 3D network (N, C, D, H, W): the exporter refuses it (test_vnet_is_refused), the runtime serves 2D images.
MODELS_2D = [name for name in list_models() if name != "vnet"]
NUM_CLASSES = 4


def tiny_model(name: str, logit_scale: float = 1.0) -> torch.nn.Module:
    """A ``tiny``-encoder model; ``logit_scale`` scales the classifier so logits reach realistic magnitudes."""
    torch.manual_seed(0)
    model = build_model(name, encoder="vit_tiny" if name == "dpt" else "tiny", num_classes=NUM_CLASSES).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(logit_scale)
    return model


def torch_logits(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("name", MODELS_2D)
def test_every_model_exports_with_parity(name: str, tmp_path: Path) -> None:
    model = tiny_model(name, logit_scale=20.0)
    d = model.size_divisor
    sizes = SIZES if all(v % d == 0 for size in SIZES for v in size) else [(4 * d, 6 * d), (6 * d, 4 * d)]  # ViT: 14
    out = tmp_path / f"{name}.onnx"
    summary = export_model(model, str(out), check_sizes=sizes, verbose=False)
    assert out.is_file() and summary["output"] == str(out)
    assert summary["max_abs_diff"] <= 1e-3 and summary["argmax_agreement"] >= 0.999
    assert {tuple(c["size"]) for c in summary["parity"]} == set(sizes)
    assert {c["batch"] for c in summary["parity"]} == {1, 2}

    graph = onnx.load(str(out))
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 17
    dims = [d.dim_param or d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert graph.graph.input[0].name == "image" and dims[1] == 3
    assert all(isinstance(dims[i], str) for i in (0, 2, 3))  # batch, height, width are dynamic
    assert graph.graph.output[0].name == "logits"
    # Independent check at a third size and batch 3, which the exporter never ran.
    x = np.random.default_rng(1).random((3, 3, 4 * d, 5 * d), dtype=np.float32)
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    ref = torch_logits(model, x)
    assert got.shape == (3, NUM_CLASSES, 4 * d, 5 * d)
    assert np.abs(got - ref).max() < 1e-3 * max(1.0, np.abs(ref).max())


@pytest.mark.parametrize("name", MODELS_2D)
def test_graph_ships_exactly_the_model_tensors(name: str) -> None:
    audit = audit_initializers(tiny_model(name))
    assert audit["extra"] == [] and audit["missing"] == []
    assert len(audit["initializers"]) == len(audit["module"]) > 10


def make_checkpoint(folder: Path, name: str = "fcn", model: Optional[torch.nn.Module] = None) -> Path:
    model = model if model is not None else tiny_model(name, logit_scale=20.0)
    save_checkpoint(folder / "best.pt", {
        "model_spec": model.spec, "model_state": model.state_dict(), "step": 120, "run_dir": str(folder),
        "dataset": {"name": "toy", "classes": ["road", "car", "tree", "sky"],
                    "palette": [[128, 64, 128], [0, 0, 142], [107, 142, 35], [70, 130, 180]]},
        "metrics": {"miou": 0.625, "per_class": [0.5, 0.6, 0.7, 0.7]},
    })
    return folder


def test_metadata_round_trip_through_the_runtime(tmp_path: Path) -> None:
    run = make_checkpoint(tmp_path / "run")
    out = tmp_path / "deploy" / "model.onnx"
    summary = export_checkpoint(str(run), str(out), check_sizes=SIZES, verbose=False)
    assert summary["classes"] == ["road", "car", "tree", "sky"] and summary["metrics"]["miou"] == 0.625
    seg = Segmenter(str(out))
    meta = seg.metadata
    assert seg.classes == ("road", "car", "tree", "sky")
    assert seg.palette == ((128, 64, 128), (0, 0, 142), (107, 142, 35), (70, 130, 180))
    assert meta.miou == 0.625 and "per_class" not in meta.metrics  # only scalars are copied
    assert meta.opset == 17 and meta.fp16 is False
    assert meta.model_spec["name"] == "fcn" and meta.model_spec["encoder"] == "tiny"
    assert meta.source["checkpoint"] == str(run / "best.pt") and meta.source["step"] == 120
    rebuilt = build_model(**meta.model_spec)
    assert seg.size_divisor == rebuilt.size_divisor and meta.mean == pytest.approx(rebuilt.mean.flatten().tolist())
    assert meta.export_time.endswith("+00:00") and meta.sdk_version


def test_an_export_records_its_runs_window_and_infer_tiles_by_it(tmp_path: Path) -> None:
    """An export of a run folder carries the run's training crop and evaluation window; ``infer_path`` slides
    windows of that size over larger images by default (the same masks as ``tile=32``, not the whole-image ones),
    ``tile=0`` predicts whole images, and an export of a run scored in whole mode or without a run config predicts
    whole images by default."""
    import json

    import cv2
    from semiseg_serving import ServingError, infer_path

    run = make_checkpoint(tmp_path / "run")
    (run / "config.json").write_text(json.dumps({"crop_size": [32, 32], "eval_window": [32, 48], "eval_mode": "auto"}))
    export_checkpoint(str(run), str(tmp_path / "run.onnx"), check_sizes=SIZES, verbose=False)
    meta = Segmenter(str(tmp_path / "run.onnx")).metadata
    assert (meta.source["crop_size"], meta.source["eval_window"], meta.scored_tile) == ([32, 32], [32, 48], 32)
    small = np.random.default_rng(3).integers(0, 256, (8, 12, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "frame.png"), cv2.resize(small, (96, 64), interpolation=cv2.INTER_CUBIC))

    def mask(model: str, name: str, **kw) -> tuple:
        """(tile used, confidence map): the confidences tell tiled from whole predictions where the masks agree."""
        summary = infer_path(model, str(tmp_path / "frame.png"), str(tmp_path / name), overlay=False,
                             confidence=True, progress=False, **kw)
        return summary["tile"], cv2.imread(str(tmp_path / name / "frame_conf.png"), cv2.IMREAD_UNCHANGED)

    (tile, default), (_, tiled), (whole_tile, whole) = (mask(str(tmp_path / "run.onnx"), n, **kw) for n, kw in
                                                        [("d", {}), ("t", {"tile": 32}), ("w", {"tile": 0})])
    assert (tile, whole_tile) == (32, None) and np.array_equal(default, tiled) and not np.array_equal(default, whole)
    seg = Segmenter(str(tmp_path / "run.onnx"))
    frame = cv2.imread(str(tmp_path / "frame.png"))
    _, api = seg.predict_tiled(frame, return_confidence=True, channel_order="bgr")  # the same default in the API
    _, by_hand = seg.predict_tiled(frame, 32, 8, return_confidence=True, channel_order="bgr")
    assert np.array_equal(api, by_hand) and np.array_equal(np.rint(api * 65535.0).astype(np.uint16), default)
    (run / "config.json").write_text(json.dumps({"crop_size": [32, 32], "eval_window": [32, 32], "eval_mode": "whole"}))
    export_checkpoint(str(run), str(tmp_path / "whole.onnx"), check_sizes=SIZES, verbose=False)
    whole_run_tile, whole_run = mask(str(tmp_path / "whole.onnx"), "wr")  # a run scored on whole images
    assert whole_run_tile is None and np.array_equal(whole_run, whole)
    (run / "config.json").unlink()
    export_checkpoint(str(run), str(tmp_path / "lone.onnx"), check_sizes=SIZES, verbose=False)
    lone_tile, lone = mask(str(tmp_path / "lone.onnx"), "l")
    assert lone_tile is None and "crop_size" not in Segmenter(str(tmp_path / "lone.onnx")).metadata.source
    assert np.array_equal(lone, whole)
    for bad in (-1, "abc"):
        with pytest.raises(ServingError, match="--tile"):
            infer_path(str(tmp_path / "run.onnx"), str(tmp_path / "frame.png"), str(tmp_path / "x"), tile=bad)


def test_fp16_export_runs_on_cpu_within_tolerance(tmp_path: Path) -> None:
    model = tiny_model("deeplabv3plus", logit_scale=20.0)
    fp32, fp16 = tmp_path / "m32.onnx", tmp_path / "m16.onnx"
    export_model(model, str(fp32), check_sizes=SIZES, verbose=False)
    summary = export_model(model, str(fp16), fp16=True, check_sizes=SIZES, verbose=False)
    assert summary["argmax_agreement"] >= 0.99 and summary["tolerance"] == {"atol": 5e-2, "min_agreement": 0.99}
    graph = onnx.load(str(fp16))
    float_inits = {onnx.TensorProto.DataType.Name(t.data_type) for t in graph.graph.initializer if t.dims}
    assert "FLOAT" not in float_inits and "FLOAT16" in float_inits
    assert fp16.stat().st_size < 0.6 * fp32.stat().st_size
    for io in (graph.graph.input[0], graph.graph.output[0]):
        assert io.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    producers = {o: n for n in graph.graph.node for o in n.output}
    resizes = [n for n in graph.graph.node if n.op_type == "Resize"]
    assert resizes
    for resize in resizes:  # Resize stays in fp32
        src = producers.get(resize.input[0])
        assert src is not None and src.op_type == "Cast" and src.attribute[0].i == onnx.TensorProto.FLOAT
    # Our own check of the stated fp16 tolerance, at a size the exporter did not use.
    x = np.random.default_rng(2).random((1, 3, 80, 112), dtype=np.float32)
    got = ort.InferenceSession(str(fp16), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    ref = torch_logits(model, x)
    assert got.dtype == np.float32 and np.abs(got - ref).max() < 5e-2 * max(1.0, np.abs(ref).max())
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.99


def test_fp16_conversion_casts_a_half_precision_output_back_to_float32() -> None:
    """A graph ending in a Conv (no Resize at the end): the fp16 result must get a Cast back to float32."""
    from semiseg_export import convert_to_fp16

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 5, 1)).eval()
    net.size_divisor = 1
    graph = convert_to_fp16(trace_to_onnx(net))
    ops = [n.op_type for n in graph.graph.node]
    assert ops[0] == "Cast" and ops[-1] == "Cast" and ops.count("Conv") == 2
    assert graph.graph.node[-1].output[0] == "logits" and graph.graph.node[0].input[0] == "image"
    x = np.random.default_rng(3).random((2, 3, 16, 24), dtype=np.float32)
    got = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    assert got.dtype == np.float32 and np.abs(got - torch_logits(net, x)).max() < 1e-2


class PerturbedSession(ort.InferenceSession):
    """An onnxruntime session whose logits are shifted: what a broken export would return."""

    def run(self, output_names, input_feed, run_options=None):  # type: ignore[override]
        out = super().run(output_names, input_feed, run_options)
        out[0][:, 0] += 5.0
        return out


@pytest.mark.parametrize("existing", [True, False])
def test_parity_failure_raises_and_leaves_no_file(tmp_path: Path, monkeypatch, existing: bool) -> None:
    import semiseg_export.parity as parity

    out = tmp_path / "model.onnx"
    if existing:
        out.write_bytes(b"previous good export")
    monkeypatch.setattr(parity.ort, "InferenceSession", PerturbedSession)
    with pytest.raises(ParityError, match="model.onnx.*argmax agreement"):
        export_model(tiny_model("fcn"), str(out), check_sizes=SIZES, verbose=False)
    assert sorted(os.listdir(tmp_path)) == (["model.onnx"] if existing else [])  # no temporary file left
    if existing:
        assert out.read_bytes() == b"previous good export"


def test_triton_repository_serves_an_image_and_answers_its_mask(tmp_path: Path) -> None:
    """The repository's model takes Triton's layout (uint8 N x H x W x 3 RGB) and answers the class-id mask the
    runtime's Segmenter gives for the same image, at sizes that need padding; its config matches the graph."""
    out = tmp_path / "seg-fcn.onnx"
    summary = export_model(tiny_model("fcn"), str(out), triton=str(tmp_path / "repo"), check_sizes=SIZES,
                           triton_max_batch=16, verbose=False)
    folder = tmp_path / "repo" / "seg-fcn"
    assert summary["triton"] == str(folder)
    config = (folder / "config.pbtxt").read_text()
    for line in ('name: "seg-fcn"', 'platform: "onnxruntime_onnx"', "max_batch_size: 16", 'name: "image"',
                 "data_type: TYPE_UINT8", "dims: [ -1, -1, 3 ]", 'name: "mask"', "data_type: TYPE_INT32",
                 "dims: [ -1, -1 ]", "dynamic_batching { }"):
        assert line in config
    session = ort.InferenceSession(str(folder / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    (inp,), (outp,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, outp.name, outp.type) == ("image", "tensor(uint8)", "mask", "tensor(int32)")
    seg = Segmenter(str(out))
    rng = np.random.default_rng(0)
    for h, w in ((37, 50), (64, 64), (45, 81)):
        batch = rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8)
        masks = session.run(None, {"image": batch})[0]
        assert masks.shape == (2, h, w) and masks.dtype == np.int32
        for image, mask in zip(batch, masks):
            np.testing.assert_array_equal(mask, seg.predict(image))


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_triton_model_of_a_windowed_run_slides_its_window_like_the_runtime(tmp_path: Path, precision: str) -> None:
    """The Triton model of an export that records its scored window predicts larger images by sliding that window
    (a quarter overlapping, blended, one band of windows through the network at a time), giving
    ``Segmenter.predict_tiled``'s mask, which differs from the whole-image one; an image within the window gives
    ``predict``'s mask; ``tile=0`` keeps whole images."""
    from semiseg_export import write_triton_repository

    import json

    run = make_checkpoint(tmp_path / "run", "deeplabv3plus")  # image pooling: a window sees other context than the image
    (run / "config.json").write_text(json.dumps({"crop_size": [32, 32], "eval_window": [32, 32], "eval_mode": "slide"}))
    out = tmp_path / "seg.onnx"
    export_checkpoint(str(run), str(out), check_sizes=SIZES, fp16=precision == "fp16", verbose=False)
    seg = Segmenter(str(out))
    assert seg.metadata.scored_tile == 32
    folder = write_triton_repository(out, tmp_path / "repo", "win")
    graph = onnx.load(str(folder / "1" / "model.onnx")).graph
    # the network runs inside a Loop, one band of windows at a time, not on every window of the image at once
    assert [n.op_type for n in graph.node].count("Loop") == 1 and "Conv" not in {n.op_type for n in graph.node}
    session = ort.InferenceSession(str(folder / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    differs = 0
    # 57 rows: the last band (from row 25) also overlaps the first (rows 0-31), not only the one before it
    for h, w in ((75, 50), (57, 81), (32, 90), (20, 28), (64, 64)):
        batch = rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8)
        masks = session.run(None, {"image": batch})[0]
        assert masks.shape == (2, h, w) and masks.dtype == np.int32
        for image, mask in zip(batch, masks):
            np.testing.assert_array_equal(mask, seg.predict_tiled(image, tile=32, overlap=8))
            if max(h, w) <= 32:
                np.testing.assert_array_equal(mask, seg.predict(image))
            differs += int((mask != seg.predict(image)).any())
    assert differs >= 2  # the windowed masks are not the whole-image ones
    whole = write_triton_repository(out, tmp_path / "repo", "whole", tile=0)
    session = ort.InferenceSession(str(whole / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    image = rng.integers(0, 256, (1, 75, 50, 3), dtype=np.uint8)
    np.testing.assert_array_equal(session.run(None, {"image": image})[0][0], seg.predict(image[0]))


def test_bad_checkpoints_raise_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="missing.pt"):
        export_checkpoint(str(tmp_path / "missing.pt"), str(tmp_path / "m.onnx"), verbose=False)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(os.urandom(256))
    with pytest.raises(CheckpointError, match="corrupt.pt"):
        export_checkpoint(str(corrupt), str(tmp_path / "m.onnx"), verbose=False)
    assert not (tmp_path / "m.onnx").exists()


def test_bad_targets_and_models_raise_export_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(ExportError, match="a_file"):
        export_model(tiny_model("fcn"), str(blocker / "model.onnx"), verbose=False)
    with pytest.raises(ExportError, match="opset 13"):
        export_model(tiny_model("fcn"), str(tmp_path / "m.onnx"), opset=13, verbose=False)
    with pytest.raises(ExportError, match="50x96 is not a multiple"):
        export_model(tiny_model("fcn"), str(tmp_path / "m.onnx"), check_sizes=[(50, 96)], verbose=False)
    with pytest.raises(ExportError, match="--triton_tile -3: give a tile size in pixels"):
        export_model(tiny_model("fcn"), str(tmp_path / "m.onnx"), triton=str(tmp_path / "repo"), triton_tile=-3,
                     verbose=False)
    with pytest.raises(ExportError, match="--triton_tile 64 is only used by a Triton repository: add --triton"):
        export_model(tiny_model("fcn"), str(tmp_path / "m.onnx"), triton_tile=64, verbose=False)
    assert not (tmp_path / "repo").exists()
    assert not (tmp_path / "m.onnx").exists()


def test_vnet_is_refused() -> None:
    vnet = build_model("vnet", num_classes=2)
    with pytest.raises(ExportError, match="3D"):
        export_model(vnet, "unused.onnx", verbose=False)


# -- int8 --------------------------------------------------------------------------------------------------------------
def calibration_folder(folder: Path, count: int = 6) -> Path:
    """A few small real-looking PNGs (synthetic-driving val images, 64 x 96), as a user would give them."""
    import cv2

    from semiseg_sdk.data import build_dataset

    folder.mkdir(parents=True)
    ds = build_dataset("synthetic-driving", split="val", size=[64, 96], val_length=count)
    for i in range(count):
        assert cv2.imwrite(str(folder / f"frame_{i}.png"), ds[i]["image"].permute(1, 2, 0).numpy()[:, :, ::-1])
    return folder


def trained_tiny() -> torch.nn.Module:
    """A tiny deeplabv3plus trained 6 steps on synthetic-driving (classes folded to 4): a non-trivial argmax with
    real decision margins, which a random network lacks (its int8 agreement is meaningless)."""
    from semiseg_sdk.data import build_dataset

    torch.manual_seed(0)
    model = build_model("deeplabv3plus", encoder="tiny", num_classes=NUM_CLASSES).train()
    ds = build_dataset("synthetic-driving", split="train", size=[64, 96], length=8)
    x = torch.stack([ds[i]["image"] for i in range(8)]).float() / 255
    y = torch.stack([ds[i]["mask"] for i in range(8)]).long()
    y = torch.where(y == 255, y, y % NUM_CLASSES)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny backward: one thread is as fast, and far faster on a busy machine
    try:
        for _ in range(6):
            loss = torch.nn.functional.cross_entropy(model(x), y, ignore_index=255)
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def test_int8_export_is_quantised_checked_and_served(tmp_path: Path, capsys) -> None:
    from semiseg_export import load_calibration

    model = trained_tiny()
    run = make_checkpoint(tmp_path / "run", model=model)
    calib = calibration_folder(tmp_path / "frames")
    with torch.no_grad():  # the agreement below is about a model that predicts several classes
        ref = model(torch.from_numpy(np.concatenate(load_calibration(str(calib), 6, 16).batches)))
    assert (np.bincount(ref.argmax(1).numpy().ravel(), minlength=NUM_CLASSES) / ref[:, 0].numel() > 0.05).sum() >= 2
    out = tmp_path / "deploy" / "model.onnx"
    summary = export_checkpoint(str(run), str(out), int8=True, calibration=str(calib), check_sizes=SIZES[:1])
    assert os.listdir(out.parent) == ["model.onnx"]  # the float graph was only a temporary file
    assert summary["precision"] == "int8" and summary["tolerance"] == {"atol": None, "min_agreement": 0.95}
    assert summary["argmax_agreement"] >= 0.95 and len(summary["parity"]) == 6
    printed = capsys.readouterr().out
    assert "int8 parity on 6 calibration images" in printed and "argmax agreement" in printed

    graph = onnx.load(str(out))
    ops = [n.op_type for n in graph.graph.node]
    assert ops.count("QuantizeLinear") > 5 and ops.count("DequantizeLinear") > 5
    int8_inits = [t for t in graph.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert len(int8_inits) >= 5  # conv weights stored as int8
    for io in (graph.graph.input[0], graph.graph.output[0]):
        assert io.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    resize_inputs = {n.input[0] for n in graph.graph.node if n.op_type == "Resize"}
    producers = {o: n.op_type for n in graph.graph.node for o in n.output}
    assert resize_inputs and all(producers.get(i) != "QuantizeLinear" for i in resize_inputs)  # Resize runs in float

    seg = Segmenter(str(out), providers="cpu")
    meta = seg.metadata
    assert meta.precision == "int8" and meta.fp16 is False and seg.classes == ("road", "car", "tree", "sky")
    q = meta.quantization
    assert q["calibration_source"] == f"folder:{calib.resolve()}" and q["calibration_images"] == 6
    assert q["calibration_method"] == "minmax" and q["argmax_agreement"] == pytest.approx(summary["argmax_agreement"])
    image = np.random.default_rng(4).integers(0, 256, (70, 101, 3), dtype=np.uint8)
    mask = seg.predict(image)
    assert mask.shape == (70, 101) and mask.max() < NUM_CLASSES


def test_int8_calibration_sources(tmp_path: Path) -> None:
    from semiseg_export import load_calibration

    run = make_checkpoint(tmp_path / "run")
    (run / "config.json").write_text('{"data": "synthetic-driving", "data_args": {"size": [40, 72], '
                                     '"val_length": 5}, "val_split": "val"}')
    ckpt = {"path": str(run / "best.pt")}
    calib = load_calibration(None, 3, 16, ckpt)  # no --calibration: the run's validation images
    assert calib.source == "dataset:synthetic-driving:val" and len(calib.batches) == 3
    assert calib.batches[0].shape == (1, 3, 48, 80) and calib.contents[0] == (40, 72)  # padded as Segmenter pads
    assert calib.batches[0].dtype == np.float32 and 0.0 <= calib.batches[0].min() <= calib.batches[0].max() <= 1.0
    assert load_calibration("synthetic-driving:train", 2, 16, ckpt).source == "dataset:synthetic-driving:train"


def test_int8_errors_name_the_calibration_and_write_nothing(tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    model = tiny_model("fcn", logit_scale=20.0)
    with pytest.raises(ExportError, match="nowhere.*no such folder"):
        export_model(model, str(out), int8=True, calibration=str(tmp_path / "nowhere"), verbose=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match="empty: no images"):
        export_model(model, str(out), int8=True, calibration=str(tmp_path / "empty"), verbose=False)
    with pytest.raises(ExportError, match="--calibration"):
        export_model(model, str(out), int8=True, verbose=False)
    with pytest.raises(ExportError, match="fp16 and int8"):
        export_model(model, str(out), int8=True, fp16=True, verbose=False)
    with pytest.raises(ExportError, match="empty.*only used by an int8 export"):
        export_model(model, str(out), calibration=str(tmp_path / "empty"), verbose=False)
    calib = calibration_folder(tmp_path / "frames", count=2)
    with pytest.raises(ParityError, match="int8 model agrees with PyTorch fp32 on .* 2 calibration images"):
        export_model(model, str(out), int8=True, calibration=str(calib), min_agreement=1.01, check_sizes=SIZES,
                     verbose=False)
    assert sorted(os.listdir(tmp_path)) == ["empty", "frames"]  # no model, no temporary file
