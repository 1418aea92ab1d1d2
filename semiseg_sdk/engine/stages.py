"""Staged runs (self-training, ST++): several stages in sub-folders of one run folder, each closed by a record.

Layout of ``<out>/<run>/``: ``config.json`` (the run's config and the steps of each training stage), ``split.json``,
``best.pt`` (a copy of the final stage's best checkpoint, so ``semiseg export <run>`` works as for any run) and one
folder per stage. A training stage is an ordinary :class:`Trainer` run (config.json, metrics.jsonl, train.log,
best.pt, last.pt); a pseudo-label stage holds ``masks/<index>.png`` (uint8 class ids, one grayscale PNG per image,
on disk, never in a checkpoint). Every stage ends by writing ``stage.json`` (``"complete": true``, its config, its
metrics, what it produced); a resumed run skips complete stages and resumes the first incomplete one (a training
stage from its ``last.pt``, any other stage from its start).
"""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..config import TrainConfig
from ..data.base import SegmentationDataset
from ..errors import CheckpointError, ConfigError, DataError
from ..utils.atomic import atomic_path, write_json_atomic
from ..models.checkpoint import load_inference_model
from .data_setup import TrainData, build_train_data
from .evaluator import image_mode
from .metrics import ConfusionMatrix
from ..utils.precision import resolve_amp, resolve_device
from .run_folder import RunFolder
from .sliding_window import predict_sliding, predict_whole
from .train_loop import HookBase
from .trainer import Trainer

TTA_SCALES = (0.5, 0.75, 1.0, 1.5, 2.0)  # LiheYoung/ST-PlusPlus model/semseg/base.py forward(tta=True)


# -- prediction ---------------------------------------------------------------------------------------------------
def predict_probs(model: nn.Module, image: torch.Tensor, mode: str = "whole", window: Tuple[int, int] = (512, 512)) -> torch.Tensor:
    """Float32 class probabilities (B,C,H,W) of a [0,1] batch: whole image, or sliding ``window`` (stride 2/3)."""
    divisor = int(getattr(model, "size_divisor", 32))
    if mode == "slide":
        stride = (max(1, window[0] * 2 // 3), max(1, window[1] * 2 // 3))
        return predict_sliding(model, image, int(model.num_classes), window, stride, divisor).float()
    return predict_whole(model, image, divisor).float().softmax(1)


@torch.no_grad()
def tta_probs(model: nn.Module, image: torch.Tensor, scales: Sequence[float] = TTA_SCALES, flip: bool = True,
              mode: str = "whole", window: Tuple[int, int] = (512, 512)) -> torch.Tensor:
    """ST++'s pseudo-labelling TTA: softmax summed over ``scales`` x (image, horizontal flip), each resized back to
    the input size (bilinear, ``align_corners=False`` as everywhere in the SDK; the official code uses True)."""
    h, w = image.shape[-2:]
    total = None
    for s in scales:
        size = (max(1, int(h * s)), max(1, int(w * s)))
        x = image if size == (h, w) else F.interpolate(image, size=size, mode="bilinear", align_corners=False)
        for flipped in ((False, True) if flip else (False,)):
            p = predict_probs(model, x.flip(-1) if flipped else x, mode, window)
            p = p.flip(-1) if flipped else p
            if size != (h, w):
                p = F.interpolate(p, size=(h, w), mode="bilinear", align_corners=False)
            total = p if total is None else total + p
    return total


def image_batches(dataset: SegmentationDataset, indices: Sequence[int], batch_size: int) -> Iterator[Tuple[List[int], torch.Tensor, Optional[torch.Tensor]]]:
    """``(indices, images uint8 (B,3,H,W), masks uint8 (B,H,W) or None)`` of consecutive equal-size images (no padding)."""
    batch: List[Tuple[int, Dict]] = []
    for i in indices:
        item = dataset[i]
        if batch and (len(batch) == batch_size or item["image"].shape != batch[0][1]["image"].shape):
            yield _stack(batch)
            batch = []
        batch.append((int(i), item))
    if batch:
        yield _stack(batch)


def _stack(batch: List[Tuple[int, Dict]]) -> Tuple[List[int], torch.Tensor, Optional[torch.Tensor]]:
    image = torch.stack([it["image"] for _, it in batch])
    mask = torch.stack([it["mask"] for _, it in batch]) if all("mask" in it for _, it in batch) else None
    return [i for i, _ in batch], image, mask


# -- pseudo-label files and the dataset that serves them ------------------------------------------------------------
def write_mask_png(path: Path, mask: np.ndarray) -> None:
    """Write a (H,W) uint8 label map as a grayscale PNG, atomically."""
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(mask, dtype=np.uint8))
    if not ok:
        raise DataError(f"{path}: could not encode the pseudo-label as PNG")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())


