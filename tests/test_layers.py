"""The import graph is a DAG of layers (the import-linter contracts in pyproject.toml)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"semiseg_sdk": ROOT / "semiseg_sdk", "semiseg_export": ROOT / "export" / "semiseg_export",
            "semiseg_serving": ROOT / "serving" / "semiseg_serving"}

pytest.importorskip("importlinter")


def _lint(tree: Path) -> subprocess.CompletedProcess:
    """lint-imports on the packages found under ``tree`` (ahead of the installed ones), with the repository's contracts."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                           "sys.exit(lint_imports_command())", "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=300)


def _copy(tmp_path: Path) -> Path:
    for name, src in PACKAGES.items():
        shutil.copytree(src, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_the_packages_keep_their_layers(tmp_path):
    res = _lint(_copy(tmp_path))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Contracts: 3 kept, 0 broken." in res.stdout


@pytest.mark.parametrize("importer, line, culprit", [
    ("semiseg_sdk/methods/upward.py", "from ..engine import trainer\n", "semiseg_sdk.methods is not allowed to import semiseg_sdk.engine"),
    ("semiseg_sdk/data/upward.py", "from ..augment import views\n", "semiseg_sdk.data is not allowed to import semiseg_sdk.augment"),
    ("semiseg_serving/upward.py", "import torch\n", "semiseg_serving is not allowed to import torch"),
])
def test_an_upward_import_breaks_a_contract(tmp_path, importer, line, culprit):
    tree = _copy(tmp_path)
    (tree / importer).write_text(line)
    res = _lint(tree)
    assert res.returncode != 0 and culprit in res.stdout, res.stdout + res.stderr


def test_every_subpackage_of_the_sdk_has_a_layer():
    """A new top-level module or package of semiseg_sdk must be placed in the layers contract."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    layers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]["layers"]
    named = {m.strip() for layer in layers for m in layer.split("|")}
    modules = {f"semiseg_sdk.{p.stem if p.suffix == '.py' else p.name}" for p in PACKAGES["semiseg_sdk"].iterdir()
               if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()}
    assert modules - named == set()
