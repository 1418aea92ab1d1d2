"""``init``: a new registry whose v0001 is a trained model, exported, evaluated, recorded and made current.

Order (crash-safe): v0001 is built (hidden folder, renamed when complete), then registry.json, then ``current``
and the history. A folder holding only leftovers of an ``init`` that was killed (no registry.json) is reused:
``init`` can simply be run again; ``run`` also completes an init killed after registry.json.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Dict

from ..utils.atomic import write_json_atomic
from ..models.checkpoint import load_inference_model
from ..utils.precision import resolve_device
from ..errors import ConfigError
from .errors import RegistryError
from .gate import GatePolicy, evaluate_sets, format_gate
from .history_log import now_iso
from .labelled_sets import check_disjoint, open_labelled_set, parse_labelled_set
from .source_run import find_source_run, replay_from_run
from .version_builder import write_version
from .version_registry import FORMAT, ModelRegistry

FIRST = "v0001"


def init_registry(registry: str | Path, source: str | Path, holdout: Any, probe: Any = None, replay: Any = None,
                  policy: GatePolicy = GatePolicy(), device: str = "auto", verbose: bool = True) -> Dict[str, Any]:
    """Create the registry ``registry`` with v0001 = the model of ``source`` (a run folder or checkpoint).

    ``holdout`` / ``probe`` / ``replay`` are labelled-set references (see labelled_sets.py). ``replay`` defaults to
    the source run's labelled training images; it must not share an image with the holdout or probe set.
    """
    reg = ModelRegistry(registry)
    if reg.is_registry():
        raise RegistryError(f"{reg.root}: already a registry (current {reg.current()}); use `run`, `promote`, `rollback`")
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

    with reg.locked():
        metrics = evaluate_sets(model, sets, resolve_device(device))
        decision = {"passed": True, "reasons": [], "checks": {}, "policy": policy.to_dict(),
                    "note": "initial version: gated against itself"}
        text = format_gate(f"{FIRST}: initial version from {src}", metrics, metrics, decision)
        settings = {
            "format": FORMAT, "created": now_iso(), "classes": list(ckpt["dataset"]["classes"]),
            "holdout": holdout_ref.to_dict(), "probe": probe_ref.to_dict() if probe_ref else None,
            "replay": replay_set.ref.to_dict(), "gate": policy.to_dict(),
            "source": {"checkpoint": str(Path(ckpt["path"]).resolve()), "run_dir": str(run_dir) if run_dir else None,
                       "config": run_cfg},
        }
        record = write_version(
            reg, FIRST, parent=None, kind="init", checkpoint=Path(ckpt["path"]),
            gate={"baseline": None, "current": metrics, "candidate": metrics, "decision": decision, "text": text},
            gate_text=text, manifest={"version": FIRST, "parent": None, "new_images": [], "trained_on": []},
            config={**(run_cfg or {}), "continual": {"source": settings["source"]}}, verbose=verbose)
        if record["status"] != "passed":
            raise RegistryError(f"{reg.version_dir(FIRST)}: the source model cannot be served: "
                                + "; ".join(record["gate"]["reasons"]))
        write_json_atomic(reg.settings_path, settings)
        reg.record("init", version=FIRST, source=settings["source"]["checkpoint"], holdout=holdout_ref.describe(),
                   probe=probe_ref.describe() if probe_ref else None, replay=replay_set.ref.describe())
        reg.set_current(FIRST, "promote", reason="initial version", holdout_miou=metrics["holdout"]["miou"])
    if verbose:
        print(text, end="")
        print(f"registry {reg.root}: current -> {FIRST}")
    return {"registry": str(reg.root), "current": FIRST, "holdout_miou": metrics["holdout"]["miou"],
            "probe_miou": metrics["probe"]["miou"] if "probe" in metrics else None,
            "replay_images": len(replay_set), "holdout_images": len(sets["holdout"]), "onnx": str(reg.version_dir(FIRST) / "model.onnx"),
            "files": record["files"]}


def _check_reusable(reg: ModelRegistry) -> None:
    """An absent or empty folder, or the leftovers of a killed init (v0001, hidden build folders, lock, history)."""
    if not reg.root.exists():
        return
    if not reg.root.is_dir():
        raise RegistryError(f"{reg.root}: exists and is not a folder")
    leftovers = {FIRST, ".lock", "history.jsonl", "current.json"}
    others = [p.name for p in reg.root.iterdir() if p.name not in leftovers and not p.name.startswith(f".{FIRST}.tmp-")]
    if others:
        raise RegistryError(f"{reg.root}: folder is not empty ({', '.join(sorted(others)[:5])}); choose a new folder")
    for name in (FIRST, "current.json", "history.jsonl"):
        p = reg.root / name
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    reg.clean_stale_builds()
