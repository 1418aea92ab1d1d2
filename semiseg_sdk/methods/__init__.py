"""Training methods, one file each, found by name through ``METHODS``.

Every module of this package is imported here, so a new method is one new file with ``@register_method``.
"""
import importlib
import pkgutil

from .base import Method, MethodConfig
from .registry import METHODS, register_method

for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["Method", "MethodConfig", "METHODS", "register_method", "list_methods", "get_method"]


def list_methods() -> list:
    """Names of all registered methods."""
    return METHODS.names()


def get_method(name: str):
    """The Method class registered under ``name``."""
    return METHODS.get(name)
