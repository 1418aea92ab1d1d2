"""Find the run a checkpoint came from, and its labelled training set (the replay set of the continual loop).

A run folder written by the trainer holds ``config.json`` (the TrainConfig) and ``split.json`` (which training
images were labelled). For ``--from RUN`` that folder is used; for ``--from FILE.pt`` the file's folder, then the
checkpoint's recorded ``run_dir``. The replay set is then ``DATA:train`` with the run's dataset arguments,
restricted to the labelled names of the split.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ..errors import ConfigError
from .labelled_sets import LabelledSetRef


def find_source_run(source: Path, ckpt: Mapping[str, Any]) -> Tuple[Optional[Path], Optional[Dict[str, Any]], Optional[List[str]]]:
    """``(run folder, its config, its labelled names)``; Nones when no folder with config.json + split.json exists."""
    candidates = [source] if source.is_dir() else [source.parent]
    if ckpt.get("run_dir"):
        candidates.append(Path(str(ckpt["run_dir"])))
    for folder in candidates:
        cfg_path, split_path = folder / "config.json", folder / "split.json"
        if cfg_path.is_file() and split_path.is_file():
            try:
                cfg = json.loads(cfg_path.read_text())
                labelled = list(json.loads(split_path.read_text())["labelled"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"{folder}: cannot read the source run's config.json/split.json ({exc})") from exc
            return folder, cfg, labelled
    return None, None, None


def replay_from_run(run_dir: Path, cfg: Mapping[str, Any], labelled: List[str]) -> LabelledSetRef:
    """The labelled training images of a run as a labelled-set reference."""
    if "data" not in cfg:
        raise ConfigError(f"{run_dir / 'config.json'}: no 'data' field; pass --replay explicitly")
    if not labelled:
        raise ConfigError(f"{run_dir / 'split.json'}: the run has no labelled images to replay; pass --replay")
    args = dict(cfg.get("data_args") or {})
    if cfg.get("data_root"):
        args["root"] = str(Path(str(cfg["data_root"])).expanduser().resolve())
    return LabelledSetRef(str(cfg["data"]), "train", args, tuple(labelled))
