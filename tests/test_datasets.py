"""Image/mask reading with validation, and the folder / VOC / Cityscapes / CamVid adapters on tiny fixture trees."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fixtures_data import (make_camvid_tree, make_cityscapes_tree, make_folder_tree, make_voc_tree, random_rgb,
                           write_image, write_palette_png)
from semiseg_sdk.data.base import default_palette
from semiseg_sdk.data.image_io import read_image, read_mask, read_palette_mask, validate_pair
from semiseg_sdk.data.registry import DATASETS, build_dataset
from semiseg_sdk.data.voc import VOC_PALETTE
from semiseg_sdk.errors import ConfigError, DataError

DUBAI = Path("/work/shared/data/dubai_aerial")
rng = np.random.default_rng(0)


# ---------------------------------------------------------------- image_io
def test_read_image_returns_rgb_exactly(tmp_path):
    rgb = random_rgb(rng, 5, 7)
    out = read_image(write_image(tmp_path / "a.png", rgb))
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3)
    np.testing.assert_array_equal(out, rgb)


def test_gray_and_rgba_images_become_rgb(tmp_path):
    gray = rng.integers(0, 256, (4, 6), dtype=np.uint8)
    np.testing.assert_array_equal(read_image(write_image(tmp_path / "g.png", gray)), np.stack([gray] * 3, axis=2))
    rgb = random_rgb(rng, 4, 6)
    bgra = np.dstack([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), np.full((4, 6), 7, np.uint8)])
    cv2.imwrite(str(tmp_path / "rgba.png"), bgra)
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png"), rgb)


def test_16bit_image_is_scaled_and_16bit_mask_checked(tmp_path):
    img16 = np.array([[0, 257, 257 * 200, 65535]], dtype=np.uint16)
    out = read_image(write_image(tmp_path / "i16.png", img16))
    np.testing.assert_array_equal(out[..., 0], [[0, 1, 200, 255]])
    mask16 = np.array([[0, 3, 255]], dtype=np.uint16)
    np.testing.assert_array_equal(read_mask(write_image(tmp_path / "m16.png", mask16)), [[0, 3, 255]])
    write_image(tmp_path / "big.png", np.array([[0, 300]], dtype=np.uint16))
    with pytest.raises(DataError, match=r"big\.png.*300"):
        read_mask(tmp_path / "big.png")


@pytest.mark.parametrize("content, message", [(None, "not found"), (b"", "empty"),
                                              (b"this is not an image" * 5, "cannot decode")])
def test_unreadable_files_are_named(tmp_path, content, message):
    path = tmp_path / "bad.jpg"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=message) as err:
        read_image(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("ext, keep", [(".png", 0.6), (".png", -12), (".jpg", 0.6), (".jpg", -2)])
def test_truncated_images_are_refused(tmp_path, ext, keep):
    path = write_image(tmp_path / f"t{ext}", random_rgb(rng, 32, 32))
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)] if isinstance(keep, float) else data[:keep])
    with pytest.raises(DataError, match="truncated") as err:
        read_image(path)
    assert str(path) in str(err.value)


def test_jpeg_with_padding_or_trailer_is_accepted(tmp_path):
    path = write_image(tmp_path / "p.jpg", random_rgb(rng, 16, 16))
    reference = read_image(path)
    data = path.read_bytes()
    for tail in (b"\x00" * 9, b"TRAILER-DATA"):
        path.write_bytes(data + tail)
        np.testing.assert_array_equal(read_image(path), reference)


def test_masks_gray_equal_channels_and_colour(tmp_path):
    mask = rng.integers(0, 4, (5, 6), dtype=np.uint8)
    np.testing.assert_array_equal(read_mask(write_image(tmp_path / "m.png", np.dstack([mask] * 3))), mask)
    colours = [(10, 0, 0), (0, 200, 0), (0, 0, 50)]
    rgb = np.array(colours, np.uint8)[mask % 3]
    rgb[0, 0] = (155, 155, 155)
    path = write_image(tmp_path / "colour.png", rgb)
    with pytest.raises(DataError, match="colour mask.*palette") as err:
        read_mask(path)
    assert str(path) in str(err.value)
    ids = read_mask(path, colours=colours, ignore_colours=[(155, 155, 155)])
    expected = mask % 3
    expected[0, 0] = 255
    np.testing.assert_array_equal(ids, expected)
    with pytest.raises(DataError, match=r"colour.png: colours not in the class palette: \(155, 155, 155\)"):
        read_mask(path, colours=colours)


@pytest.mark.parametrize("bit_depth", [1, 2, 4, 8])
def test_palette_png_indices_round_trip(tmp_path, bit_depth):
    indices = rng.integers(0, 1 << bit_depth, (9, 23), dtype=np.uint8)
    if bit_depth == 8:
        indices[0, :5] = 255
    palette = default_palette(1 << bit_depth)
    path = write_palette_png(tmp_path / "p.png", indices, palette, bit_depth, filters=(0, 1, 2, 3, 4))
    np.testing.assert_array_equal(read_palette_mask(path), indices)
    np.testing.assert_array_equal(read_mask(path), indices)  # read_mask recognises indexed PNGs too


def test_read_palette_mask_refuses_other_pngs(tmp_path):
    path = write_image(tmp_path / "gray.png", np.zeros((3, 3), np.uint8))
    with pytest.raises(DataError, match=r"gray\.png.*not an indexed"):
        read_palette_mask(path)


def test_validate_pair_messages():
    image, mask = np.zeros((4, 5, 3), np.uint8), np.zeros((4, 6), np.uint8)
    with pytest.raises(DataError, match=r"img\.jpg is 5x4.*lbl\.png is 6x4"):
        validate_pair(image, mask, "img.jpg", "lbl.png", 3)
    mask = np.array([[0, 2, 255, 7, 3]] * 4, np.uint8)
    with pytest.raises(DataError, match=r"lbl\.png: label values 3, 7 out of range for 3 classes"):
        validate_pair(image, mask, "img.jpg", "lbl.png", 3)
    validate_pair(image, mask, "img.jpg", "lbl.png", 8)  # 255 is ignore, 7 < 8


# ---------------------------------------------------------------- adapters
def test_all_layouts_are_registered():
    assert {"folder", "voc", "cityscapes", "camvid"} <= set(DATASETS.names())


def test_folder_split_layout(tmp_path):
    make_folder_tree(tmp_path, {"train": 3, "val": 2}, classes=["a", "b", "c"])
    ds = build_dataset("folder", split="train", root=tmp_path)
    assert len(ds) == 3 and ds.labelled and ds.names() == ["train_000", "train_001", "train_002"]
    assert ds.info.classes == ("a", "b", "c") and ds.info.palette[2] == (20, 40, 60)
    item = ds[1]
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, 12, 16)
    assert item["mask"].dtype == torch.uint8 and item["mask"].shape == (12, 16)
    written = cv2.imread(str(tmp_path / "masks/train/train_001.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(item["mask"].numpy(), written)
    assert len(build_dataset("folder", split="val", root=tmp_path)) == 2


def test_folder_joined_splits(tmp_path):
    """``val+test`` holds both folders' items, each named by its split, masks still paired with their own image."""
    make_folder_tree(tmp_path, {"train": 3, "val": 2, "test": 2}, classes=["a", "b", "c"])
    ds = build_dataset("folder", split="val+test", root=tmp_path)
    assert ds.names() == ["val/val_000", "val/val_001", "test/test_000", "test/test_001"] and ds.labelled
    written = cv2.imread(str(tmp_path / "masks/test/test_001.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(ds[3]["mask"].numpy(), written)
    for bad in ("val+", "val+val"):
        with pytest.raises(ConfigError, match="split"):
            build_dataset("folder", split=bad, root=tmp_path)
    with pytest.raises(DataError, match="no split folder 'holdout'"):
        build_dataset("folder", split="val+holdout", root=tmp_path)


def test_folder_flat_layout_and_num_classes(tmp_path, caplog):
    make_folder_tree(tmp_path, None)
    with caplog.at_level(logging.WARNING):
        ds = build_dataset("folder", root=tmp_path, num_classes=3)
    assert len(ds) == 4 and ds.info.classes == ("class_0", "class_1", "class_2")
    assert "flat layout" in caplog.text
    with pytest.raises(DataError, match="only has split 'train'.*holdout"):
        build_dataset("folder", split="val", root=tmp_path, num_classes=3)
    with pytest.raises(ConfigError, match="num_classes"):
        build_dataset("folder", root=tmp_path)


def test_folder_flat_layout_holdout_is_disjoint_and_stable(tmp_path):
    from fixtures_data import random_mask, write_image

    from semiseg_sdk.data.folder import holdout_split

    rng = np.random.default_rng(0)
    root = tmp_path / "flat"

    def add(stems):
        for stem in stems:
            write_image(root / "images" / f"{stem}.png", random_rgb(rng, 8, 8))
            write_image(root / "masks" / f"{stem}.png", random_mask(rng, 8, 8, 3))

    add([f"a{i:02d}" for i in range(40)])
    kw = dict(root=root, num_classes=3, holdout=0.25)
    train, val = (set(build_dataset("folder", split=s, **kw).names()) for s in ("train", "val"))
    assert not train & val and len(train | val) == 40 and 4 <= len(val) <= 18
    assert all(holdout_split(n, 0.25) == "val" for n in val)
    add([f"b{i:02d}" for i in range(40)])  # new fleet images never move an existing one between splits
    val2 = set(build_dataset("folder", split="val", **kw).names())
    assert val2 >= val and val2 - val and all(n.startswith("b") for n in val2 - val)
    other = set(build_dataset("folder", split="val", holdout_seed=1, **kw).names())
    assert other != val2
    with pytest.raises(ConfigError, match="holdout must be a fraction"):
        build_dataset("folder", split="val", root=root, num_classes=3, holdout=1.5)
    make_folder_tree(tmp_path / "split", {"train": 2, "val": 1})
    with pytest.raises(ConfigError, match="flat layout only"):
        build_dataset("folder", split="val", root=tmp_path / "split", num_classes=3, holdout=0.1)


def test_folder_unlabelled(tmp_path):
    make_folder_tree(tmp_path, {"train": 2}, with_masks=False)
    ds = build_dataset("folder", root=tmp_path)
    assert not ds.labelled and "mask" not in ds[0] and ds[0]["image"].shape == (3, 12, 16)


def test_folder_colour_masks_use_classes_json(tmp_path):
    make_folder_tree(tmp_path, {"train": 1}, classes=["a", "b", "c"])
    ids = np.array([[0, 1, 2, 1]], np.uint8)
    write_image(tmp_path / "images/train/train_000.jpg", random_rgb(rng, 1, 4))
    write_image(tmp_path / "masks/train/train_000.png", np.array([[(0, 0, 0), (10, 20, 30), (20, 40, 60)]],
                                                                 np.uint8)[0][ids])
    np.testing.assert_array_equal(build_dataset("folder", root=tmp_path)[0]["mask"].numpy(), ids)


def test_folder_layout_errors(tmp_path):
    with pytest.raises(DataError, match="dataset folder not found"):
        build_dataset("folder", root=tmp_path / "nope")
    with pytest.raises(DataError, match="no images/ folder"):
        build_dataset("folder", root=tmp_path)
    (tmp_path / "images" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="no images"):
        build_dataset("folder", root=tmp_path, num_classes=3)
    with pytest.raises(DataError, match=r"no split folder 'test' \(found: train\)"):
        build_dataset("folder", split="test", root=tmp_path, num_classes=3)


def test_folder_unpaired_files_are_named(tmp_path):
    make_folder_tree(tmp_path, {"train": 3}, num_classes=3, classes=["a", "b", "c"])
    (tmp_path / "masks/train/train_002.png").unlink()
    with pytest.raises(DataError, match="image.s. without a mask: train_002"):
        build_dataset("folder", root=tmp_path)
    write_image(tmp_path / "masks/train/train_002.png", np.zeros((12, 16), np.uint8))
    write_image(tmp_path / "masks/train/orphan.png", np.zeros((12, 16), np.uint8))
    with pytest.raises(DataError, match="mask.s. without an image: orphan"):
        build_dataset("folder", root=tmp_path)


def test_folder_bad_pairs_fail_at_load(tmp_path):
    make_folder_tree(tmp_path, {"train": 2}, classes=["a", "b", "c"])
    write_image(tmp_path / "masks/train/train_000.png", np.zeros((5, 5), np.uint8))
    write_image(tmp_path / "masks/train/train_001.png", np.full((12, 16), 9, np.uint8))
    ds = build_dataset("folder", root=tmp_path)
    with pytest.raises(DataError, match=r"train_000\.jpg is 16x12.*train_000\.png is 5x5"):
        ds[0]
    with pytest.raises(DataError, match=r"train_001\.png: label values 9 out of range for 3 classes"):
        ds[1]


def test_voc_palette_masks(tmp_path):
    palette = default_palette(256)  # the VOC devkit colour map; entry 255 is the border colour
    assert tuple(palette[:21]) == VOC_PALETTE and palette[255] == (224, 224, 192)
    masks = make_voc_tree(tmp_path, palette)
    ds = build_dataset("voc", split="train", root=tmp_path)
    assert len(ds) == 3 and ds.info.num_classes == 21 and ds.info.classes[20] == "tvmonitor"
    assert ds.info.palette[1] == (128, 0, 0) and ds.names()[0] == "2007_000001"
    item = ds[2]
    np.testing.assert_array_equal(item["mask"].numpy(), masks["2008_000003"])
    assert {20, 255} <= set(np.unique(item["mask"].numpy()).tolist())
    assert item["image"].shape == (3, 10, 14)
    assert len(build_dataset("voc", split="val", root=tmp_path)) == 2
    with pytest.raises(DataError, match=r"test\.txt: split list not found \(available: train, val\)"):
        build_dataset("voc", split="test", root=tmp_path)


def test_cityscapes_label_ids_map_to_train_ids(tmp_path):
    label_ids = np.array([[7, 26, 0, 33], [24, 8, 15, 23]], np.uint8)
    make_cityscapes_tree(tmp_path, label_ids)
    ds = build_dataset("cityscapes", split="train", root=tmp_path)
    assert ds.names() == ["aachen_000000_000019", "bochum_000001_000019"] and ds.info.num_classes == 19
    mask = ds[0]["mask"].numpy()
    np.testing.assert_array_equal(mask, [[0, 13, 255, 18], [11, 1, 255, 10]])
    assert ds.info.classes[13] == "car" and ds[1]["image"].shape == (3, 2, 4)
    assert len(build_dataset("cityscapes", split="val", root=tmp_path)) == 1
    bad = tmp_path / "gtFine/val/lindau/lindau_000002_000019_gtFine_labelIds.png"
    write_image(bad, np.full((2, 4), 40, np.uint8))
    with pytest.raises(DataError, match=r"lindau_000002_000019_gtFine_labelIds\.png: values \[40\]"):
        build_dataset("cityscapes", split="val", root=tmp_path)[0]


def test_camvid_void_becomes_ignore(tmp_path):
    make_camvid_tree(tmp_path, np.array([[0, 5, 10, 11]], np.uint8))
    ds = build_dataset("camvid", split="train", root=tmp_path)
    assert len(ds) == 2 and ds.info.num_classes == 11 and ds.info.classes[8] == "car"
    np.testing.assert_array_equal(ds[0]["mask"].numpy(), [[0, 5, 10, 255]])
    assert [len(build_dataset("camvid", split=s, root=tmp_path)) for s in ("val", "test")] == [1, 1]
    write_image(tmp_path / "testannot/0001TP_test00.png", np.array([[0, 12, 1, 1]], np.uint8))
    with pytest.raises(DataError, match=r"0001TP_test00\.png: label values 12 out of range for 11 classes"):
        build_dataset("camvid", split="test", root=tmp_path)[0]


# ---------------------------------------------------------------- the real aerial set (skips when absent)
@pytest.mark.skipif(not DUBAI.is_dir(), reason=f"{DUBAI} not present")
def test_dubai_aerial_loads_with_folder():
    classes = [c["name"] for c in json.loads((DUBAI / "classes.json").read_text())["classes"]]
    sizes = {}
    for split, count in (("train", 48), ("val", 8), ("test", 16)):
        ds = build_dataset("folder", split=split, root=DUBAI)
        assert len(ds) == count and ds.labelled and list(ds.info.classes) == classes
        sizes[split] = ds
    assert sizes["train"].info.palette[0] == (60, 16, 152)
    for item in (sizes["val"][0], sizes["test"][len(sizes["test"]) - 1]):
        values = set(np.unique(item["mask"].numpy()).tolist())
        assert values <= {0, 1, 2, 3, 4, 255} and len(values) > 1
        assert item["image"].shape[1:] == item["mask"].shape and item["image"].dtype == torch.uint8
