"""What the registries hold, read from the package's source without importing it (no torch, no kornia).

``semiseg methods|models|datasets`` list the registered names on an install without the training extras: each
``@register_method("name")`` / ``@register_model`` / ``@register_encoder`` / ``@register_dataset`` decorator is found
in the source files by :mod:`ast`, with the decorated object's docstring and (for methods) its ``family``.
The registries stay the one source: a test checks that this listing equals what importing them registers.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

_PACKAGE = Path(__file__).resolve().parent
# kind -> (decorator name, folder of the package whose modules register that kind)
KINDS: Dict[str, Tuple[str, str]] = {
    "method": ("register_method", "methods"),
    "model": ("register_model", "models"),
    "encoder": ("register_encoder", "models"),
    "dataset": ("register_dataset", "data"),
}


@dataclass(frozen=True)
class Entry:
    """One registered name: its kind, its family (methods only) and its docstring."""

    name: str
    family: str
    doc: str


def entries(kind: str) -> List[Entry]:
    """The entries of one kind (``method``, ``model``, ``encoder``, ``dataset``), sorted by name."""
    decorator, folder = KINDS[kind]
    found: Dict[str, Entry] = {}
    for path in sorted((_PACKAGE / folder).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
        for node in tree.body:
            name = _registered_name(node, decorator)
            if name is not None:
                family = _family(node, classes) if isinstance(node, ast.ClassDef) else ""
                found[name] = Entry(name, family, ast.get_docstring(node) or "")
    return [found[n] for n in sorted(found)]


def _registered_name(node: ast.stmt, decorator: str) -> Optional[str]:
    """``"name"`` when ``node`` is decorated with ``decorator("name")``."""
    for deco in getattr(node, "decorator_list", []):
        func = deco.func if isinstance(deco, ast.Call) else None
        called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        if called == decorator and deco.args and isinstance(deco.args[0], ast.Constant):
            return str(deco.args[0].value)
    return None


def _family(node: ast.ClassDef, classes: Dict[str, ast.ClassDef]) -> str:
    """The class's ``family = "..."``, else the one of a base class defined in the same module."""
    for stmt in node.body:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target] if isinstance(stmt, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == "family" for t in targets):
            value = stmt.value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                return value.value
    for base in node.bases:
        if isinstance(base, ast.Name) and base.id in classes and base.id != node.name:
            return _family(classes[base.id], classes)
    return ""

