"""Datasets by name: ``build_dataset("synthetic-driving", split="train", ...)``."""
from __future__ import annotations

from typing import Any, Callable, Dict, List

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
    """Build a registered dataset by name for a split ("train", "val" or "test")."""
    return DATASETS.get(name)(split=split, **kwargs)


def run_dataset_kwargs(run_cfg: Dict[str, Any]) -> Dict[str, Any]:
    """``build_dataset`` keyword arguments of a run's ``config.json``: its ``data_args`` plus ``root`` when it had a
    ``data_root``."""
    kwargs = dict(run_cfg.get("data_args") or {})
    if run_cfg.get("data_root") is not None:
        kwargs["root"] = run_cfg["data_root"]
    return kwargs
