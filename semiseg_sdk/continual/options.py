"""Options of the continual loop: how one refresh fine-tunes (:class:`AdaptOptions`) and how ``run`` behaves
(:class:`RunOptions`). Both are frozen dataclasses; unknown keys are refused with the valid ones listed."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Tuple, Type, TypeVar

from ..errors import ConfigError

T = TypeVar("T")
BN_MODES = ("before", "after", "both", "off")


@dataclass(frozen=True)
class AdaptOptions:
    """Fine-tuning of one refresh (recorded in the journal, so a resumed refresh trains exactly as it started)."""

    steps: int = 300                     # optimiser steps per refresh
    max_minutes: Optional[float] = None  # wall-clock budget of the training phase (the candidate is the model then)
    batch_size: int = 4                  # replayed labelled images per step
    field_batch_size: int = 4            # field images per step
    lr: float = 0.001                    # 1/10 of the SDK's training lr: a fine-tune, not a new training
    head_lr_mult: float = 10.0           # as in training (decoder/classifier at lr * mult)
    crop_size: Optional[Tuple[int, int]] = None   # None: the source run's crop size (else 128 x 128)
    conf_thresh: float = 0.9             # pseudo-label confidence threshold (see field_adapt.py)
    ema_momentum: float = 0.999          # CoTTA
    infer: str = "student"               # network shipped: "student" or "teacher"
    restore_p: float = 0.0               # CoTTA stochastic restore; 0 = off
    bn_recalibration: str = "both"       # AdaBN on replay+field batches: "before" training, "after", "both", "off"
    bn_batches: int = 25                 # batches (batch_size + field_batch_size images) per re-estimation
    checkpoint_every: int = 50           # steps between resumable checkpoints (and replay-val evaluations)
    field_window: int = 2000             # field images trained on: this refresh's + the most recent earlier ones
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "field_batch_size", "checkpoint_every", "field_window"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"continual: {name} must be >= 1, got {getattr(self, name)!r}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ConfigError(f"continual: max_minutes must be positive, got {self.max_minutes!r}")
        if not 0.0 < self.conf_thresh < 1.0:
            raise ConfigError(f"continual: conf_thresh must lie in (0, 1), got {self.conf_thresh!r}")
        if self.bn_recalibration not in BN_MODES:
            raise ConfigError(f"continual: bn_recalibration must be one of {BN_MODES}, got {self.bn_recalibration!r}")
        if self.crop_size is not None:
            c = self.crop_size
            object.__setattr__(self, "crop_size", (int(c), int(c)) if isinstance(c, (int, float)) else tuple(int(v) for v in c))


@dataclass(frozen=True)
class RunOptions:
    """Behaviour of ``run``: when to refresh, where to compute, what to print."""

    min_images: int = 16                 # new accepted images needed before a refresh starts
    settle_seconds: float = 2.0          # files modified more recently are left waiting (uploads in progress)
    min_side: int = 32                   # quarantine images with a smaller side (px)
    blank_std: float = 2.0               # quarantine near-constant images (max channel std, grey levels)
    remove_ingested: bool = False        # delete incoming files once stored, known or quarantined (never by default)
    device: str = "auto"
    num_workers: int = 0                 # data loader workers of the training phase
    eval_batch_size: int = 8
    progress: bool = True
    verbose: bool = True

    def __post_init__(self) -> None:
        if int(self.min_images) < 1:
            raise ConfigError(f"continual: min_images must be >= 1, got {self.min_images!r}")
        if self.min_side < 1 or self.blank_std < 0 or self.settle_seconds < 0:
            raise ConfigError("continual: min_side must be >= 1, blank_std and settle_seconds >= 0")


def make_options(cls: Type[T], values: Optional[Mapping[str, Any]] = None) -> T:
    """``cls(**values)`` with None values dropped and unknown keys refused (ConfigError listing the valid ones)."""
    values = {k: v for k, v in dict(values or {}).items() if v is not None}
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"continual: unknown option(s) {unknown}; valid: {sorted(names)}")
    return cls(**values)
