"""Files and states a crash or a careless user leaves behind: each gets its fix or its one-line error."""
from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from semiseg_sdk.engine import StopAtStep, Trainer
from semiseg_sdk.errors import CheckpointError, DataError, error_line
from semiseg_sdk.models import build_model, load_checkpoint
from test_trainer import _val_small, tiny_cfg


def _stopped_run(tmp_path, monkeypatch, **kw):
    """A run stopped at step 4 (last.pt and best.pt written), ready to be resumed to step 8."""
    _val_small(monkeypatch)
    trainer = Trainer(tiny_cfg(tmp_path, steps=8, eval_every=2, **kw))
    trainer.fit(hooks=[StopAtStep(4)])
    trainer.close()
    return Path(trainer.run.root)


def test_resume_refuses_a_corrupt_best_pt_before_training(tmp_path, monkeypatch):
    root = _stopped_run(tmp_path, monkeypatch)
    (root / "best.pt").write_bytes((root / "best.pt").read_bytes()[:200])
    with pytest.raises(CheckpointError, match=r"best\.pt: not a readable checkpoint .*delete it to resume"):
        Trainer(tiny_cfg(tmp_path, steps=8, eval_every=2, resume=True))


def test_resume_with_another_optimiser_is_one_line(tmp_path, monkeypatch):
    _stopped_run(tmp_path, monkeypatch)
    with pytest.raises(CheckpointError) as info:
        Trainer(tiny_cfg(tmp_path, steps=8, eval_every=2, resume=True, optimizer="adamw"))
    assert "last.pt: its optimiser state does not fit this run" in str(info.value) and "\n" not in str(info.value)


def test_a_torn_metrics_line_is_dropped_and_orphan_temporaries_removed_on_resume(tmp_path, monkeypatch):
    root = _stopped_run(tmp_path, monkeypatch)
    with open(root / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "loss": 0.')  # a write cut short by a kill
    for name in (".last.pt.abc123.tmp", ".best.pt.def456.tmp"):
        (root / name).write_bytes(b"half a checkpoint")
    resumed = Trainer(tiny_cfg(tmp_path, steps=8, eval_every=2, resume=True))
    assert not list(root.glob(".*.tmp"))
    resumed.fit()
    rows = [json.loads(line) for line in (root / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in rows) == 8
    log = (root / "train.log").read_text()
    assert "dropped 1 unreadable line(s)" in log and "removed 2 temporary file(s)" in log


def test_export_refuses_a_model_with_nan_weights_and_writes_nothing(tmp_path):
    from semiseg_export import ExportError, export_model

    model = build_model("fcn", encoder="tiny", num_classes=3)
    with torch.no_grad():
        model.classifier.weight[0, 0] = float("nan")
    with pytest.raises(ExportError, match="non-finite .* classifier.weight"):
        export_model(model, str(tmp_path / "m.onnx"), check_sizes=[(32, 32)], verbose=False)
    assert not list(tmp_path.iterdir())


def test_a_loader_worker_error_reaches_the_user_as_its_own_line():
    class Broken(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            raise DataError(f"/data/img_{i}.png: truncated PNG (the file ends before its IEND chunk)")

    with pytest.raises(DataError) as info:
        next(iter(torch.utils.data.DataLoader(Broken(), num_workers=1)))
    assert "Original Traceback" in str(info.value)  # what torch hands over
    assert error_line(info.value) == "/data/img_0.png: truncated PNG (the file ends before its IEND chunk)"


def test_a_garbled_png_chunk_is_called_corrupt_not_truncated(tmp_path):
    from semiseg_sdk.data.image_io import read_image

    path = tmp_path / "a.png"
    cv2.imwrite(str(path), np.full((8, 8, 3), 100, np.uint8))
    data = bytearray(path.read_bytes())
    idat = data.index(b"IDAT")
    data[idat + 6] ^= 0xFF  # one flipped byte inside the compressed pixels
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"a\.png: corrupt PNG \(its IDAT chunk at byte \d+ fails its CRC check"):
        read_image(path)
    assert zlib.crc32(b"") == 0  # the check is zlib's CRC-32, the PNG standard's


def test_a_stale_split_file_says_how_to_make_a_new_one(tmp_path):
    from semiseg_sdk.data.splits import resolve_split

    split = tmp_path / "split.json"
    resolve_split(split, ["a", "b", "c", "d"], "1/2", 0)
    with pytest.raises(DataError, match=r"not in the dataset.*delete it to make a new split"):
        resolve_split(split, ["a", "b", "c"], "1/2", 0)


def test_evaluate_refuses_a_split_without_masks(tmp_path):
    from fixtures_data import make_folder_tree
    from semiseg_sdk.engine import evaluate_checkpoint
    from semiseg_sdk.models import save_checkpoint

    root = make_folder_tree(tmp_path / "set", {"train": 2, "val": 2}, with_masks=False)
    model = build_model("fcn", encoder="tiny", num_classes=3)
    save_checkpoint(tmp_path / "m.pt", {"model_spec": dict(model.spec), "model_state": model.state_dict(),
                                        "dataset": {"name": "set", "classes": ["a", "b", "c"], "palette": []},
                                        "metrics": {}, "step": 0})
    with pytest.raises(DataError, match="2 of its 2 images have no mask"):
        evaluate_checkpoint(str(tmp_path / "m.pt"), data="folder", data_root=str(root), data_args={"num_classes": 3})


def test_a_store_drops_the_temporaries_of_killed_writes(tmp_path):
    from semiseg_sdk.continual import ModelStore
    from test_continual_support import copy_store

    store = ModelStore(copy_store(tmp_path / "store"))
    store.store.mkdir(exist_ok=True)
    (store.store / ".abc.png.x1.tmp").write_bytes(b"half an image")
    (store.root / ".current.json.y2.tmp").write_text("{")
    removed = store.clean_stale_builds()
    assert sorted(removed) == [".current.json.y2.tmp", "field/.abc.png.x1.tmp"]
    assert store.current() == "v0001"


def test_atomic_writes_get_the_permissions_a_plain_write_would(tmp_path):
    """mkstemp creates 0600 files; an exported model mounted into a container as another user must stay readable."""
    from semiseg_sdk.utils.atomic import atomic_path

    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "model.onnx") as tmp:
            tmp.write_bytes(b"x")
        (tmp_path / "plain.bin").write_bytes(b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "model.onnx").stat().st_mode & 0o777 == (tmp_path / "plain.bin").stat().st_mode & 0o777 == 0o644
