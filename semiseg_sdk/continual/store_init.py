"""``init``: a store's first version from a trained run: its checkpoint, gated on the holdout (and probe) set, with
the replay set defaulting to the source run's labelled training images (read from its ``config.json`` and
``split.json``); the held-out sets may share no item with the replay set.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ..errors import ConfigError
from ..models.checkpoint import config_scoring, load_inference_model
from ..utils.atomic import write_json_atomic
from ..utils.precision import resolve_device
from .gate import GatePolicy, evaluate_sets, format_gate
from .labelled_sets import LabelledSetRef, check_disjoint, open_labelled_set, parse_labelled_set
from .store import ModelStore, STORE_FORMAT, StoreError, now_iso, write_version


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


FIRST = "v0001"


def init_store(store: str | Path, source: str | Path, holdout: Any, probe: Any = None, replay: Any = None,
                  policy: GatePolicy = GatePolicy(), device: str = "auto", verbose: bool = True) -> Dict[str, Any]:
    """Create the store ``store`` with v0001 = the model of ``source`` (a run folder or checkpoint).

    ``holdout`` / ``probe`` / ``replay`` are labelled-set references (see labelled_sets.py). ``replay`` defaults to
    the source run's labelled training images; it must not share an image with the holdout or probe set.
    """
    reg = ModelStore(store)
    if reg.is_store():
        raise StoreError(f"{reg.root}: already a store (current {reg.current()}); use `run`, `promote`, `rollback`")
    _check_reusable(reg)
    src = Path(source)
    model, ckpt = load_inference_model(src)
    num_classes = len(ckpt["dataset"]["classes"])
    run_dir, run_cfg, labelled = find_source_run(src, ckpt)
    if replay is not None:
        replay_ref = parse_labelled_set(replay, "--replay")
    elif run_dir is not None:
        replay_ref = replay_from_run(run_dir, run_cfg, labelled)
    else:
        raise ConfigError(f"{src}: cannot find the source run's config.json + split.json (its labelled training "
                          "set is replayed during refreshes); pass --replay DATASET:SPLIT or a folder")
    holdout_ref = parse_labelled_set(holdout, "--holdout")
    probe_ref = parse_labelled_set(probe, "--probe") if probe is not None else None
    replay_set = open_labelled_set(replay_ref, num_classes, "replay set")
    sets = {"holdout": open_labelled_set(holdout_ref, num_classes, "holdout set")}
    if probe_ref is not None:
        sets["probe"] = open_labelled_set(probe_ref, num_classes, "probe set")
    for name, s in sets.items():
        check_disjoint(replay_set, s, f"{name} set")

    mode, window, _ = config_scoring(run_cfg or {})  # the gate scores as the source run was scored
    scoring = {"mode": mode, "window": list(window)}
    with reg.locked():
        metrics = evaluate_sets(model, sets, resolve_device(device), scoring=scoring)
        decision = {"passed": True, "reasons": [], "checks": {}, "policy": policy.to_dict(),
                    "note": "initial version: gated against itself"}
        text = format_gate(f"{FIRST}: initial version from {src}", metrics, metrics, decision)
        settings = {
            "format": STORE_FORMAT, "created": now_iso(), "classes": list(ckpt["dataset"]["classes"]),
            "holdout": holdout_ref.to_dict(), "probe": probe_ref.to_dict() if probe_ref else None,
            "replay": replay_set.ref.to_dict(), "gate": policy.to_dict(), "scoring": scoring,
            "source": {"checkpoint": str(Path(ckpt["path"]).resolve()), "run_dir": str(run_dir) if run_dir else None,
                       "config": run_cfg},
        }
        record = write_version(
            reg, FIRST, parent=None, kind="init", checkpoint=Path(ckpt["path"]),
            gate={"baseline": None, "current": metrics, "candidate": metrics, "decision": decision, "text": text},
            gate_text=text, manifest={"version": FIRST, "parent": None, "new_images": [], "trained_on": []},
            config={**(run_cfg or {}), "continual": {"source": settings["source"]}}, verbose=verbose)
        if record["status"] != "passed":
            raise StoreError(f"{reg.version_dir(FIRST)}: the source model cannot be served: "
                                + "; ".join(record["gate"]["reasons"]))
        write_json_atomic(reg.settings_path, settings)
        reg.record("init", version=FIRST, source=settings["source"]["checkpoint"], holdout=holdout_ref.describe(),
                   probe=probe_ref.describe() if probe_ref else None, replay=replay_set.ref.describe())
        reg.set_current(FIRST, "promote", reason="initial version", holdout_miou=metrics["holdout"]["miou"])
    if verbose:
        print(text, end="")
        print(f"store {reg.root}: current -> {FIRST}")
    return {"store": str(reg.root), "current": FIRST, "holdout_miou": metrics["holdout"]["miou"],
            "probe_miou": metrics["probe"]["miou"] if "probe" in metrics else None,
            "replay_images": len(replay_set), "holdout_images": len(sets["holdout"]), "onnx": str(reg.version_dir(FIRST) / "model.onnx"),
            "files": record["files"]}


def _check_reusable(reg: ModelStore) -> None:
    """An absent or empty folder, or the leftovers of a killed init (v0001, hidden build folders, lock, history)."""
    if not reg.root.exists():
        return
    if not reg.root.is_dir():
        raise StoreError(f"{reg.root}: exists and is not a folder")
    leftovers = {FIRST, ".lock", "history.jsonl", "current.json"}
    others = [p.name for p in reg.root.iterdir() if p.name not in leftovers and not p.name.startswith(f".{FIRST}.tmp-")]
    if others:
        raise StoreError(f"{reg.root}: folder is not empty ({', '.join(sorted(others)[:5])}); choose a new folder")
    for name in (FIRST, "current.json", "history.jsonl"):
        p = reg.root / name
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    reg.clean_stale_builds()