def read_mask_png(path: Path, size: Sequence[int]) -> torch.Tensor:
    """Read a pseudo-label PNG as a uint8 (H,W) tensor; it must have the image's ``size``."""
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise DataError(f"{path}: pseudo-label missing or unreadable")
    if mask.ndim != 2 or tuple(mask.shape) != tuple(int(s) for s in size):
        raise DataError(f"{path}: pseudo-label of shape {mask.shape}, expected a gray image of {tuple(size)}")
    return torch.from_numpy(mask.astype(np.uint8))


class PseudoLabelledSet(SegmentationDataset):
    """``base`` whose images listed in ``masks`` (index -> PNG) come with their pseudo-label as ``"mask"`` and their
    name prefixed by ``tag`` (how a method tells them apart in a batch that mixes them with labelled images)."""

    def __init__(self, base: SegmentationDataset, masks: Mapping[int, Path], tag: str) -> None:
        self.base, self.masks, self.tag = base, {int(k): Path(v) for k, v in masks.items()}, tag
        self.info = base.info

    def __len__(self) -> int:
        return len(self.base)

    def names(self) -> List[str]:
        return [self.tag + n if i in self.masks else n for i, n in enumerate(self.base.names())]

    def load(self, index: int) -> Dict[str, object]:
        item = dict(self.base[index])
        path = self.masks.get(int(index))
        if path is not None:
            item["mask"] = read_mask_png(path, item["image"].shape[-2:])
            item["name"] = self.tag + str(item.get("name", index))
        return item


def with_pseudo_labels(data: TrainData, masks: Mapping[int, Path], tag: str) -> TrainData:
    """Labelled ∪ pseudo-labelled as ONE labelled stream, the labelled list repeated ``ceil(P / L)`` times as in
    ST++'s ``dataset/semi.py`` (so a batch holds about as many labelled as pseudo-labelled images)."""
    labelled = list(data.labelled_idx)
    repeat = max(1, math.ceil(len(masks) / max(1, len(labelled))))
    return TrainData(PseudoLabelledSet(data.train, masks, tag), data.val, labelled * repeat + sorted(masks), [])


class Snapshots(HookBase):
    """Saves the inference network as ``<folder>/snapshot_<step>.pt`` after each step in ``steps``."""

    def __init__(self, steps: Sequence[int], folder: Path) -> None:
        self.steps, self.folder = set(int(s) for s in steps), Path(folder)

    def after_step(self) -> None:
        if self.loop.step in self.steps:
            self.loop.save_inference_checkpoint(self.folder / f"snapshot_{self.loop.step}.pt")


