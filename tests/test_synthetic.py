"""The built-in synthetic datasets: item contract, determinism, domains, class coverage, argument checks, registry."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from semiseg_sdk.data.registry import build_dataset
from semiseg_sdk.data.synthetic import SyntheticAerial, SyntheticDriving
from semiseg_sdk.errors import ConfigError

SMALL = {SyntheticDriving: (64, 128), SyntheticAerial: (64, 64)}
BOTH = pytest.mark.parametrize("cls", [SyntheticDriving, SyntheticAerial], ids=["driving", "aerial"])


def small(cls, **kw):
    kw.setdefault("size", SMALL[cls])
    kw.setdefault("length", 8)
    return cls(**kw)


@BOTH
def test_item_contract(cls):
    ds = small(cls, size=(48, 80))
    item = ds[3]
    assert set(item) == {"image", "mask", "name"}
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, 48, 80)
    assert item["mask"].dtype == torch.uint8 and item["mask"].shape == (48, 80)
    assert int(item["mask"].max()) < ds.info.num_classes
    assert item["image"].float().std() > 5.0  # a real picture, not a flat fill
    assert item["name"] == ds.names()[3]


@BOTH
def test_same_seed_same_bytes_in_any_order(cls):
    a, b = small(cls, seed=7), small(cls, seed=7)
    first = a[5]
    for i in (0, 1, 2):  # touching other items first must not change item 5
        b[i]
    again = b[5]
    assert torch.equal(first["image"], again["image"]) and torch.equal(first["mask"], again["mask"])


@BOTH
def test_other_seed_or_split_gives_other_scene(cls):
    base = small(cls, seed=0)[2]
    other_seed = small(cls, seed=1)[2]
    val = small(cls, seed=0, split="val")[2]
    for other in (other_seed, val):
        assert not torch.equal(base["mask"], other["mask"])
        assert not torch.equal(base["image"], other["image"])


@BOTH
def test_items_differ_within_a_split(cls):
    ds = small(cls)
    assert not torch.equal(ds[0]["mask"], ds[1]["mask"])


@BOTH
def test_domain_changes_image_but_not_labels(cls):
    ref = small(cls)
    for domain in cls.domains[1:]:
        shifted = small(cls, domain=domain)
        for i in (0, 1):
            a, b = ref[i], shifted[i]
            assert torch.equal(a["mask"], b["mask"]), domain
            diff = (a["image"].float() - b["image"].float()).abs().mean()
            assert diff > 4.0, f"{domain}: mean change only {diff:.1f} grey levels"


def test_driving_look_swaps_change_looks_but_never_labels():
    """The long tail of swapped looks (ivy facades, paved roads...) is appearance only: masks follow the geometry."""
    import copy

    from semiseg_sdk.data.synthetic import driving_ground, driving_looks

    plain_set, swapped_set = small(SyntheticDriving, look_swaps=0.0), small(SyntheticDriving, look_swaps=1.0)
    assert driving_ground.draw_swaps(np.random.default_rng(0), 0.0) == {}
    swaps = driving_ground.draw_swaps(np.random.default_rng(0), 1.0)
    assert set(swaps) == set(driving_looks.MIMICS)
    assert all(swaps[k] in driving_looks.MIMICS[k] and swaps[k] != k for k in swaps)
    for i in range(3):  # every kind swapped, same layout stream: the same labels, another picture
        (img0, mask0), (img1, mask1) = plain_set.generate_arrays(i), swapped_set.generate_arrays(i)
        assert np.array_equal(mask0, mask1) and not np.array_equal(img0, img1)
    # the default rate keeps the default names; another rate names its items apart (caches, pseudo-label folders)
    assert small(SyntheticDriving)[0]["name"] == "synthetic-driving/train/000000"
    assert swapped_set[0]["name"] == "synthetic-driving-swaps1/train/000000"
    for bad in (-0.1, 1.5, "0.2", True):
        with pytest.raises(ConfigError, match="look_swaps"):
            SyntheticDriving(look_swaps=bad)
    # a swapped kind draws its colour and texture from the other kind's distribution
    scene = driving_ground.make_scene(64, 128, np.random.default_rng(1), np.random.default_rng(2))
    scene.swaps = {"road": "sidewalk"}
    twin = copy.deepcopy(scene.app)
    look = scene.look("road")
    colour, texture = driving_looks.LOOKS["sidewalk"].sample(twin)
    assert scene.canvas.colours[look] == pytest.approx(colour) and scene.canvas.textures[look] == pytest.approx(texture)


@pytest.mark.parametrize("cls,size", [(SyntheticDriving, (96, 192)), (SyntheticAerial, (96, 96))],
                         ids=["driving", "aerial"])
def test_every_class_appears_in_20_images(cls, size):
    ds = cls(length=20, size=size)
    counts = np.zeros(ds.info.num_classes, np.int64)
    for i in range(len(ds)):
        counts += np.bincount(ds.generate_arrays(i)[1].ravel(), minlength=ds.info.num_classes)
    missing = [c for c, n in zip(ds.info.classes, counts) if n == 0]
    assert not missing, f"classes never drawn: {missing}"
    assert len(counts) == ds.info.num_classes  # no id beyond the class list


@BOTH
def test_bad_arguments_raise_config_error_naming_the_value(cls):
    with pytest.raises(ConfigError, match=r"'sunny'.*" + cls.domains[0]):
        cls(domain="sunny")
    with pytest.raises(ConfigError, match=r"'training'.*train, val, test"):
        cls(split="training")
    with pytest.raises(ConfigError, match="length"):
        cls(length=-1)
    with pytest.raises(ConfigError, match="size"):
        cls(size=(8, 8))
    with pytest.raises(ConfigError, match="seed"):
        cls(seed=-3)


@BOTH
def test_lengths_names_and_indexing(cls):
    assert len(cls()) == 2000 and len(cls(split="val")) == 200 and len(cls(split="test")) == 200
    ds = small(cls, length=3)
    prefix = cls.info.name
    assert ds.names() == [f"{prefix}/train/000000", f"{prefix}/train/000001", f"{prefix}/train/000002"]
    assert small(cls, length=1, domain=cls.domains[1]).names() == [f"{prefix}-{cls.domains[1]}/train/000000"]
    assert torch.equal(ds[-1]["mask"], ds[2]["mask"])
    with pytest.raises(IndexError):
        ds[3]
    # val_length sizes the evaluation splits only: one data_args dict for many training and few val images
    assert len(cls(length=50, val_length=5)) == 50
    assert len(cls(split="val", length=50, val_length=5)) == 5 and len(cls(split="test", length=50, val_length=5)) == 5
    with pytest.raises(ConfigError, match="length"):
        cls(split="val", val_length=-2)


def test_registry_builds_both():
    ds = build_dataset("synthetic-driving", split="val", length=4)
    assert isinstance(ds, SyntheticDriving) and len(ds) == 4 and ds.split == "val" and ds.size == (128, 256)
    aerial = build_dataset("synthetic-aerial", split="test", length=2, size=(64, 64), domain="winter")
    assert isinstance(aerial, SyntheticAerial) and aerial.domain == "winter"
    assert aerial[0]["image"].shape == (3, 64, 64)


def test_worker_processes_give_the_same_items():
    ds = small(SyntheticDriving, length=4, size=(32, 64))
    loader = DataLoader(ds, batch_size=2, num_workers=1, multiprocessing_context="fork")
    batch = next(iter(loader))
    assert torch.equal(batch["image"][1], ds[1]["image"]) and torch.equal(batch["mask"][0], ds[0]["mask"])
    assert batch["name"] == ds.names()[:2]
