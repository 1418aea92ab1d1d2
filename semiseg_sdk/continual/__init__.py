"""The continual loop: field images -> pseudo-labels -> fine-tune -> gate -> versioned model store (promote/rollback).

    from semiseg_sdk.continual import init_store, run_refresh
    init_store("fleet", "runs/day", holdout="synthetic-driving:val")
    run_refresh("fleet", "field/")                 # one refresh; see refresh.py for the crash-safety design

Importing this package registers the ``field-adapt`` training method.
"""
from . import field_adapt  # noqa: F401  (registers the "field-adapt" method)
from .adapt import AdaptOptions, RunOptions
from .gate import GatePolicy
from .labelled_sets import LabelledSetRef, parse_labelled_set
from .refresh import run_refresh, store_status, watch
from .store import ModelStore, RefreshInterrupted, StoreError, promote_version, rollback, store_history
from .store_init import init_store

__all__ = [
    "init_store", "run_refresh", "watch", "store_status", "store_history", "promote_version", "rollback",
    "ModelStore", "GatePolicy", "AdaptOptions", "RunOptions", "LabelledSetRef", "parse_labelled_set",
    "StoreError", "RefreshInterrupted",
]
