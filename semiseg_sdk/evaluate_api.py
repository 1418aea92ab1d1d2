"""Evaluate a saved model (run folder or checkpoint) on any dataset split."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

from .data import build_dataset
from .engine.atomic import write_json_atomic
from .engine.checkpoint import load_inference_model
from .engine.confusion_plot import save_confusion
from .engine.evaluator import evaluate
from .engine.metrics import format_table
from .engine.precision import resolve_device
from .errors import ConfigError


def evaluate_checkpoint(
    checkpoint: str, data: Optional[str] = None, data_root: Optional[str] = None, split: str = "val", mode: str = "auto",
    window: int = 512, device: str = "auto", data_args: Optional[dict] = None, save: Optional[str] = None,
) -> Dict[str, Any]:
    """Load the inference network of ``checkpoint`` and evaluate it; returns metrics plus a printable ``table``.

    The dataset defaults to the one the checkpoint was trained on (with that run's dataset arguments).
    """
    dev = resolve_device(device)
    model, ckpt = load_inference_model(checkpoint, map_location="cpu")
    model.to(dev)
    kwargs = dict(data_args or {})
    if data is None:
        data, kwargs = training_dataset(ckpt, kwargs)
    if data_root is not None:
        kwargs["root"] = data_root
    ds = build_dataset(data, split=split, **kwargs)
    if ds.info.num_classes != ckpt["dataset"]["classes"].__len__():
        raise ConfigError(f"{data}: {ds.info.num_classes} classes but the checkpoint predicts {len(ckpt['dataset']['classes'])}")
    if mode == "auto":
        h, w = ds[0]["image"].shape[-2:]
        mode = "slide" if max(h, w) > 1024 else "whole"
    res = evaluate(model, ds, ds.info.num_classes, ds.info.classes, dev, mode=mode, window=(window, window), progress=True)
    confusion = res.pop("confusion")
    res.update(mode=mode, images=len(ds), table=format_table(res))
    if save:
        write_json_atomic(Path(save) / "metrics.json", {k: v for k, v in res.items() if k != "table"})
        save_confusion(confusion, list(ds.info.classes), save)
    return res


def training_dataset(ckpt: Dict[str, Any], data_args: Dict[str, Any]) -> tuple:
    """``(registered dataset name, build_dataset kwargs)`` a checkpoint was trained on, from its run's config.json:
    a ``folder`` run is rebuilt as ``folder`` with its root (the checkpoint only records the set's display name,
    e.g. ``dubai_aerial``). ``data_args``, when given, replace the run's dataset arguments (its root stays).
    Without a run config the checkpoint's dataset name is used; raises ConfigError when that is no registered
    dataset."""
    from .data import DATASETS

    run_cfg = run_config(ckpt)
    if run_cfg.get("data"):
        kwargs = run_dataset_kwargs(run_cfg)
        if data_args:
            kwargs = {**data_args, **({"root": kwargs["root"]} if "root" in kwargs else {})}
        return run_cfg["data"], kwargs
    name = ckpt["dataset"]["name"]
    if name not in DATASETS.names():
        where = ckpt.get("path") or "the checkpoint"
        raise ConfigError(f"{where}: trained on {name!r}, which is no registered dataset, and no run config.json "
                          "was found next to it; pass --data (e.g. folder) and --data_root")
    return name, dict(data_args)


def run_config(ckpt: Dict[str, Any]) -> Dict[str, Any]:
    """The ``config.json`` of the run a loaded checkpoint came from ({} when there is none): looked up next to the
    checkpoint file first (a moved run folder), then in its recorded ``run_dir``."""
    import json

    folders = [Path(ckpt["path"]).parent] if ckpt.get("path") else []
    if ckpt.get("run_dir"):
        folders.append(Path(ckpt["run_dir"]))
    for folder in folders:
        try:
            if (folder / "config.json").is_file():
                return json.loads((folder / "config.json").read_text())
        except (OSError, ValueError):
            continue
    return {}


def run_dataset_kwargs(run_cfg: Dict[str, Any]) -> Dict[str, Any]:
    """``build_dataset`` keyword arguments of a run's ``config.json``: its ``data_args`` plus ``root`` when it had a
    ``data_root``."""
    kwargs = dict(run_cfg.get("data_args") or {})
    if run_cfg.get("data_root") is not None:
        kwargs["root"] = run_cfg["data_root"]
    return kwargs
