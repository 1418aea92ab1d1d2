"""The package's top level: the entry points a user needs, importable without loading torch."""
from __future__ import annotations

import subprocess
import sys

import semiseg_sdk

SURFACE = ["HookBase", "TrainConfig", "Trainer", "build_dataset", "build_model", "evaluate", "evaluate_checkpoint",
           "list_datasets", "list_encoders", "list_methods", "list_models", "list_recipes", "load_checkpoint",
           "load_inference_model", "resolve_config", "train"]


def test_the_top_level_names_the_entry_points():
    assert sorted(n for n in semiseg_sdk.__all__ if n != "__version__") == SURFACE
    for name in SURFACE:
        assert callable(getattr(semiseg_sdk, name)), name
    assert "unimatch" in semiseg_sdk.list_methods() and "synthetic-driving" in semiseg_sdk.list_datasets()
    assert semiseg_sdk.build_model is semiseg_sdk.models.build_model


def test_importing_the_package_loads_no_training_stack():
    code = "import sys, semiseg_sdk; print(sorted(m for m in ('torch', 'kornia', 'onnx') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
