"""Large tiles cut into a patch grid: the grid, the patches' pixels, the labelled fraction per patch, whole-tile scoring."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fixtures_data import make_folder_tree
from semiseg_sdk.config import TrainConfig
from semiseg_sdk.data import build_dataset
from semiseg_sdk.data.patches import PatchGridDataset, grid_starts, patch_grid, run_training_set
from semiseg_sdk.data.splits import load_split
from semiseg_sdk.engine.data_setup import build_train_data
from semiseg_sdk.engine.evaluator import evaluate
from semiseg_sdk.errors import ConfigError


def test_grid_by_hand():
    # side 10, patch 4, overlap 1: every 3 px -> 0, 3, then one flush with the end at 6
    assert grid_starts(10, 4, 3) == [0, 3, 6]
    assert grid_starts(7, 4, 3) == [0, 3]
    assert grid_starts(4, 4, 3) == [0] and grid_starts(3, 4, 3) == [0]
    assert patch_grid(10, 7, 4, 1) == [(y, x, 4, 4) for y in (0, 3, 6) for x in (0, 3)]
    assert patch_grid(3, 9, 4, 0) == [(0, 0, 3, 4), (0, 4, 3, 4), (0, 5, 3, 4)]  # short side: one patch of the tile's height


def test_every_pixel_covered_and_neighbours_overlap_at_least_the_stated_amount():
    for length, size, overlap in [(100, 32, 8), (97, 32, 0), (33, 32, 31), (257, 64, 16)]:
        starts = grid_starts(length, size, size - overlap)
        covered = np.zeros(length, bool)
        for s in starts:
            covered[s:s + size] = True
        assert covered.all() and starts[-1] + size == length
        assert all(b - a <= size - overlap for a, b in zip(starts, starts[1:]))


def _tiles(tmp_path: Path) -> Path:
    return make_folder_tree(tmp_path / "tiles", {"train": 2, "val": 1}, size=(23, 30), num_classes=3,
                            classes=["class_0", "class_1", "class_2"])


def test_patches_hold_the_tiles_pixels_and_are_named_by_tile_and_offset(tmp_path):
    base = build_dataset("folder", split="train", root=_tiles(tmp_path))
    patches = PatchGridDataset(base, 12, 4)
    per_tile = patch_grid(23, 30, 12, 4)  # rows 0, 8, 11; cols 0, 8, 16, 18
    assert len(per_tile) == 12 and len(patches) == 2 * len(per_tile)
    assert patches.labelled and patches.info == base.info
    for k in (0, 5, len(per_tile) + 7):
        tile = base.load(k // len(per_tile))
        y, x, h, w = per_tile[k % len(per_tile)]
        item = patches.load(k)
        assert item["name"] == f"{tile['name']}@{y},{x}" == patches.names()[k]
        assert torch.equal(item["image"], tile["image"][:, y:y + h, x:x + w])
        assert torch.equal(item["mask"], tile["mask"][y:y + h, x:x + w])


@pytest.mark.parametrize("size,overlap", [(0, 0), (8, 8), (8, -1), (8.5, 0), (True, 0)])
def test_bad_patch_settings_are_refused(tmp_path, size, overlap):
    with pytest.raises(ConfigError, match="patch_"):
        TrainConfig(patch_size=size, patch_overlap=overlap)


def test_the_labelled_fraction_is_chosen_among_patches(tmp_path):
    root = _tiles(tmp_path)
    cfg = TrainConfig(data="folder", data_root=str(root), labelled="1/4", patch_size=12, patch_overlap=4, seed=3)
    data = build_train_data(cfg, tmp_path / "split.json")
    assert len(data.train) == 24 and len(data.labelled_idx) == 6 and len(data.unlabelled_idx) == 18
    names = data.train.names()
    labelled_tiles = {names[i].split("@")[0] for i in data.labelled_idx}
    assert labelled_tiles <= {"train_000", "train_001"} and all("@" in names[i] for i in data.labelled_idx)
    assert len(data.val) == 1 and data.val.load(0)["image"].shape[-2:] == (23, 30)  # validation keeps whole tiles
    again = build_train_data(cfg, tmp_path / "split.json")  # the split file names patches: a resume gets the same split
    assert again.labelled_idx == data.labelled_idx


def test_a_patched_runs_config_rebuilds_the_patches_its_split_file_names(tmp_path):
    """Tools that reopen a run (pseudo-label quality) rebuild its training set from config.json: for a patched run
    that is the patch grid, so the split file's patch names resolve to the same patches."""
    root = _tiles(tmp_path)
    cfg = TrainConfig(data="folder", data_root=str(root), labelled="1/4", patch_size=12, patch_overlap=4, seed=3)
    data = build_train_data(cfg, tmp_path / "split.json")
    reopened = run_training_set(json.loads(json.dumps(cfg.to_dict())))  # as config.json holds it
    split = load_split(tmp_path / "split.json", reopened.names())
    index = {n: i for i, n in enumerate(reopened.names())}
    assert [index[n] for n in split.labelled] == data.labelled_idx
    first = data.labelled_idx[0]
    assert torch.equal(reopened.load(first)["mask"], data.train.load(first)["mask"])
    assert len(run_training_set({"data": "folder", "data_root": str(root)})) == 2  # unpatched: the two tiles


class RedIsClassOne(nn.Module):
    """Pixelwise: class 1 where red > 0.5, else class 0 (a third class is never predicted)."""

    size_divisor = 1

    def forward(self, x):
        red = x[:, :1]
        return torch.cat([0.5 - red, red - 0.5, torch.full_like(red, -9.0)], dim=1) * 10


def test_sliding_window_scores_a_whole_tile_as_computed_by_hand():
    h, w = 23, 30
    image = torch.zeros(3, h, w, dtype=torch.uint8)
    image[0, :, :10] = 255                     # red: left 10 columns -> predicted class 1
    mask = torch.zeros(h, w, dtype=torch.uint8)
    mask[:, :15] = 1                           # truth: left 15 columns are class 1
    mask[0, :] = 255                           # first row ignored
    tile = [{"image": image, "mask": mask, "name": "t"}]
    out = evaluate(RedIsClassOne(), tile, 3, mode="slide", window=(8, 8), stride=(5, 5))
    # class 1: TP = 10 cols, FN = 5 cols, FP = 0 -> IoU 10/15; class 0: TP = 15 cols, FP = 5 cols -> IoU 15/20
    expected = {"class_0": 15 / 20, "class_1": 10 / 15}
    for name, value in expected.items():
        assert out["iou"][name] == pytest.approx(value)
    assert out["miou"] == pytest.approx((15 / 20 + 10 / 15) / 2)
    whole = evaluate(RedIsClassOne(), tile, 3, mode="whole")
    assert whole["miou"] == pytest.approx(out["miou"])
