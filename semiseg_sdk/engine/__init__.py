"""The training engine: one loop, evaluation, metrics, checkpoints.

Names are resolved lazily so that low-level modules (``engine.atomic``) can be imported from anywhere without
pulling in the trainer.
"""
import importlib

_EXPORTS = {
    "Trainer": "trainer", "train": "trainer", "evaluate": "evaluator", "ConfusionMatrix": "metrics",
    "format_table": "metrics", "metrics_from_confusion": "metrics", "load_checkpoint": "checkpoint",
    "load_inference_model": "checkpoint", "save_checkpoint": "checkpoint",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
