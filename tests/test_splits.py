"""Labelled / unlabelled split files: parsing the amount, determinism, saving, loading and reuse."""
from __future__ import annotations

import json

import pytest

from semiseg_sdk.data.splits import (Split, canonical_spec, count_labelled, load_split, make_split, resolve_split,
                                     save_split)
from semiseg_sdk.errors import ConfigError, DataError

NAMES = [f"img_{i:04d}" for i in range(100)]


@pytest.mark.parametrize("spec, total, expected", [
    ("1/16", 1464, 92), ("1/8", 1464, 183), ("1/2", 1464, 732), (0.125, 1464, 183), ("all", 10, 10),
    (1.0, 10, 10), (7, 10, 7), ("7", 10, 7), ("1/16", 3, 1), (0.001, 10, 1), ("0.25", 10, 3),
])
def test_count_labelled(spec, total, expected):
    assert count_labelled(spec, total) == expected


@pytest.mark.parametrize("spec, canonical", [("1/8", "1/8"), ("2/16", "1/8"), (0.125, "1/8"), ("ALL", "all"),
                                             ("1/1", "all"), (92, "92"), (" 92 ", "92"), (0.1, "1/10")])
def test_canonical_spec(spec, canonical):
    assert canonical_spec(spec) == canonical


@pytest.mark.parametrize("spec, message", [
    ("1/0", "denominator is 0"), ("2/1", r"\(0, 1\]"), (0, "at least 1"), ("0", "at least 1"), (-3, "at least 1"),
    (1.5, r"\(0, 1\]"), (0.0, r"\(0, 1\]"), ("-1/4", r"\(0, 1\]"), ("half", "not a ratio"), ("1/2/3", "not a ratio"),
    (True, "ratio"), (None, "expected"), (float("nan"), r"\(0, 1\]"),
])
def test_bad_specs_raise_config_error(spec, message):
    with pytest.raises(ConfigError, match=message):
        count_labelled(spec, 100)


def test_count_above_dataset_size():
    with pytest.raises(ConfigError, match="more labelled images than the 100"):
        make_split(NAMES, 101, seed=0)


def test_make_split_is_deterministic_disjoint_and_nested():
    a, b = make_split(NAMES, "1/8", seed=3), make_split(list(reversed(NAMES)), "1/8", seed=3)
    assert a == b and len(a.labelled) == 13 and len(a.unlabelled) == 87
    assert set(a.labelled).isdisjoint(a.unlabelled) and sorted(a.labelled + a.unlabelled) == NAMES
    assert a.spec == "1/8" and a.seed == 3 and a.labelled == sorted(a.labelled)
    assert make_split(NAMES, "1/8", seed=4).labelled != a.labelled
    assert set(make_split(NAMES, "1/16", seed=3).labelled) < set(a.labelled)  # same seed: smaller set inside larger
    assert make_split(NAMES[:2], "1/16", seed=0).labelled  # at least one labelled image


def test_make_split_rejects_bad_names_and_seed():
    with pytest.raises(DataError, match="empty"):
        make_split([], "1/2", seed=0)
    with pytest.raises(DataError, match="not unique: b"):
        make_split(["a", "b", "b"], "1/2", seed=0)
    with pytest.raises(ConfigError, match="seed"):
        make_split(NAMES, "1/2", seed="0")


def test_save_and_load_round_trip(tmp_path):
    split = make_split(NAMES, "1/4", seed=1)
    path = tmp_path / "runs" / "split.json"
    save_split(path, split)
    assert [p.name for p in path.parent.iterdir()] == ["split.json"]  # no temporary file left behind
    assert json.loads(path.read_text())["num_images"] == 100
    assert load_split(path, NAMES) == split


def test_load_split_validates(tmp_path):
    path = tmp_path / "split.json"
    split = make_split(NAMES, "1/4", seed=1)
    save_split(path, split)
    first = ", ".join(split.labelled[:5])
    with pytest.raises(DataError, match=rf"split\.json: 25 name\(s\) not in the dataset, first: {first} "):
        load_split(path, split.unlabelled)  # a dataset without the labelled images
    with pytest.raises(DataError, match="split file not found"):
        load_split(tmp_path / "missing.json", NAMES)
    for bad, message in [("{not json", "cannot read"), ('{"labelled": []}', "'labelled' list is empty"),
                         ('{"labelled": "img_0001"}', "'labelled' must be a list"),
                         ('{"labelled": ["img_0001"], "unlabelled": ["img_0001"]}', "both labelled and unlabelled")]:
        path.write_text(bad)
        with pytest.raises(DataError, match=message) as err:
            load_split(path, NAMES)
        assert str(path) in str(err.value)


def test_load_split_reports_first_missing_names(tmp_path):
    path = tmp_path / "split.json"
    save_split(path, Split(["img_0001", "gone_a"], ["img_0002", "gone_b"], 0, "2"))
    with pytest.raises(DataError, match=r"split\.json: 2 name\(s\) not in the dataset, first: gone_a, gone_b"):
        load_split(path, NAMES)


def test_resolve_split_creates_then_reuses(tmp_path):
    path = tmp_path / "split.json"
    first = resolve_split(path, NAMES, "1/8", seed=0)
    assert path.is_file() and first == make_split(NAMES, "1/8", seed=0)
    data = json.loads(path.read_text())
    data["labelled"], data["unlabelled"] = data["labelled"][:1], data["unlabelled"]  # the file wins when reused
    path.write_text(json.dumps(data))
    again = resolve_split(path, NAMES, 0.125, seed=0)
    assert again.labelled == first.labelled[:1]
    assert resolve_split(None, NAMES, "1/8", seed=0) == first  # no file: made in memory only


@pytest.mark.parametrize("labelled, seed", [("1/16", 0), ("1/8", 5)])
def test_resolve_split_refuses_mismatch(tmp_path, labelled, seed):
    path = tmp_path / "split.json"
    resolve_split(path, NAMES, "1/8", seed=0)
    with pytest.raises(ConfigError, match=r"split\.json holds the split labelled=1/8 seed=0, but labelled="):
        resolve_split(path, NAMES, labelled, seed=seed)


def test_resolve_split_uses_hand_made_file(tmp_path):
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"labelled": ["img_0007"]}))
    split = resolve_split(path, NAMES, "1/2", seed=9)
    assert split.labelled == ["img_0007"] and split.unlabelled == [] and split.spec == "custom"
