"""The training phase of a refresh: the ordinary Trainer runs ``field-adapt`` from the parent version on replay +
field images.

With ``bn_recalibration`` "before"/"both" the parent's batch-norm statistics are first re-estimated on replay+field
batches (AdaBN) and saved as ``pending/init.pt``, which starts student and teacher (so the teacher's first
pseudo-labels already see the new domain's statistics); "after"/"both" re-estimates them once more on the trained
network before it is saved as the candidate. The trainer's run folder is ``pending/train-<version>/`` and ``resume`` is
always on, so a killed refresh continues from its last checkpoint (written every ``checkpoint_every`` steps). A hook
(:class:`RefreshStop`) asks the loop to stop between two steps on Ctrl-C/SIGTERM (the journal keeps the refresh;
``last.pt`` holds the step) or when the time budget is spent (the candidate is then the model at that step).
"""
from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Type, TypeVar

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import Subset

from ..augment import ViewConfig, ViewMaker
from ..config import TrainConfig
from ..data.base import DatasetInfo, SegmentationDataset
from ..data.folder import FileListDataset
from ..data.loader import infinite_loader, to_device
from ..engine.data_setup import TrainData, train_patch
from ..engine.train_loop import HookBase
from ..engine.trainer import Trainer
from ..errors import ConfigError
from ..models.checkpoint import load_checkpoint, load_inference_model, save_checkpoint
from ..utils.precision import resolve_device
from .labelled_sets import OpenedSet, open_labelled_set, parse_labelled_set
from .store import Journal, ModelStore, RefreshInterrupted


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


def field_dataset(root: Path, entries: Sequence[Mapping[str, Any]], info: DatasetInfo) -> FileListDataset:
    """Unlabelled dataset over stored field images (``entry["file"]`` relative to the store ``root``)."""
    return FileListDataset(info, [(str(e["sha256"]), Path(root) / str(e["file"]), None) for e in entries])


class WithInfo(SegmentationDataset):
    """``base`` under another DatasetInfo (same items, the deployed model's class names and palette)."""

    def __init__(self, base: SegmentationDataset, info: DatasetInfo) -> None:
        self.base, self.info, self.labelled = base, info, getattr(base, "labelled", True)

    def __len__(self) -> int:
        return len(self.base)

    def names(self) -> List[str]:
        return self.base.names()

    def load(self, index: int) -> Dict[str, object]:
        return self.base[index]


def refresh_train_data(replay: OpenedSet, field: SegmentationDataset, info: DatasetInfo, val_images: int = 8) -> TrainData:
    """TrainData for the Trainer; its val set is the first ``val_images`` replay items (a forgetting monitor for
    the training log only: the holdout and probe sets are never shown to the trainer)."""
    train = WithInfo(replay.dataset, info)
    val = Subset(train, replay.indices[:val_images])
    return TrainData(train, val, list(replay.indices), [], extra_unlabelled=field)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, x_iter: Iterator[Mapping], u_iter: Iterator[Mapping], views: ViewMaker,
                   batches: int, device: torch.device) -> int:
    """Reset and re-estimate the BN statistics of ``model`` over ``batches`` replay+field batches; returns the
    number of BN layers updated (0: nothing to do). ``model`` is left in eval mode."""
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not bns or batches < 1:
        return 0
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.eval()
    for m in bns:
        m.train()
    try:
        for _ in range(batches):
            x = views.weak(to_device(next(x_iter), device)).image
            u = views.weak(to_device(next(u_iter), device)).image
            model(torch.cat([x, u]))
    finally:
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum
        model.eval()
    return len(bns)


class RefreshStop(HookBase):
    """Stops the refresh's training between two steps: on ``stop`` (Ctrl-C/SIGTERM of the continual loop, reason
    "interrupted") or once ``deadline`` (``time.monotonic()``) has passed (reason "budget")."""

    def __init__(self, stop: Optional[threading.Event], deadline: Optional[float]) -> None:
        self.stop, self.deadline = stop, deadline

    def after_step(self) -> None:
        loop = self.loop
        if self.stop is not None and self.stop.is_set():
            loop.request_stop("interrupted")
        elif self.deadline is not None and time.monotonic() > self.deadline and loop.step < loop.max_steps:
            loop.request_stop("budget")


def checkpoint_info(ckpt: Mapping[str, Any]) -> DatasetInfo:
    """The class names and palette a checkpoint was trained with."""
    d = ckpt["dataset"]
    return DatasetInfo(str(d["name"]), tuple(d["classes"]), tuple(tuple(c) for c in d.get("palette") or ()))


