"""The training phase of a refresh: the ordinary Trainer runs ``field-adapt`` from the parent version.

With ``bn_recalibration`` "before"/"both" the parent's batch-norm statistics are first re-estimated on replay+field
batches (AdaBN, ``bn_recalibration.py``) and saved as ``pending/init.pt``, which starts student and teacher (so the
teacher's first pseudo-labels already see the new domain's statistics); "after"/"both" re-estimates them once more
on the trained network before it is saved as the candidate. The trainer's run folder is ``pending/train-<version>/`` and ``resume`` is always on, so a killed refresh continues
from its last checkpoint (written every ``checkpoint_every`` steps). A hook (:class:`RefreshStop`) asks the
loop to stop between two steps on Ctrl-C/SIGTERM (the journal keeps the refresh; ``last.pt`` holds the step) or when
the time budget is spent (the candidate is then the model at that step), and hosts the ``train`` crash point of the
fault-injection tests.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import torch

from ..augment import ViewConfig, ViewMaker
from ..config import TrainConfig
from ..data.base import DatasetInfo
from ..data.loader import infinite_loader
from ..models.checkpoint import load_checkpoint, load_inference_model, save_checkpoint
from ..engine.data_setup import TrainData, train_patch
from ..utils.precision import resolve_device
from ..engine.train_loop import HookBase
from ..engine.trainer import Trainer
from .bn_recalibration import recalibrate_bn
from .errors import RefreshInterrupted
from .faults import crash_point
from .field_data import field_dataset, refresh_train_data
from .journal import Journal
from .labelled_sets import open_labelled_set, parse_labelled_set
from .options import AdaptOptions, RunOptions
from .version_registry import ModelRegistry


class RefreshStop(HookBase):
    """Stops the refresh's training between two steps: on ``stop`` (Ctrl-C/SIGTERM of the continual loop, reason
    "interrupted") or once ``deadline`` (``time.monotonic()``) has passed (reason "budget"); after the first
    evaluation it is also the ``train`` crash point of the fault-injection tests."""

    def __init__(self, stop: Optional[threading.Event], deadline: Optional[float], crash_after: int) -> None:
        self.stop, self.deadline, self.crash_after = stop, deadline, crash_after

    def after_step(self) -> None:
        loop = self.loop
        if loop.step > self.crash_after:
            crash_point("train")
        if self.stop is not None and self.stop.is_set():
            loop.request_stop("interrupted")
        elif self.deadline is not None and time.monotonic() > self.deadline and loop.step < loop.max_steps:
            loop.request_stop("budget")


def checkpoint_info(ckpt: Mapping[str, Any]) -> DatasetInfo:
    """The class names and palette a checkpoint was trained with."""
    d = ckpt["dataset"]
    return DatasetInfo(str(d["name"]), tuple(d["classes"]), tuple(tuple(c) for c in d.get("palette") or ()))


def train_config(reg: ModelRegistry, settings: Mapping[str, Any], journal: Journal, adapt: AdaptOptions,
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


def train_candidate(reg: ModelRegistry, settings: Mapping[str, Any], journal: Journal, run: RunOptions,
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
        summary = trainer.fit(hooks=[RefreshStop(stop, deadline, crash_after=cfg.eval_every)])
    finally:
        trainer.close()
    stopped = summary.get("stopped")
    if stopped == "interrupted":
        raise RefreshInterrupted(f"refresh {journal.version} stopped at step {trainer.step}; `run` resumes it "
                                 f"from the last checkpoint in {journal.train_dir}")
    if adapt.bn_recalibration in ("after", "both"):
        _recalibrate(trainer.method.inference_model(), cfg, data, adapt, seed=cfg.seed + 202)
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