# -- the staged run ---------------------------------------------------------------------------------------------------
class StagedRun:
    """Runs and records the stages of one staged method run; ``budget`` maps each training stage to its steps."""

    def __init__(self, cfg: TrainConfig, budget: Mapping[str, int], tag: str) -> None:
        self.cfg, self.budget, self.tag = cfg, dict(budget), tag
        self.root = Path(cfg.out) / cfg.run_name()
        if (self.root / "config.json").exists() and not cfg.resume:
            raise ConfigError(f"{self.root} already holds a run; pass --resume to continue it or choose another --name")
        bad = {k: v for k, v in self.budget.items() if int(v) < 1}
        if bad:
            raise ConfigError(f"steps={cfg.steps} leaves training stages without steps: {bad}; raise --steps")
        self.log = RunFolder(self.root)
        self.device = resolve_device(cfg.device)
        self.amp_dtype = resolve_amp(cfg.amp, self.device)
        self.data = build_train_data(cfg, Path(cfg.split_file) if cfg.split_file else self.root / "split.json")
        labelled = set(self.data.labelled_idx)
        self.unlabelled = [i for i in self.data.unlabelled_idx if i not in labelled]
        if not self.unlabelled:
            raise ConfigError(f"labelled={cfg.labelled!r} leaves no unlabelled image for {cfg.method} to pseudo-label")
        write_json_atomic(self.root / "config.json", {**cfg.to_dict(), "stage_steps": self.budget})

    def completed(self, name: str) -> Optional[Dict]:
        """The record of stage ``name`` if it has completed, else None."""
        p = self.root / name / "stage.json"
        if not p.is_file():
            return None
        try:
            rec = json.loads(p.read_text())
        except ValueError as exc:
            raise ConfigError(f"{p}: unreadable stage record ({exc}); delete it to redo the stage") from exc
        return rec if rec.get("complete") else None

    def record(self, name: str, kind: str, work: Callable[[Path], Dict]) -> Dict:
        """Run ``work(stage_folder) -> dict`` unless stage ``name`` is complete; write and return its record."""
        done = self.completed(name)
        if done is not None:
            self.log.info(f"{name}: complete, skipped")
            return done
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        self.log.info(f"{name}: running")
        t0 = time.perf_counter()
        rec = {"stage": name, "kind": kind, **work(folder)}
        rec.update(seconds=round(time.perf_counter() - t0, 3), complete=True)
        write_json_atomic(folder / "stage.json", rec)
        return rec

    def train(self, name: str, pseudo: Sequence[Dict] = (), snapshots: Sequence[int] = ()) -> Dict:
        """A training stage: a new model from scratch on the labelled images (and the pseudo-labelled images of the
        ``pseudo`` stage records, then batch = labelled + unlabelled batch size); keeps a snapshot after each step
        in ``snapshots``. The record holds the stage config, the fit summary and the checkpoints' paths."""
        def work(folder: Path) -> Dict:
            cfg = self.cfg
            masks = {e["index"]: self.root / e["file"] for rec in pseudo for e in rec["images"]}
            data = with_pseudo_labels(self.data, masks, self.tag) if masks else self.data
            batch = cfg.batch_size + (cfg.unlabelled_batch_size or cfg.batch_size) if masks else cfg.batch_size
            scfg = dataclasses.replace(cfg, name=f"{cfg.run_name()}/{name}", steps=int(self.budget[name]), batch_size=batch)
            keep = sorted(set(snapshots))

            summary = Trainer(scfg, data=data).fit(hooks=[Snapshots(keep, folder)] if keep else [])
            for s in keep:
                if not (folder / f"snapshot_{s}.pt").is_file():
                    raise CheckpointError(f"{folder / f'snapshot_{s}.pt'}: snapshot missing; delete {folder} and re-run")
            return {"config": scfg.to_dict(), "summary": summary, "best": f"{name}/best.pt",
                    "snapshots": [f"{name}/snapshot_{s}.pt" for s in snapshots],
                    "data": {"labelled": len(self.data.labelled_idx), "pseudo_labelled": len(masks), "batch_size": batch}}

        return self.record(name, "train", work)

    def mode_for(self, image: torch.Tensor) -> str:
        """Whole-image or sliding-window inference, by the run's ``eval_mode`` (see :func:`.evaluator.image_mode`)."""
        return image_mode(self.cfg.eval_mode, *image.shape[-2:], self.cfg.eval_window)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None)

    def pseudo_label(self, name: str, checkpoint: str, indices: Sequence[int], scales: Sequence[float], flip: bool) -> Dict:
        """A pseudo-label stage: TTA argmax of ``checkpoint`` (relative to the run folder) for each image of
        ``indices``, written to ``<stage>/masks/<index>.png``. If the images have ground truth, its mIoU against the
        pseudo-labels is recorded as a diagnostic (as the official ``label()`` prints it); nothing uses it."""

        def work(folder: Path) -> Dict:
            model, _ = load_inference_model(self.root / checkpoint, map_location=self.device)
            names, n = self.data.train.names(), self.data.info.num_classes
            cm, counts, entries = ConfusionMatrix(n, self.device), torch.zeros(n, dtype=torch.int64), []
            bar = tqdm(total=len(indices), desc=name, disable=not self.cfg.progress, leave=False)
            for idx, image, mask in image_batches(self.data.train, indices, self.cfg.eval_batch_size):
                x = image.to(self.device).float().div_(255.0)
                with self._autocast():
                    label = tta_probs(model, x, scales, flip, self.mode_for(x), self.cfg.eval_window).argmax(1)
                if mask is not None:
                    cm.update(label, mask.to(self.device).long())
                label = label.cpu()
                counts += torch.bincount(label.reshape(-1), minlength=n)
                for i, lab in zip(idx, label):
                    write_mask_png(folder / "masks" / f"{i:06d}.png", lab.numpy().astype(np.uint8))
                    entries.append({"index": i, "name": names[i], "file": f"{name}/masks/{i:06d}.png"})
                bar.update(len(idx))
            bar.close()
            scored = int(cm.mat.sum()) > 0
            return {"config": {"checkpoint": checkpoint, "scales": list(scales), "flip": flip, "storage": "grayscale uint8 PNG"},
                    "metrics": {"images": len(entries), "class_fraction": (counts / counts.sum().clamp(min=1)).tolist(),
                                "diagnostic_miou_vs_ground_truth": cm.compute()["miou"] if scored else None},
                    "images": entries}

        return self.record(name, "pseudo", work)

    @torch.no_grad()
    def predict_labels(self, checkpoints: Sequence[str], indices: Sequence[int]) -> Iterator[Tuple[int, List[torch.Tensor]]]:
        """``(index, [argmax map of each checkpoint])`` for every image of ``indices`` (plain inference, no TTA)."""
        cache: Dict[str, nn.Module] = {}
        for c in checkpoints:
            if c not in cache:
                cache[c] = load_inference_model(self.root / c, map_location=self.device)[0]
        models = [cache[c] for c in checkpoints]
        for idx, image, _ in image_batches(self.data.train, indices, self.cfg.eval_batch_size):
            x = image.to(self.device).float().div_(255.0)
            with self._autocast():
                maps = [predict_probs(m, x, self.mode_for(x), self.cfg.eval_window).argmax(1).cpu() for m in models]
            for j, i in enumerate(idx):
                yield i, [m[j] for m in maps]

    def finish(self, final: Dict) -> Dict:
        """Copy the final stage's best checkpoint to the run folder; return the run summary (``Trainer.fit``'s keys:
        metrics and table of the final stage, ``steps`` summed over all training stages)."""
        with atomic_path(self.root / "best.pt") as tmp:
            shutil.copyfile(self.root / final["best"], tmp)
        s = final["summary"]
        self.log.info(f"{self.cfg.method}: final stage {final['stage']} best mIoU {100 * s['best_miou']:.2f}")
        return {"run_dir": str(self.root), "best_miou": s["best_miou"], "best_step": s["best_step"],
                "final_miou": s["final_miou"], "steps": sum(int(v) for v in self.budget.values()), "table": s["table"]}
