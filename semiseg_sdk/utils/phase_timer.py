"""Wall time per named training phase (data, augmentation, forward+backward, optimiser), exclusive of nested phases.

Code marks phases with ``with timed("data"): ...`` or ``@timed("augmentation")``; these cost one context-variable
lookup when no timer is active. Inside ``with timer.activate():`` each phase boundary synchronises CUDA (so
asynchronous kernels are charged to the phase that launched them) and a phase's time excludes that of the phases
nested in it: augmentation done inside a method's forward is counted as augmentation, not as forward+backward.
A phase nested directly in a phase of the same name is part of it (``ViewMaker.weak`` calls ``warp_view``).
"""
from __future__ import annotations

import contextvars
import functools
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, TypeVar

import torch

F = TypeVar("F", bound=Callable[..., Any])

_ACTIVE: contextvars.ContextVar[Optional["PhaseTimer"]] = contextvars.ContextVar("semiseg_phase_timer", default=None)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued kernels (CUDA); nothing to wait for on a CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class _Frame:
    name: str
    start: float
    nested: float = 0.0  # inclusive time of the phases nested in this one
    depth: int = 0       # re-entries of the same name


class PhaseTimer:
    """Accumulates exclusive wall time (``totals``, seconds) and entry counts (``counts``) per phase name."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.totals: Dict[str, float] = {}
        self.counts: Dict[str, int] = {}
        self._stack: List[_Frame] = []

    @contextmanager
    def activate(self) -> Iterator["PhaseTimer"]:
        """Make this the timer that :func:`timed` phases report to (in this context)."""
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)

    def push(self, name: str) -> None:
        """Start phase ``name`` (nested in the current one, if any)."""
        if self._stack and self._stack[-1].name == name:
            self._stack[-1].depth += 1
            return
        synchronize(self.device)
        self._stack.append(_Frame(name, time.perf_counter()))

    def pop(self) -> None:
        """End the innermost phase; its time less its nested phases' goes to its name."""
        top = self._stack[-1]
        if top.depth:
            top.depth -= 1
            return
        synchronize(self.device)
        elapsed = time.perf_counter() - top.start
        self._stack.pop()
        self.totals[top.name] = self.totals.get(top.name, 0.0) + elapsed - top.nested
        self.counts[top.name] = self.counts.get(top.name, 0) + 1
        if self._stack:
            self._stack[-1].nested += elapsed


class timed:
    """Phase ``name`` as a context manager (``with timed("data"):``) or a decorator (``@timed("augmentation")``).

    A no-op when no :class:`PhaseTimer` is active. Holds no state of its own, so one instance may be re-entered."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        timer = _ACTIVE.get()
        if timer is not None:
            timer.push(self.name)

    def __exit__(self, *exc: object) -> None:
        timer = _ACTIVE.get()
        if timer is not None:
            timer.pop()

    def __call__(self, fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self:
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]
