"""Datasets by name: ``build_dataset("synthetic-driving", split="train", ...)``."""
from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, List, Mapping

from ..errors import ConfigError, did_you_mean
from ..registry import Registry
from .base import SegmentationDataset

DATASETS: Registry[Callable[..., SegmentationDataset]] = Registry("dataset")


def register_dataset(name: str):
    """Decorator registering a dataset constructor ``fn(split: str, **kwargs) -> SegmentationDataset``."""
    return DATASETS.register(name)


def list_datasets() -> List[str]:
    """Names of the registered datasets."""
    return sorted(DATASETS.names())


def build_dataset(name: str, split: str = "train", **kwargs: Any) -> SegmentationDataset:
    """Build a registered dataset by name for a split ("train", "val" or "test"); arguments it does not take, or
    required ones missing, are a ConfigError naming them (checked before the constructor runs)."""
    fn = DATASETS.get(name)
    check_arguments(name, fn, {"split": split, **kwargs})
    return fn(split=split, **kwargs)


def check_arguments(name: str, fn: Callable[..., Any], kwargs: Dict[str, Any]) -> None:
    """ConfigError when ``fn`` does not accept ``kwargs`` (unknown names, with the closest valid one) or lacks one."""
    params = inspect.signature(fn).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    known = [n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    unknown = [k for k in kwargs if k not in known]
    if unknown:
        hint = did_you_mean(unknown[0], known)
        valid = ", ".join(k for k in known if k not in ("split", "root"))
        raise ConfigError(f"--data_args: dataset {name!r} takes no argument {unknown[0]!r}{hint} (it takes: {valid})")
    missing = [n for n, p in params.items() if p.default is p.empty and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
               and n not in kwargs]
    if missing == ["root"]:
        raise ConfigError(f"--data {name} reads files: pass --data_root DIR (the folder that holds them)")
    if missing:
        raise ConfigError(f"--data_args: dataset {name!r} needs {', '.join(missing)}")


def run_dataset_kwargs(run_cfg: Mapping[str, Any]) -> Dict[str, Any]:
    """``build_dataset`` keyword arguments of a run's ``config.json``: its ``data_args`` plus ``root`` when it had a
    ``data_root``."""
    kwargs = dict(run_cfg.get("data_args") or {})
    if run_cfg.get("data_root") is not None:
        kwargs["root"] = run_cfg["data_root"]
    return kwargs
