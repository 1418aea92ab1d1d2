"""Ingest: content de-duplication, quarantine with reasons, nothing lost, copy (never move) into the store."""
from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from semiseg_sdk.continual import ModelStore, RunOptions
from semiseg_sdk.continual.ingest import ImageChecks, inspect_image
from semiseg_sdk.continual.ingest import learned_images, read_quarantine, scan_incoming, sha256_file
from semiseg_sdk.continual.store import Journal
from semiseg_sdk.continual.adapt import AdaptOptions
from semiseg_sdk.continual.refresh import run_refresh, start_refresh
from test_continual_support import copy_store, write_field_images, write_gray

OPTS = RunOptions(min_images=2, settle_seconds=0, progress=False, verbose=False)


def _bad_files(folder):
    """One file per quarantine reason; returns {path: expected code}."""
    folder.mkdir(parents=True, exist_ok=True)
    good = write_gray(folder / "src.png", 40, 40, noise=60)
    corrupt = folder / "corrupt.jpg"
    corrupt.write_bytes(b"definitely not a jpeg " * 4)
    truncated = folder / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:-30])  # cut inside the last chunks: no IEND
    good.unlink()
    return {corrupt: "unreadable", truncated: "truncated", write_gray(folder / "tiny.png", 20, 64, noise=60): "too_small",
            write_gray(folder / "blank.png", 40, 40, value=17): "blank", folder / "empty.png": "unreadable"}


def test_image_checks_give_each_reason(tmp_path):
    files = _bad_files(tmp_path)
    (tmp_path / "empty.png").write_bytes(b"")
    for path, code in files.items():
        assert inspect_image(path).code == code, path.name
    ok = inspect_image(write_gray(tmp_path / "noisy.png", 32, 48, noise=20))
    assert ok.ok and (ok.width, ok.height) == (48, 32)
    assert inspect_image(write_gray(tmp_path / "flat.png", 40, 40, noise=1), ImageChecks(blank_std=2.0)).code == "blank"


def test_same_bytes_under_two_names_count_once_and_learned_images_are_skipped(tmp_path):
    reg = ModelStore(copy_store(tmp_path / "reg"))
    inc = tmp_path / "incoming"
    a, b, c = write_field_images(inc, 3)
    shutil.copy(a, inc / "copy_of_a.png")
    (inc / "sub").mkdir()
    shutil.copy(b, inc / "sub" / "b_again.png")
    plan = scan_incoming(inc, learned_images(reg), set(), settle_seconds=0)
    assert len(plan.new) == 3 and plan.summary()["new_files"] == 5
    by_sha = {e["sha256"]: sorted(e["sources"]) for e in plan.new}
    assert by_sha[sha256_file(a)] == sorted([str(a), str(inc / "copy_of_a.png")])

    journal, _ = start_refresh(reg, inc, AdaptOptions(), OPTS, None)
    assert sorted(e["sha256"] for e in journal.images) == sorted(by_sha)
    assert sorted(p.name for p in reg.store.iterdir()) == sorted(f"{s}.png" for s in by_sha)
    assert all(p.exists() for p in (a, b, c)), "ingest copies, it never moves the user's files"
    # the journal's images count as learned: a second scan (a new name of known bytes included) adds nothing
    shutil.copy(c, inc / "c_renamed.png")
    again = scan_incoming(inc, learned_images(reg, Journal.load(reg).images), set(), settle_seconds=0)
    assert again.new == [] and len(again.known) == 6
    assert {k["where"] for k in again.known} == {"pending"}


