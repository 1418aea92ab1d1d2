"""Typed, frozen training configuration; resolved from defaults <- config file (JSON/TOML) <- CLI flags."""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

from .errors import ConfigError, did_you_mean

SUP_LOSSES = ("ce", "ohem")  # labelled losses (semiseg_sdk.methods.labelled_loss builds them); here: no torch import


def check_patch_settings(size: Any, overlap: Any) -> None:
    """Raise ConfigError unless ``size`` is a positive integer and ``overlap`` an integer in [0, size)."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"patch_size must be a positive integer (pixels), got {size!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < size:
        raise ConfigError(f"patch_overlap must be an integer in [0, patch_size={size}), got {overlap!r}")


def parse_pair(name: str, value: Any, kind: type) -> Tuple[Any, Any]:
    """A two-number setting from ``N``, ``(H, W)``, ``"H,W"`` or ``"HxW"``; ConfigError naming the flag otherwise."""
    given = value
    if isinstance(value, str):
        value = [v for v in re.split(r"[x,\s]+", value.strip().strip("()[]")) if v]
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value, value)
    try:
        a, b = value  # type: ignore[misc]
        pair = (kind(a), kind(b))
        if kind is int and (float(a) != pair[0] or float(b) != pair[1]):
            raise ValueError
    except (TypeError, ValueError):
        example = "321,321" if kind is int else "0.5,2.0"
        raise ConfigError(f"--{name} {given!r}: expected two {'whole ' if kind is int else ''}numbers such as "
                          f"{example} (or one for both)") from None
    if min(pair) <= 0:
        raise ConfigError(f"--{name} {pair}: both numbers must be positive")
    return pair


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; written to ``config.json`` in the run folder."""

    recipe: Optional[str] = None              # a named recipe applied beneath the config file and flags (`semiseg recipes`)
    # data
    data: str = "synthetic-driving"          # registered dataset name (see `semiseg datasets`)
    data_root: Optional[str] = None           # folder of a real dataset (folder/voc/cityscapes/camvid layouts)
    data_args: Dict[str, Any] = field(default_factory=dict)  # extra dataset kwargs, e.g. {"length": 1000, "domain": "fog"}
    labelled: str = "1/16"                    # "1/16", "1/8", "all", a fraction or a count
    unlabelled_root: Optional[str] = None     # extra unlabelled images (any folder of images), added to the unlabelled stream
    split_file: Optional[str] = None          # reuse this split (JSON); default: <run>/split.json
    val_split: str = "val"                    # split scored at every evaluation; "val+test" joins splits (folder layout)
    patch_size: Optional[int] = None          # cut training images into a grid of patches this size (large tiles); val stays whole
    patch_overlap: int = 0                    # pixels shared by neighbouring patches (at least)
    # model
    model: str = "deeplabv3plus"              # decoder: deeplabv3plus, pspnet, fcn, unet, unetplusplus (see `semiseg models`)
    encoder: str = "resnet18"                 # backbone: resnet18, resnet50, efficientnet_lite0, tiny (see `semiseg models`)
    output_stride: Optional[int] = None       # None = the decoder's default (16 for DeepLab/PSP/FCN, 32 for U-Nets)
    model_args: Dict[str, Any] = field(default_factory=dict)  # decoder options, e.g. {"channels": 128, "dropout": 0.0}
    pretrained: Optional[str] = None          # None, "imagenet" (packaged weights) or a local file path
    # method
    method: str = "supervised"                # training method (see `semiseg methods`)
    method_args: Dict[str, Any] = field(default_factory=dict)  # method options over its official defaults, e.g. {"conf_thresh": 0.95} (`semiseg methods NAME` lists them)
    sup_loss: str = "ce"                      # labelled loss of every method: "ce" or "ohem" (CPS/UniMatch Cityscapes recipe)
    ohem_thresh: float = 0.7                  # OHEM: pixels with true-class probability <= this count ...
    ohem_min_kept: int = 200000               # ... and at least this many per process batch (official: 2 x 801^2 crops)
    # optimisation
    steps: int = 2000                         # optimiser steps of the whole run
    batch_size: int = 8                       # labelled images per step (per process)
    unlabelled_batch_size: Optional[int] = None  # default: batch_size
    crop_size: Tuple[int, int] = (128, 128)   # training crop, H,W (or one number)
    scale_range: Tuple[float, float] = (0.5, 2.0)  # random rescale of the weak view before cropping
    flip_p: float = 0.5                       # horizontal flip probability of the weak view
    strong_aug: Dict[str, Any] = field(default_factory=dict)  # strong-view overrides, e.g. {"blur_sigma": [0.1, 0.6]} (StrongConfig)
    optimizer: str = "sgd"                    # "sgd" or "adamw"
    lr: float = 0.01                          # base learning rate (poly schedule to 0)
    head_lr_mult: float = 10.0                # learning-rate factor of the decoder/head against the pretrained encoder
    weight_decay: float = 1e-4                # L2 weight decay
    momentum: float = 0.9                     # SGD momentum
    poly_power: float = 0.9                   # exponent of the poly learning-rate schedule
    grad_clip: Optional[float] = None         # clip the gradient norm to this value (None = off)
    freeze_bn: bool = False                   # BatchNorm uses its running statistics while training (French et al. --freeze_bn)
    amp: str = "auto"                         # "auto" (bf16/fp16 on CUDA, off on CPU), "off", "bf16", "fp16"
    channels_last: str = "auto"               # "auto" (on for CUDA), "on", "off"
    sync_bn: str = "auto"                     # SyncBatchNorm under torchrun: "auto" (on for multi-GPU CUDA), "on", "off"
    compile: bool = False                     # torch.compile the student network in place (same state_dict keys); first steps are slow
    # evaluation, checkpoints, logging
    eval_every: int = 500                     # evaluate on the validation split (and write best.pt/last.pt) every N steps and at the end
    save_every: int = 0                       # also write last.pt every N steps, without evaluating (0 = at evaluations only)
    eval_mode: str = "auto"                   # "whole", "slide" or "auto" (per image: slide if larger than eval_window)
    eval_window: Optional[Tuple[int, int]] = None  # sliding-window size, H,W (None = the training crop, where the network learnt its context)
    eval_batch_size: int = 8                  # images per network call at evaluation (the score does not depend on it)
    weight_ema: float = 0.0                   # evaluate and save an EMA of the trained network's weights with this momentum (e.g. 0.99; 0 = off)
    log_every: int = 20                       # write loss terms, learning rate and throughput to metrics.jsonl every N steps
    tensorboard: bool = False                 # also write loss terms, lr, evaluations and predicted masks to <run>/tensorboard ([tensorboard] extra)
    time_phases: bool = False                 # add seconds per step in data, augmentation, forward+backward, optimiser to each metrics line (syncs CUDA)
    num_workers: int = 2                      # data-loader processes per stream
    check_data: bool = True                   # before step 1: load every validation item, check training masks and headers
    data_cache_mb: int = 0                    # keep decoded training items in memory, this many MiB per stream and worker (0 = off)
    device: str = "auto"                      # "auto" (CUDA when available), "cpu", "cuda", "cuda:1"
    seed: int = 0                             # fixes the split, the initial weights and the augmentations
    split_seed: Optional[int] = None          # draws the labelled split instead of seed (None = seed): one split trained with several seeds
    out: str = "runs"                         # folder of run folders
    name: Optional[str] = None                # run folder name (default: method-data-labelled-seed)
    resume: bool = False                      # continue the run in <out>/<name> from its last.pt
    progress: bool = True                     # show a progress bar

    def __post_init__(self) -> None:
        if self.eval_window is None:  # resolved here, so config.json records the window a run was scored on
            object.__setattr__(self, "eval_window", self.crop_size)
        for name in ("crop_size", "scale_range", "eval_window"):
            object.__setattr__(self, name, parse_pair(name, getattr(self, name), float if name == "scale_range" else int))
        if self.optimizer not in ("sgd", "adamw"):
            raise ConfigError(f"optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        if self.amp not in ("auto", "off", "bf16", "fp16"):
            raise ConfigError(f"amp must be auto/off/bf16/fp16, got {self.amp!r}")
        if self.sup_loss not in SUP_LOSSES:
            raise ConfigError(f"sup_loss must be one of {list(SUP_LOSSES)}, got {self.sup_loss!r}")
        if self.eval_mode not in ("auto", "whole", "slide"):
            raise ConfigError(f"eval_mode must be auto/whole/slide, got {self.eval_mode!r}")
        if int(self.save_every) < 0:
            raise ConfigError(f"save_every must be >= 0 (0 = at evaluations only), got {self.save_every!r}")
        if self.patch_size is not None:
            check_patch_settings(self.patch_size, self.patch_overlap)
        if isinstance(self.weight_ema, bool) or not isinstance(self.weight_ema, (int, float)) or not 0 <= self.weight_ema < 1:
            raise ConfigError(f"weight_ema must be a momentum in [0, 1) (0 = off, e.g. 0.99), got {self.weight_ema!r}")
        if int(self.data_cache_mb) < 0:
            raise ConfigError(f"data_cache_mb must be >= 0, got {self.data_cache_mb!r}")
        for name in ("steps", "batch_size", "eval_every", "log_every"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}")
        if not isinstance(self.strong_aug, Mapping):
            raise ConfigError(f"strong_aug must be a mapping of strong-view settings, got {self.strong_aug!r}")
        object.__setattr__(self, "labelled", str(self.labelled))

    def run_name(self) -> str:
        """Default run folder name: method-data-labelled-seed."""
        if self.name:
            return self.name
        frac = self.labelled.replace("/", "of")
        return f"{self.method}-{self.data}-{frac}-s{self.seed}"

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def load_config_file(path: str | Path) -> Dict[str, Any]:
    """Read a JSON or TOML config file into a dict (errors name the file)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        if p.suffix == ".toml":
            import tomllib

            return tomllib.loads(p.read_text())
        return json.loads(p.read_text())
    except Exception as exc:
        raise ConfigError(f"{p}: cannot parse config ({exc})") from exc


def resolve_config(file: Optional[str] = None, overrides: Optional[Mapping[str, Any]] = None) -> TrainConfig:
    """Defaults <- recipe <- ``file`` <- ``overrides`` (None values in overrides mean 'not given'); unknown keys are
    refused. The recipe is the one ``recipe`` names in the file or the overrides (see :mod:`semiseg_sdk.recipes`)."""
    values: Dict[str, Any] = dict(load_config_file(file)) if file else {}
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    if values.get("recipe") is not None:
        from .recipes import apply_recipe

        values = apply_recipe(str(values["recipe"]), values)
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown setting --{unknown[0]}{did_you_mean(unknown[0], names, '--{}')} (`semiseg train --help` lists them all)"
                          + (f"; also unknown: {', '.join(unknown[1:])}" if unknown[1:] else ""))
    return TrainConfig(**values)