def train_config(reg: ModelStore, settings: Mapping[str, Any], journal: Journal, adapt: AdaptOptions,
                 run: RunOptions, spec: Mapping[str, Any], init: Path) -> TrainConfig:
    """The Trainer config of the refresh: architecture from the parent's spec, the rest from ``adapt``."""
    source = settings.get("source", {}).get("config") or {}
    crop = adapt.crop_size or tuple(source.get("crop_size") or (128, 128))
    method_args = {"init": str(init), "conf_thresh": adapt.conf_thresh,
                   "ema_momentum": adapt.ema_momentum, "infer": adapt.infer, "restore_p": adapt.restore_p}
    return TrainConfig(
        data=str(source.get("data", "field")), data_args=dict(source.get("data_args") or {}),
        data_root=source.get("data_root"), model=str(spec["name"]), encoder=str(spec["encoder"]),
        output_stride=int(spec["output_stride"]), method="field-adapt", method_args=method_args,
        steps=adapt.steps, batch_size=adapt.batch_size, unlabelled_batch_size=adapt.field_batch_size,
        crop_size=crop, scale_range=tuple(source.get("scale_range") or (0.5, 2.0)), lr=adapt.lr,
        head_lr_mult=adapt.head_lr_mult, optimizer=str(source.get("optimizer", "sgd")),
        eval_every=adapt.checkpoint_every, eval_batch_size=run.eval_batch_size,
        log_every=max(1, min(20, adapt.checkpoint_every)), num_workers=run.num_workers, device=run.device,
        seed=adapt.seed, out=str(reg.pending), name=journal.train_dir.name, resume=True, progress=run.progress,
        amp=str(source.get("amp", "auto")),
    )


def train_candidate(reg: ModelStore, settings: Mapping[str, Any], journal: Journal, run: RunOptions,
                    stop: Optional[threading.Event] = None) -> Dict[str, Any]:
    """Fine-tune, save ``pending/candidate.pt``; returns a summary. Raises RefreshInterrupted on a stop request."""
    adapt = AdaptOptions(**journal.data["adapt"])
    parent = load_checkpoint(reg.version_dir(journal.parent) / "model.pt")
    info = checkpoint_info(parent)
    replay = open_labelled_set(parse_labelled_set(settings["replay"]), info.num_classes, "replay set")
    field = field_dataset(reg.root, journal.data["train_images"], info)
    data = refresh_train_data(replay, field, info)
    init = reg.version_dir(journal.parent) / "model.pt"
    cfg = train_config(reg, settings, journal, adapt, run, parent["model_spec"], init)
    if adapt.bn_recalibration in ("before", "both"):
        init = reg.pending / "init.pt"
        if not init.is_file():  # made once per refresh; a resumed refresh reuses it
            model, ckpt = load_inference_model(cfg.method_args["init"], map_location="cpu")
            _recalibrate(model, cfg, data, adapt, seed=cfg.seed + 101)
            payload = {k: v for k, v in ckpt.items() if k not in ("format", "path")}
            save_checkpoint(init, {**payload, "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()}})
        cfg = dataclasses.replace(cfg, method_args={**cfg.method_args, "init": str(init)})
    trainer = Trainer(cfg, data=data)
    deadline = time.monotonic() + 60.0 * adapt.max_minutes if adapt.max_minutes else None
    start_step, t0 = trainer.step, time.perf_counter()
    try:
        summary = trainer.fit(hooks=[RefreshStop(stop, deadline)])
    finally:
        trainer.close()
    stopped = summary.get("stopped")
    if stopped == "interrupted":
        raise RefreshInterrupted(f"refresh {journal.version} stopped at step {trainer.step}; `run` resumes it "
                                 f"from the last checkpoint in {journal.train_dir}")
    if adapt.bn_recalibration in ("after", "both"):
        _recalibrate(trainer.inference_model(), cfg, data, adapt, seed=cfg.seed + 202)
    trainer.save_inference_checkpoint(journal.candidate_path)
    return {"steps": trainer.step, "planned_steps": cfg.steps, "resumed_from_step": start_step,
            "stopped_early": stopped, "seconds": round(time.perf_counter() - t0, 1),
            "replay_images": len(replay), "field_images": len(field),
            "replay_val_miou": summary.get("final_miou"), "config": dataclasses.asdict(cfg)}


def _recalibrate(model: torch.nn.Module, cfg: TrainConfig, data: TrainData, adapt: AdaptOptions, seed: int) -> None:
    """AdaBN on ``bn_batches`` replay+field batches drawn by their own seeded loaders (training data untouched)."""
    device = resolve_device(cfg.device)
    patch = train_patch(cfg)
    u_data, u_idx = data.unlabelled_source()
    x_iter = infinite_loader(data.train, data.labelled_idx, cfg.batch_size, seed=seed, patch=patch)
    u_iter = infinite_loader(u_data, u_idx, cfg.unlabelled_batch_size or cfg.batch_size, seed=seed + 1, patch=patch,
                             drop_mask=True)
    views = ViewMaker(ViewConfig(crop_size=cfg.crop_size, scale_range=cfg.scale_range)).to(device)
    was_training = model.training
    recalibrate_bn(model.to(device), x_iter, u_iter, views, adapt.bn_batches, device)
    model.train(was_training)
