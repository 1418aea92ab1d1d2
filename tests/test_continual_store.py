"""The continual store: labelled-set references, atomic versions, torn history, lock, promote and rollback."""
from __future__ import annotations

import json

import pytest

from fixtures_data import make_folder_tree
from semiseg_sdk.continual import ModelStore, StoreError, init_store, promote_version, rollback
from semiseg_sdk.continual.cli import ContinualCLI
from semiseg_sdk.continual.store import append_event, read_events
from semiseg_sdk.continual.labelled_sets import LabelledSetRef, check_disjoint, open_labelled_set, parse_labelled_set
from semiseg_sdk.continual.refresh import store_status
from semiseg_sdk.continual.store import write_version
from semiseg_sdk.errors import ConfigError, DataError
from test_continual_support import HOLDOUT, copy_store, source_run


# ---------------------------------------------------------------- labelled-set references
def test_dataset_reference_syntax():
    ref = parse_labelled_set("synthetic-driving:val,domain=fog,length=8,size=32x64,seed=3")
    assert (ref.dataset, ref.split) == ("synthetic-driving", "val")
    assert ref.args == {"domain": "fog", "length": 8, "size": [32, 64], "seed": 3}
    assert parse_labelled_set(ref.describe()) == ref  # the canonical form parses back
    assert parse_labelled_set(["synthetic-driving:val", "length=8"]).args == {"length": 8}  # fire's split at commas
    opened = open_labelled_set(ref, num_classes=10)
    assert len(opened) == 8 and opened.dataset.domain == "fog"


def test_folder_reference_and_its_errors(tmp_path):
    root = make_folder_tree(tmp_path / "set", splits={"train": 2, "val": 3}, size=(8, 8), num_classes=3)
    ref = parse_labelled_set(str(root))
    assert (ref.dataset, ref.split, ref.args["root"]) == ("folder", "val", str(root.resolve()))
    assert parse_labelled_set(f"{root}:train").split == "train"
    assert len(open_labelled_set(ref, num_classes=3)) == 3
    (root / "classes.json").write_text(json.dumps({"classes": ["a", "b", "c"]}))
    with pytest.raises(ConfigError, match="num_classes=10 but .*classes.json lists 3 classes"):
        open_labelled_set(ref, num_classes=10)
    unlabelled = make_folder_tree(tmp_path / "u", splits={"val": 2}, size=(8, 8), with_masks=False)
    with pytest.raises(DataError, match=r"u:val.*has no masks"):
        open_labelled_set(parse_labelled_set(str(unlabelled)), num_classes=3)
    with pytest.raises(ConfigError, match="neither a registered dataset"):
        parse_labelled_set("no-such-set:val")
    with pytest.raises(ConfigError, match="'domain' in .* is not KEY=VALUE"):
        parse_labelled_set("synthetic-driving:val,domain")
    with pytest.raises(ConfigError, match="not an existing folder"):
        parse_labelled_set(str(tmp_path / "missing"))


def test_holdout_overlapping_the_replay_set_is_refused(tmp_path):
    replay = open_labelled_set(LabelledSetRef("synthetic-driving", "train", {"length": 8, "size": [32, 64]},
                                              names=("synthetic-driving/train/000002",)), 10)
    fog_same_scenes = open_labelled_set(parse_labelled_set("synthetic-driving:train,length=4,size=32x64,domain=fog"), 10)
    with pytest.raises(ConfigError, match="shares 1 item"):
        check_disjoint(replay, fog_same_scenes, "holdout set")  # a domain changes the look, not the scene
    check_disjoint(replay, open_labelled_set(parse_labelled_set(HOLDOUT), 10), "holdout set")  # val: disjoint
    with pytest.raises(ConfigError, match="never train on it"):
        init_store(tmp_path / "reg", source_run(), "synthetic-driving:train,length=16,size=32x64", device="cpu",
                      verbose=False)
    assert not (tmp_path / "reg" / "store.json").exists()


# ---------------------------------------------------------------- atomicity, history, lock
def test_half_built_version_is_invisible_and_cleaned(tmp_path):
    reg = ModelStore(copy_store(tmp_path / "reg"))
    with pytest.raises(RuntimeError, match="boom"):
        with reg.building("v0002") as tmp:
            (tmp / "model.pt").write_bytes(b"half")
            raise RuntimeError("boom")
    assert reg.versions() == ["v0001"] and not list(reg.root.glob(".v0002.tmp-*"))
    # a crash leaves the hidden folder behind (no cleanup runs): still invisible, removed by the next writer
    (reg.root / ".v0002.tmp-0badc0de").mkdir()
    (reg.root / ".v0002.tmp-0badc0de" / "version.json").write_text("{}")
    (reg.root / "v0003").mkdir()  # a folder without version.json is not a version either
    assert reg.versions() == ["v0001"] and reg.next_version() == "v0002"
    assert reg.clean_stale_builds() == [".v0002.tmp-0badc0de"]
    assert store_status(str(reg.root))["current"] == "v0001"


