"""The training loop and its hooks: the loop owns stepping, hooks own everything around a step.

    class MyLoop(TrainLoop):
        def run_step(self):            # one optimiser step; returns its loss terms, advances self.step
            ...
    loop.register_hooks([PolyLR(...), MetricsWriter(...), Evaluation(...)])
    loop.train(max_steps)

A hook sees the loop as ``self.loop`` and is called at ``before_train``, ``before_step``, ``after_step`` (``loop.step``
is then the number of steps done) and ``after_train``, in the order the hooks were registered. A hook ends a run by
:meth:`TrainLoop.request_stop` (the loop finishes the step under way, then every hook's ``after_train`` runs);
nothing is stopped by an exception. Loss terms of the steps since the last log reach hooks through
:attr:`TrainLoop.stats`.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional

import torch


class HookBase:
    """A training hook: override any of the four calls; ``self.loop`` is the loop it is registered with."""

    loop: "TrainLoop"

    def before_train(self) -> None:
        """Once, before the first step (also when a resumed run has no step left)."""

    def before_step(self) -> None:
        """Before every step; ``loop.step`` steps are done."""

    def after_step(self) -> None:
        """After every step; ``loop.step`` steps are done (this one included)."""

    def after_train(self) -> None:
        """Once, after the last step or a stop request; not after an exception (``loop.failed`` is then set)."""

    def close(self) -> None:
        """Always last, also after an exception: release what the hook holds (signal handlers, a progress bar)."""


class StepStats:
    """Loss terms summed on the device since the last log: hooks read means without a host sync per step."""

    def __init__(self) -> None:
        self.sums: Dict[str, torch.Tensor] = {}
        self.count = 0
        self.extra: Dict[str, object] = {}   # fields other hooks add to the next logged record
        self.record: Dict[str, object] = {}  # the last record logged (its "step" says when)

    def add(self, terms: Dict[str, torch.Tensor]) -> None:
        """Add one step's loss terms (detached 0-dim tensors)."""
        for k, v in terms.items():
            self.sums[k] = self.sums[k] + v if k in self.sums else v
        self.count += 1

    def means(self) -> Dict[str, float]:
        """Mean of each term over the steps since the last :meth:`reset` (waits for the device)."""
        return {k: float(v) / max(1, self.count) for k, v in self.sums.items()}

    def reset(self) -> None:
        """Start a new logging window."""
        self.sums.clear()
        self.extra = {}
        self.count = 0


class TrainLoop:
    """Steps until ``max_steps`` or a hook's stop request; subclasses implement :meth:`run_step`."""

    def __init__(self) -> None:
        self.step = 0
        self.max_steps = 0
        self.hooks: List[HookBase] = []
        self.stats = StepStats()
        self.stop_reason: Optional[str] = None
        self.failed = False

    def register_hooks(self, hooks: Iterable[Optional[HookBase]]) -> None:
        """Append hooks (None entries are skipped); they run in registration order."""
        for hook in hooks:
            if hook is not None:
                hook.loop = self
                self.hooks.append(hook)

    def request_stop(self, reason: str) -> None:
        """Stop after the step under way (the first reason given is kept)."""
        if self.stop_reason is None:
            self.stop_reason = reason

    def run_step(self) -> Dict[str, torch.Tensor]:
        """One optimiser step: returns its loss terms and adds 1 to ``self.step``."""
        raise NotImplementedError

    def train(self, max_steps: int) -> None:
        """Run the hooks around steps ``self.step .. max_steps - 1``; stops early on :meth:`request_stop`."""
        self.max_steps, self.stop_reason, self.failed = int(max_steps), None, False
        try:
            for h in self.hooks:
                h.before_train()
            while self.step < self.max_steps and self.stop_reason is None:
                for h in self.hooks:
                    h.before_step()
                self.stats.add(self.run_step())
                for h in self.hooks:
                    h.after_step()
            for h in self.hooks:
                h.after_train()
        except BaseException:
            self.failed = True
            raise
        finally:
            for h in self.hooks:
                h.close()