def test_quarantine_records_every_reason_and_nothing_is_lost(tmp_path):
    reg = ModelStore(copy_store(tmp_path / "reg"))
    inc = tmp_path / "incoming"
    good = write_field_images(inc, 3)
    shutil.copy(good[0], inc / "dup.png")
    expected = _bad_files(inc)
    (inc / "empty.png").write_bytes(b"")
    (inc / "notes.txt").write_text("sidecar, not an image")
    recent = write_field_images(inc / "uploading", 1, start=10)[0]
    old = time.time() - 60
    for p in inc.rglob("*"):
        if p.is_file() and p != recent:
            os.utime(p, (old, old))

    opts = RunOptions(min_images=2, settle_seconds=5, progress=False, verbose=False)
    journal, summary = start_refresh(reg, inc, AdaptOptions(), opts, None)
    reasons = read_quarantine(reg)
    assert sorted(r["code"] for r in reasons.values()) == sorted(expected.values())
    for path, code in expected.items():
        rec = reasons[sha256_file(path)]
        assert rec["code"] == code and str(path) in rec["sources"] and rec["detail"]
        assert rec["file"] is None if code == "unreadable" and path.stat().st_size == 0 else (reg.root / rec["file"]).is_file()
    assert summary["ignored"] == 1 and summary["waiting"] == 1

    # every incoming image is in the journal (the manifest to be), in quarantine, or waiting: nothing lost
    manifest = {p for e in journal.images for p in e["sources"]}
    quarantined = {p for r in reasons.values() for p in r["sources"]}
    waiting = {str(recent)}
    images = {str(p) for p in inc.rglob("*") if p.is_file() and p.suffix != ".txt"}
    assert manifest | quarantined | waiting == images
    assert not (manifest & quarantined) and not (manifest & waiting) and not (quarantined & waiting)
    assert len(journal.images) == 3  # dup.png counted once


def test_too_few_new_images_wait_and_remove_ingested_is_explicit(tmp_path):
    reg = ModelStore(copy_store(tmp_path / "reg"))
    inc = tmp_path / "incoming"
    first = write_field_images(inc, 2)
    waiting = run_refresh(reg.root, inc, AdaptOptions(), RunOptions(min_images=3, settle_seconds=0, progress=False,
                                                                      verbose=False))
    assert waiting["status"] == "waiting" and waiting["new"] == 2
    assert not reg.store.exists() and Journal.load(reg) is None  # nothing stored, nothing pending
    more = write_field_images(inc, 2, start=2)
    opts = RunOptions(min_images=3, settle_seconds=0, remove_ingested=True, progress=False, verbose=False)
    journal, _ = start_refresh(reg, inc, AdaptOptions(), opts, None)
    assert len(journal.images) == 4 and journal.data["removed_from_incoming"] == 4
    assert not any(p.exists() for p in first + more) and len(list(reg.store.iterdir())) == 4
    assert json.loads(Journal.path_of(reg).read_text())["phase"] == "ingested"


def test_incoming_folder_must_exist(tmp_path):
    reg = ModelStore(copy_store(tmp_path / "reg"))
    with pytest.raises(Exception, match="incoming folder not found"):
        run_refresh(reg.root, tmp_path / "nope", AdaptOptions(), OPTS)


def test_links_pipes_and_linked_folders_are_quarantined_by_name_and_never_read(tmp_path):
    """A link in the incoming folder to a readable image elsewhere (or to a folder of them), or a named pipe, is
    refused with a reason; neither the link's target nor a pipe is opened, and no byte of them reaches the store."""
    reg = ModelStore(copy_store(tmp_path / "reg"))
    inc = tmp_path / "incoming"
    good = write_field_images(inc, 2)
    outside = write_field_images(tmp_path / "private", 2, start=20)  # valid images the links point at
    os.symlink(outside[0], inc / "link.png")
    os.symlink(tmp_path / "private", inc / "linked_folder")
    os.mkfifo(inc / "pipe.png")  # opening it for reading would block the ingest for ever
    old = time.time() - 60
    for p in good + outside:
        os.utime(p, (old, old))

    opts = RunOptions(min_images=1, settle_seconds=5, progress=False, verbose=False)
    journal, summary = start_refresh(reg, inc, AdaptOptions(), opts, None)
    reasons = read_quarantine(reg)
    refused = {src: r for r in reasons.values() for src in r["sources"]}
    assert set(refused) == {str(inc / "link.png"), str(inc / "linked_folder"), str(inc / "pipe.png")}
    assert all(r["code"] == "not-a-regular-file" and r["file"] is None for r in refused.values())
    assert "symbolic link" in refused[str(inc / "link.png")]["detail"]
    stored = {e["sha256"] for e in journal.images}
    assert stored == {sha256_file(p) for p in good}
    assert not ({sha256_file(p) for p in outside} & stored)
    copies = {p.name for p in (reg.root / "quarantine").iterdir()} | {p.name for p in (reg.root / "field").iterdir()}
    assert not any(sha256_file(p) in name for p in outside for name in copies)
