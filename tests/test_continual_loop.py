"""The refresh end to end on synthetic fog frames, the field-adapt method, clean stops, and crash safety: a
subprocess killed at each phase (``tests/crash_injection.py``), then a normal ``run`` that completes the refresh with every
field image learned exactly once."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from semiseg_sdk.continual import AdaptOptions, ModelStore, RefreshInterrupted, RunOptions, run_refresh, watch
from semiseg_sdk.continual.store import Journal
from semiseg_sdk.continual.refresh import stop_on_signals
from test_continual_support import ADAPT, copy_store, manifest_shas, sha_of, write_field_images

OPTS = RunOptions(min_images=2, settle_seconds=0, device="cpu", progress=False, verbose=False)


def test_one_refresh_end_to_end_on_fog_frames(tmp_path):
    import onnxruntime as ort

    reg = ModelStore(copy_store(tmp_path / "reg"))
    frames = write_field_images(tmp_path / "incoming", 4)
    res = run_refresh(reg.root, tmp_path / "incoming", AdaptOptions(**ADAPT), OPTS)
    assert res["status"] == "promoted" and reg.current() == "v0002" and res["new_images"] == 4
    v2 = reg.version_dir("v0002")
    version = json.loads((v2 / "version.json").read_text())
    assert version["parent"] == "v0001" and version["train"]["steps"] == ADAPT["steps"]
    manifest = json.loads((v2 / "manifest.json").read_text())
    assert {e["sha256"] for e in manifest["new_images"]} == sha_of(frames) == set(manifest["trained_on"])
    gate = json.loads((v2 / "gate.json").read_text())
    assert set(gate["candidate"]) == {"holdout", "probe"} and gate["baseline"] == "v0001"
    assert "holdout (6 images)" in res["report"] and "probe (6 images)" in res["report"]
    config = json.loads((v2 / "config.json").read_text())
    assert config["method"] == "field-adapt" and config["continual"]["parent"] == "v0001"
    assert config["method_args"]["init"].endswith("pending/init.pt")  # v0001 after AdaBN re-estimation
    session = ort.InferenceSession(str(v2 / "model.onnx"), providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: np.random.rand(1, 3, 32, 64).astype(np.float32)})[0]
    assert out.shape == (1, 10, 32, 64)
    assert [e["event"] for e in reg.history()][-1] == "promote" and Journal.load(reg) is None
    # the same frames again (one under a new name): nothing new, no refresh
    (tmp_path / "incoming" / "renamed.png").write_bytes(frames[0].read_bytes())
    again = run_refresh(reg.root, tmp_path / "incoming", AdaptOptions(**ADAPT), OPTS)
    assert again["status"] == "waiting" and again["new"] == 0 and again["already_known"] == 5
    assert reg.versions() == ["v0001", "v0002"]


def test_field_adapt_starts_from_init_and_thresholds_pseudo_labels(tmp_path):
    from semiseg_sdk.augment import ViewConfig, ViewMaker
    from semiseg_sdk.continual.field_adapt import FieldAdapt
    from semiseg_sdk.models.checkpoint import load_checkpoint
    from semiseg_sdk.models import build_model

    reg = copy_store(tmp_path / "reg")
    ckpt = load_checkpoint(reg / "v0001" / "model.pt")
    views = ViewMaker(ViewConfig(crop_size=(32, 32)))
    other = build_model("unet", encoder="tiny", num_classes=10)  # replaced: the architecture comes from init
    cfg = FieldAdapt.make_config({"init": str(reg / "v0001" / "model.pt"), "conf_thresh": 0.999999, "restore_p": 0.5})
    method = FieldAdapt(other, 10, views, cfg)
    assert method.model.spec["name"] == "fcn"
    for k, v in ckpt["model_state"].items():
        assert torch.equal(method.model.state_dict()[k], v) and torch.equal(method.teacher.net.state_dict()[k], v), k
    gen = torch.Generator().manual_seed(0)
    batch = {"image": torch.randint(0, 256, (2, 3, 32, 64), dtype=torch.uint8, generator=gen),
             "mask": torch.randint(0, 10, (2, 32, 64), generator=gen), "valid": torch.ones(2, 32, 64, dtype=torch.bool)}
    out = method.training_step(batch, {**batch, "mask": torch.full((2, 32, 64), 255)}, 0)
    assert float(out["mask_ratio"]) == 0.0 and float(out["unsup"].detach()) == 0.0  # nothing is that confident
    with torch.no_grad():
        for p in method.model.parameters():
            p.add_(1.0)
    method.after_optimizer_step(0)
    restored = [float((p == getattr(method, f"source_{i}")).float().mean()) for i, p in enumerate(method.model.parameters())]
    assert 0.3 < sum(restored) / len(restored) < 0.7  # about half the weights went back to init (restore_p 0.5)
    assert method.inference_model() is method.model


def test_bn_recalibration_estimates_the_mixture_statistics():
    from semiseg_sdk.augment import ViewConfig, ViewMaker
    from semiseg_sdk.continual.adapt import recalibrate_bn

    def batches(value):
        while True:
            yield {"image": torch.full((2, 3, 8, 8), value, dtype=torch.uint8), "mask": torch.zeros(2, 8, 8),
                   "valid": torch.ones(2, 8, 8, dtype=torch.bool), "name": ["a", "b"]}

    bn = torch.nn.BatchNorm2d(3, momentum=0.1)
    model = torch.nn.Sequential(torch.nn.Dropout2d(0.5), bn)
    model[0].eval()
    views = ViewMaker(ViewConfig(crop_size=(8, 8), scale_range=(1.0, 1.0), flip_p=0.0))
    weight = bn.weight.detach().clone()
    assert recalibrate_bn(model, batches(51), batches(153), views, 3, torch.device("cpu")) == 1
    # replay pixels 0.2, field pixels 0.6, half each: mean 0.4, variance 0.04 (unbiased over 256 values)
    assert torch.allclose(bn.running_mean, torch.full((3,), 0.4), atol=1e-5)
    assert torch.allclose(bn.running_var, torch.full((3,), 0.04 * 256 / 255), atol=1e-5)
    assert int(bn.num_batches_tracked) == 3 and bn.momentum == 0.1 and not model.training
    assert torch.equal(bn.weight, weight)


def test_stop_request_keeps_the_refresh_for_the_next_run(tmp_path):
    reg = ModelStore(copy_store(tmp_path / "reg"))
    write_field_images(tmp_path / "incoming", 3)
    stop = threading.Event()
    stop.set()
    with pytest.raises(RefreshInterrupted, match="stopped at step 1"):
        run_refresh(reg.root, tmp_path / "incoming", AdaptOptions(**ADAPT), OPTS, stop)
    assert Journal.load(reg).phase == "ingested" and reg.current() == "v0001"
    res = run_refresh(reg.root, None, AdaptOptions(**ADAPT), OPTS)
    assert res["status"] == "promoted" and res["resumed_from"] == "ingested"


def test_time_budget_ends_training_early_with_the_model_of_that_step(tmp_path):
    reg = ModelStore(copy_store(tmp_path / "reg"))
    write_field_images(tmp_path / "incoming", 2)
    res = run_refresh(reg.root, tmp_path / "incoming", AdaptOptions(**{**ADAPT, "max_minutes": 1e-6}), OPTS)
    train = json.loads((reg.version_dir(res["version"]) / "version.json").read_text())["train"]
    assert train["stopped_early"] == "budget" and train["steps"] == 1 and train["planned_steps"] == ADAPT["steps"]


def test_sigterm_sets_the_stop_event_and_watch_stops(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals() as stop:
        os.kill(os.getpid(), signal.SIGTERM)  # the process survives: the handler only asks for a stop
        assert stop.wait(5)
    assert signal.getsignal(signal.SIGTERM) is before
    reg = copy_store(tmp_path / "reg")
    write_field_images(tmp_path / "incoming", 2)
    stop = threading.Event()
    result = {}
    thread = threading.Thread(target=lambda: result.update(
        watch(reg, tmp_path / "incoming", AdaptOptions(**ADAPT), OPTS, poll_seconds=0.05, stop=stop)))
    thread.start()
    deadline = time.time() + 240
    while ModelStore(reg).current() != "v0002" and time.time() < deadline:
        time.sleep(0.2)
    stop.set()
    thread.join(60)
    assert not thread.is_alive() and result["stopped_by"] == "signal"
    assert [r["status"] for r in result["refreshes"]] == ["promoted"] and result["polls"] >= 1


def _crash_then_run(tmp_path, point):
    reg = ModelStore(copy_store(tmp_path / "reg"))
    frames = write_field_images(tmp_path / "incoming", 4)
    cmd = [sys.executable, str(Path(__file__).parent / "crash_injection.py"), point, "continual", "run", "--store", str(reg.root), "--incoming",
           str(tmp_path / "incoming"), "--min_images", "2", "--settle_seconds", "0", "--device", "cpu", "--noprogress",
           "--adapt", json.dumps(ADAPT)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 137, proc.stderr[-2000:]
    # killed: the store is readable and serves a complete, gated version
    current = reg.current()
    assert current in reg.versions() and reg.read_version(current)["status"] == "passed"
    assert (reg.version_dir(current) / "model.onnx").is_file()
    state = {"versions": reg.versions(), "journal": Journal.load(reg), "current": current}
    res = run_refresh(reg.root, tmp_path / "incoming", AdaptOptions(**ADAPT), OPTS)
    assert res["status"] == "promoted" and reg.current() == "v0002" and reg.versions() == ["v0001", "v0002"]
    shas = manifest_shas(reg.root)
    assert len(shas) == len(set(shas)) == 4 and set(shas) == sha_of(frames)  # none lost, none counted twice
    promotes = [e for e in reg.history() if e["event"] == "promote" and e["version"] == "v0002"]
    assert len(promotes) == 1 and Journal.load(reg) is None and not list(reg.root.glob(".v*.tmp-*"))
    return state, res


@pytest.mark.parametrize("point", ["ingest", "train", "export"])
def test_killed_refresh_is_completed_by_the_next_run(tmp_path, point):
    state, res = _crash_then_run(tmp_path, point)
    assert state["current"] == "v0001" and state["versions"] == ["v0001"]
    if point == "ingest":  # killed before the journal: the images are ingested again, from the start
        assert state["journal"] is None and res["resumed_from"] is None
        assert len(list((tmp_path / "reg" / "field").iterdir())) == 4
    elif point == "train":  # resumed from the trainer's checkpoint at step 3, not from scratch
        assert state["journal"].phase == "ingested" and res["resumed_from"] == "ingested"
        version = json.loads((tmp_path / "reg" / "v0002" / "version.json").read_text())
        assert version["train"]["resumed_from_step"] == ADAPT["checkpoint_every"]
    else:  # killed inside the hidden version folder: it is removed and the version built again
        assert state["journal"].phase == "gated" and len(res["removed_stale_builds"]) == 1


@pytest.mark.slow
@pytest.mark.parametrize("point", ["gate", "promote", "switch"])
def test_killed_refresh_is_completed_by_the_next_run_slow(tmp_path, point):
    state, res = _crash_then_run(tmp_path, point)
    expected = {"gate": ("trained", ["v0001"], "v0001"), "promote": ("built", ["v0001", "v0002"], "v0001"),
                "switch": ("built", ["v0001", "v0002"], "v0002")}[point]
    assert (state["journal"].phase, state["versions"], state["current"]) == expected

