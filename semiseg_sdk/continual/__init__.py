"""The continual loop: field images -> pseudo-labels -> fine-tune -> gate -> versioned registry (promote/rollback).

    from semiseg_sdk.continual import init_registry, run_refresh
    init_registry("fleet", "runs/day", holdout="synthetic-driving:val")
    run_refresh("fleet", "field/")                 # one refresh; see refresh.py for the crash-safety design

Importing this package registers the ``field-adapt`` training method.
"""
from . import field_adapt  # noqa: F401  (registers the "field-adapt" method)
from .errors import RefreshInterrupted, RegistryError
from .gate import GatePolicy
from .init_registry import init_registry
from .labelled_sets import LabelledSetRef, parse_labelled_set
from .options import AdaptOptions, RunOptions
from .refresh import run_refresh
from .registry_ops import promote_version, registry_history, registry_status, rollback
from .version_registry import ModelRegistry
from .watch import watch

__all__ = [
    "init_registry", "run_refresh", "watch", "registry_status", "registry_history", "promote_version", "rollback",
    "ModelRegistry", "GatePolicy", "AdaptOptions", "RunOptions", "LabelledSetRef", "parse_labelled_set",
    "RegistryError", "RefreshInterrupted",
]
