"""The data is checked before step 1: problems that used to stop a run at its first evaluation (or never) stop it
before training, in one line naming the file."""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from fixtures_data import make_folder_tree, random_rgb, write_image
from semiseg_sdk.config import TrainConfig
from semiseg_sdk.data import build_dataset
from semiseg_sdk.data.checks import check_training_data
from semiseg_sdk.data.image_io import image_size
from semiseg_sdk.errors import DataError


def _tree(tmp_path: Path) -> Path:
    return make_folder_tree(tmp_path / "set", {"train": 6, "val": 3}, size=(12, 16), num_classes=3)


def _check(root: Path, labelled=(0, 1, 2)) -> dict:
    train = build_dataset("folder", split="train", root=root, num_classes=3)
    val = build_dataset("folder", split="val", root=root, num_classes=3)
    return check_training_data(train, val, list(labelled), workers=2)


def test_a_clean_folder_passes_and_every_item_is_checked(tmp_path):
    assert _check(_tree(tmp_path)) == {"val": 3, "train": 6}


def test_a_val_label_out_of_range_is_found_before_training(tmp_path):
    root = _tree(tmp_path)
    mask_path = sorted((root / "masks" / "val").iterdir())[1]
    bad = np.zeros((12, 16), np.uint8)
    bad[3, 4] = 7
    cv2.imwrite(str(mask_path), bad)
    with pytest.raises(DataError, match=rf"{mask_path.name}: label values 7 out of range for 3 classes"):
        _check(root)


def test_a_missing_val_mask_folder_is_an_error_not_a_run_without_scores(tmp_path):
    root = _tree(tmp_path)
    shutil.rmtree(root / "masks" / "val")
    with pytest.raises(DataError, match="the validation split has no masks"):
        _check(root)


def test_labelled_training_images_need_masks(tmp_path):
    root = _tree(tmp_path)
    shutil.rmtree(root / "masks" / "train")
    with pytest.raises(DataError, match="no mask for the labelled training images"):
        _check(root)


def test_a_labelled_mask_of_the_wrong_size_and_a_truncated_unlabelled_image_are_named(tmp_path):
    root = _tree(tmp_path)
    train_masks = sorted((root / "masks" / "train").iterdir())
    cv2.imwrite(str(train_masks[0]), np.zeros((10, 16), np.uint8))
    with pytest.raises(DataError, match=rf"image and mask sizes differ: .*{train_masks[0].name} is 16x10"):
        _check(root, labelled=[0])
    cv2.imwrite(str(train_masks[0]), np.zeros((12, 16), np.uint8))
    png = sorted((root / "images" / "train").glob("*.png"))[-1]  # an unlabelled one (labelled: index 0 only)
    png.write_bytes(png.read_bytes()[:-20])
    with pytest.raises(DataError, match=rf"{png.name}: truncated PNG"):
        _check(root, labelled=[0])


def test_image_size_reads_png_and_jpeg_headers(tmp_path):
    rgb = random_rgb(np.random.default_rng(0), 37, 53)
    for ext in (".png", ".jpg", ".bmp"):
        path = write_image(tmp_path / f"a{ext}", rgb)
        assert image_size(path) == (53, 37), ext
    progressive = tmp_path / "p.jpg"
    cv2.imwrite(str(progressive), rgb, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert image_size(progressive) == (53, 37)


def test_the_trainer_checks_before_writing_a_checkpoint(tmp_path):
    from semiseg_sdk.engine import Trainer

    root = _tree(tmp_path)
    cv2.imwrite(str(sorted((root / "masks" / "val").iterdir())[0]), np.full((12, 16), 9, np.uint8))
    cfg = TrainConfig(data="folder", data_root=str(root), data_args={"num_classes": 3}, labelled="1/2", model="fcn",
                      encoder="tiny", steps=2, batch_size=2, crop_size=(12, 12), num_workers=0, out=str(tmp_path / "runs"),
                      name="r", progress=False)
    with pytest.raises(DataError, match="label values 9 out of range"):
        Trainer(cfg)
    assert not list((tmp_path / "runs").rglob("*.pt"))
    Trainer(TrainConfig(**{**cfg.to_dict(), "check_data": False, "name": "unchecked"}))  # opting out skips the check
