"""semiseg-sdk: semi-supervised semantic segmentation, from few labels to a served model.

The entry points, importable from the top (each loads its module on first use, so ``import semiseg_sdk`` is cheap):

    from semiseg_sdk import TrainConfig, train, build_model, load_inference_model
    result = train(TrainConfig(data="synthetic-aerial", labelled="1/8", method="unimatch", steps=1000))
    model, ckpt = load_inference_model(result["run_dir"])

Exporting is ``semiseg_export.export_checkpoint``; the torch-free runtime is ``semiseg_serving.Segmenter``.
"""
from __future__ import annotations

import importlib
from typing import Any

try:  # one source: the package metadata (pyproject.toml)
    from importlib.metadata import PackageNotFoundError, version as _version

    __version__ = _version("semiseg-sdk")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "unknown"

_ENTRY_POINTS = {
    "TrainConfig": "config", "resolve_config": "config",
    "train": "engine", "Trainer": "engine", "HookBase": "engine", "evaluate": "engine", "evaluate_checkpoint": "engine",
    "build_model": "models", "load_inference_model": "models", "load_checkpoint": "models", "list_models": "models",
    "list_encoders": "models", "list_methods": "methods", "list_datasets": "data", "build_dataset": "data",
    "list_recipes": "recipes",
}
__all__ = sorted(_ENTRY_POINTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _ENTRY_POINTS:
        value = getattr(importlib.import_module(f"{__name__}.{_ENTRY_POINTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))
