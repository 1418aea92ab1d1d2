"""Methods by name (the CLI's ``--method``)."""
from __future__ import annotations

from ..registry import Registry

METHODS: Registry = Registry("method")


def register_method(name: str):
    """Class decorator: register a :class:`~semiseg_sdk.methods.base.Method` subclass under ``name``."""

    def deco(cls):
        cls.name = name
        return METHODS.register(name)(cls)

    return deco