def test_torn_history_line_is_tolerated(tmp_path):
    path = tmp_path / "history.jsonl"
    append_event(path, {"event": "init", "version": "v0001"})
    with open(path, "ab") as f:
        f.write(b'{"event": "promote", "vers')  # killed mid-write
    events, skipped = read_events(path)
    assert [e["event"] for e in events] == ["init"] and skipped == 1
    append_event(path, {"event": "rollback", "version": "v0001"})  # not glued to the fragment
    events, skipped = read_events(path)
    assert [e["event"] for e in events] == ["init", "rollback"] and skipped == 1


def test_lock_refuses_a_second_writer(tmp_path):
    reg = ModelStore(tmp_path / "reg")
    with reg.locked():
        with pytest.raises(StoreError, match="another semiseg continual process"):
            with ModelStore(tmp_path / "reg").locked():
                pass
    with reg.locked():  # released
        pass


def test_init_refuses_an_existing_store_and_bad_flags(tmp_path):
    reg = copy_store(tmp_path / "reg")
    with pytest.raises(StoreError, match="already a store"):
        init_store(reg, source_run(), HOLDOUT, verbose=False)
    with pytest.raises(ConfigError, match="--from"):
        ContinualCLI().init(str(tmp_path / "other"), holdout=HOLDOUT)
    with pytest.raises(StoreError, match="not a model store"):
        ContinualCLI().status(str(tmp_path / "nothing"))
    v1 = json.loads((reg / "v0001" / "version.json").read_text())
    assert v1["status"] == "passed" and (reg / "v0001" / "model.onnx").is_file()
    assert json.loads((reg / "current.json").read_text())["version"] == "v0001"


# ---------------------------------------------------------------- promote / rollback
def _add_version(reg: ModelStore, version: str, parent: str, passed: bool) -> None:
    gate = json.loads((reg.version_dir("v0001") / "gate.json").read_text())
    gate["decision"] = {"passed": passed, "reasons": [] if passed else ["holdout mIoU fell 3.00 points"]}
    write_version(reg, version, parent=parent, kind="refresh", checkpoint=reg.version_dir("v0001") / "model.pt",
                  gate=gate, gate_text="test\n", manifest={"new_images": [], "trained_on": []}, config={})
    if passed:
        reg.set_current(version, "promote", reason="test")


def test_rollback_skips_rejected_versions_and_promote_refuses_them(tmp_path):
    reg = ModelStore(copy_store(tmp_path / "reg"))
    _add_version(reg, "v0002", "v0001", passed=True)
    _add_version(reg, "v0003", "v0002", passed=False)
    _add_version(reg, "v0004", "v0002", passed=True)
    assert reg.current() == "v0004" and not (reg.version_dir("v0003") / "model.onnx").exists()
    assert rollback(str(reg.root)) == {"current": "v0002", "previous": "v0004"}
    assert ContinualCLI().rollback(str(reg.root))["current"] == "v0001"
    with pytest.raises(StoreError, match="nothing to roll back to"):
        rollback(str(reg.root))
    with pytest.raises(StoreError, match="the gate rejected this version"):
        promote_version(str(reg.root), "v0003")
    assert reg.current() == "v0001"
    assert ContinualCLI().promote(4, str(reg.root))["current"] == "v0004"  # forward again (an int works too)
    events = [(e["event"], e["version"]) for e in ContinualCLI().history(str(reg.root))]
    assert events[-3:] == [("rollback", "v0002"), ("rollback", "v0001"), ("promote", "v0004")]
    status = store_status(str(reg.root))
    assert [v["status"] for v in status["versions"]] == ["passed", "passed", "rejected", "passed"]


def test_the_gate_scores_as_the_source_run_was_scored(tmp_path):
    """A store records how its source run was scored (windows of its 32-px crop over the 32x64 holdout frames) and
    its gate scores that way; a store without the record keeps the rule it was made with (whole images)."""
    import torch

    from semiseg_sdk.continual.gate import evaluate_sets
    from semiseg_sdk.models import load_inference_model

    reg = copy_store(tmp_path / "reg")
    settings = json.loads((reg / "store.json").read_text())
    assert settings["scoring"] == {"mode": "auto", "window": [32, 32]}
    model = load_inference_model(reg / "v0001" / "model.pt")[0]
    sets = {"holdout": open_labelled_set(parse_labelled_set(HOLDOUT), 10, "holdout set")}
    slid = evaluate_sets(model, sets, torch.device("cpu"), scoring=settings["scoring"])["holdout"]["miou"]
    whole = evaluate_sets(model, sets, torch.device("cpu"))["holdout"]["miou"]
    gate = json.loads((reg / "v0001" / "gate.json").read_text())
    assert gate["candidate"]["holdout"]["miou"] == pytest.approx(slid, abs=1e-12) and slid != pytest.approx(whole)
