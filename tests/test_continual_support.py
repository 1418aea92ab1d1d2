"""Builders shared by the continual-loop tests (this module holds no tests).

A tiny source run (fcn + tiny encoder on 32x64 synthetic day scenes) and a store initialised from it are built
once per test session in a temporary folder; each test copies the store it needs into its own tmp_path.
"""
from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from pathlib import Path
from typing import List, Sequence

import cv2
import numpy as np

from semiseg_sdk.config import TrainConfig
from semiseg_sdk.continual import GatePolicy, init_store
from semiseg_sdk.data import build_dataset

SIZE = (32, 64)
DATA_ARGS = {"length": 16, "size": list(SIZE)}
HOLDOUT = "synthetic-driving:val,length=6,size=32x64"
PROBE = "synthetic-driving:val,domain=fog,length=6,size=32x64"
# a gate that passes anything: for tests of the mechanics (crashes, promotion), not of the decision
LENIENT = GatePolicy(tolerance=100.0, collapse_ratio=0.0, collapse_min=100.0, collapse_floor=0.0, max_drift=None,
                     probe_tolerance=None)
# fast fine-tuning for tests: 6 steps, resumable checkpoint every 3
ADAPT = {"steps": 6, "checkpoint_every": 3, "batch_size": 2, "field_batch_size": 2, "bn_batches": 2}


@functools.lru_cache(maxsize=None)
def _session_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="semiseg-continual-tests-"))
    atexit.register(shutil.rmtree, path, True)
    return path


@functools.lru_cache(maxsize=None)
def source_run() -> Path:
    """A supervised run on 8 labelled day images (40 steps): good enough that damaging it is measurable."""
    from semiseg_sdk.engine import Trainer

    cfg = TrainConfig(data="synthetic-driving", data_args=DATA_ARGS, labelled="1/2", model="fcn", encoder="tiny",
                      steps=40, batch_size=4, crop_size=(32, 32), eval_every=40, eval_batch_size=8, log_every=20,
                      num_workers=0, out=str(_session_dir()), name="source", progress=False, lr=0.05)
    Trainer(cfg).fit()
    return _session_dir() / "source"


@functools.lru_cache(maxsize=None)
def base_store(lenient: bool = True) -> Path:
    """A store with v0001 = :func:`source_run` (holdout: day val, probe: fog val)."""
    path = _session_dir() / ("store-lenient" if lenient else "store-default")
    init_store(path, source_run(), HOLDOUT, PROBE, policy=LENIENT if lenient else GatePolicy(), device="cpu",
                  verbose=False)
    return path


def copy_store(dst: Path, lenient: bool = True) -> Path:
    """A private copy of the base store."""
    shutil.copytree(base_store(lenient), dst)
    return dst


def write_field_images(folder: Path, count: int, start: int = 0, domain: str = "fog", ext: str = ".png") -> List[Path]:
    """``count`` unlabelled frames of the ``test`` split (never in any labelled set) written as image files."""
    folder.mkdir(parents=True, exist_ok=True)
    ds = build_dataset("synthetic-driving", split="test", length=start + count, size=SIZE, domain=domain)
    paths = []
    for i in range(start, start + count):
        rgb = ds[i]["image"].permute(1, 2, 0).numpy()
        path = folder / f"frame_{i:04d}{ext}"
        assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        paths.append(path)
    return paths


def write_gray(path: Path, h: int, w: int, value: int = 90, noise: int = 0, seed: int = 0) -> Path:
    """A gray image, constant or with uniform noise of amplitude ``noise``."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), value, np.int16) + (rng.integers(-noise, noise + 1, (h, w, 3)) if noise else 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.clip(img, 0, 255).astype(np.uint8))
    return path


def manifest_shas(store: Path) -> List[str]:
    """sha256 of every image listed as new by any version's manifest (with repetitions, to catch double counts)."""
    out: List[str] = []
    for m in sorted(store.glob("v*/manifest.json")):
        out += [e["sha256"] for e in json.loads(m.read_text())["new_images"]]
    return out


def sha_of(paths: Sequence[Path]) -> set:
    """Content hashes of files."""
    from semiseg_sdk.continual.ingest import sha256_file

    return {sha256_file(p) for p in paths}
