"""Evaluation in one place: a network on a labelled dataset (whole-image or sliding-window, confusion matrix and
metrics), and a saved model (run folder or checkpoint) on any dataset split."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..config import parse_pair
from ..data import DATASETS, build_dataset, run_dataset_kwargs
from ..data.folder import FileListDataset
from ..data.loader import leave_stop_signals_to_the_main_process, pad_collate
from ..errors import ConfigError, DataError
from ..models.checkpoint import config_scoring, load_inference_model, run_config
from ..utils.atomic import write_json_atomic
from ..utils.precision import resolve_device
from .confusion_plot import save_confusion
from .metrics import ConfusionMatrix, format_table
from .sliding_window import predict_whole, sliding_label_bands


def image_mode(mode: str, height: int, width: int, window: Sequence[int]) -> str:
    """The evaluation mode of one image: ``mode``, or for "auto" sliding window when the image is larger than the
    ``window`` (h, w) on either side, whole otherwise."""
    if mode != "auto":
        return mode
    return "slide" if height > window[0] or width > window[1] else "whole"


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Dataset,
    num_classes: int,
    class_names=None,
    device: torch.device | str = "cpu",
    mode: str = "auto",
    window: Optional[Tuple[int, int]] = None,
    stride: Optional[Tuple[int, int]] = None,
    batch_size: int = 4,
    num_workers: int = 0,
    progress: bool = False,
    amp_dtype: Optional[torch.dtype] = None,
) -> Dict[str, object]:
    """mIoU & co. of ``model`` on ``dataset``; returns the metric dict plus ``confusion`` (a numpy array).

    Every image is predicted at its own size, so the score does not depend on ``batch_size`` (images of one size
    share a network call). ``mode`` "whole" pads an image to the model's stride; "slide" averages the softmax of
    ``window`` crops (default 512x512) every ``stride`` pixels (default 2/3 of the window), one row of windows at a
    time (:func:`sliding_label_bands`: bounded memory for very large tiles); "auto" chooses per image (sliding
    window for an image larger than the window, whole otherwise).
    """
    if mode not in ("whole", "slide", "auto"):
        raise ValueError(f"evaluation mode must be 'whole', 'slide' or 'auto', got {mode!r}")
    device = torch.device(device)
    was_training = model.training
    model.eval()
    divisor = int(getattr(model, "size_divisor", 32))
    cm = ConfusionMatrix(num_classes, device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=pad_collate, num_workers=num_workers,
                        worker_init_fn=leave_stop_signals_to_the_main_process)
    win = tuple(window or (512, 512))
    st = tuple(stride or (max(1, win[0] * 2 // 3), max(1, win[1] * 2 // 3)))
    for batch in tqdm(loader, desc="eval", disable=not progress, leave=False):
        valid = batch["valid"]
        sizes = [(int(v.any(1).sum()), int(v.any(0).sum())) for v in valid]  # items sit at the top left
        for (h, w) in sorted(set(sizes)):
            idx = [i for i, s in enumerate(sizes) if s == (h, w)]
            image = batch["image"][idx, :, :h, :w].to(device)
            mask = batch["mask"][idx, :h, :w].to(device)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                if image_mode(mode, h, w, win) == "slide":
                    for row, labels in sliding_label_bands(model, image, num_classes, win, st, divisor):
                        cm.update(labels, mask[:, row: row + labels.shape[1]])
                else:
                    cm.update(predict_whole(model, image.float().div_(255.0), divisor).argmax(1), mask)
    model.train(was_training)
    out = cm.compute(class_names)
    out["confusion"] = cm.mat.cpu().numpy()
    return out


def evaluate_checkpoint(
    checkpoint: str, data: Optional[str] = None, data_root: Optional[str] = None, split: Optional[str] = None,
    mode: Optional[str] = None, window: Optional[Union[int, Sequence[int]]] = None, device: str = "auto",
    data_args: Optional[dict] = None, save: Optional[str] = None, weights: str = "saved",
) -> Dict[str, Any]:
    """Load the inference network of ``checkpoint`` and evaluate it; returns metrics plus a printable ``table``.

    The dataset defaults to the one the checkpoint was trained on (with that run's dataset arguments) and ``split``
    to the split its run scored while training (its ``val_split``; "val" for another ``data`` or without a run
    config); ``mode`` and
    ``window`` (one number or H, W) to the ones its run was scored with while training (:func:`config_scoring` of its config.json), so
    the score repeats the run's own. ``weights``:
    ``"saved"`` (the network the checkpoint saves; a ``--weight_ema`` run's average) or ``"trained"`` (that run's
    weights as trained). ``metrics.json`` and the confusion matrix (CSV, PNG) are written to ``save``, by default
    ``eval-<data>-<split>/`` beside the checkpoint (``eval-<data>-<split>-trained/`` for the trained weights;
    returned as ``saved_to``).
    """
    if mode is not None and mode not in ("whole", "slide", "auto"):
        raise ConfigError(f"--mode {mode!r}: choose whole, slide or auto (auto: sliding window for images larger "
                          "than --window, whole otherwise)")
    given = None if window is None else parse_pair("window", window, int)
    dev = resolve_device(device)
    model, ckpt = load_inference_model(checkpoint, map_location="cpu", weights=weights)
    run_cfg = run_config(ckpt)  # {} without one
    run_mode, run_window, crop = config_scoring(run_cfg)
    mode, win = mode or run_mode, given or run_window
    warning = window_warning(win, crop, mode)
    if warning:
        warnings.warn(warning, EvalWindowWarning, stacklevel=2)
    model.to(dev)
    kwargs = dict(data_args or {})
    if split is None:
        split = str(run_cfg.get("val_split") or "val") if data is None else "val"
    if data is None:
        data, kwargs = training_dataset(ckpt, kwargs, run_cfg)
    if data_root is not None:
        kwargs["root"] = data_root
    ds = build_dataset(data, split=split, **kwargs)
    if isinstance(ds, FileListDataset) and not ds.labelled:
        missing = sum(mask is None for _, _, mask in ds.files)
        raise DataError(f"{data}:{split}: {missing} of its {len(ds)} images have no mask; evaluation needs a mask for each")
    if ds.info.num_classes != ckpt["dataset"]["classes"].__len__():
        raise ConfigError(f"{data}: {ds.info.num_classes} classes but the checkpoint predicts {len(ckpt['dataset']['classes'])}")
    res = evaluate(model, ds, ds.info.num_classes, ds.info.classes, dev, mode=mode, window=win, progress=True)
    confusion = res.pop("confusion")
    res.update(split=split, mode=mode, window=list(win), images=len(ds), weights=weights, table=format_table(res))
    default = f"eval-{data}-{split.replace('+', '-')}" + ("-trained" if weights == "trained" else "")
    folder = Path(save) if save else Path(ckpt["path"]).parent / default
    write_json_atomic(folder / "metrics.json", {k: v for k, v in res.items() if k != "table"})
    save_confusion(confusion, list(ds.info.classes), folder)
    res["saved_to"] = str(folder)
    return res


class EvalWindowWarning(UserWarning):
    """A sliding window several times the training crop: the network is scored on context it never learnt."""


def window_warning(window: Sequence[int], crop: Optional[Sequence[int]], mode: str = "auto") -> Optional[str]:
    """The warning for scoring a network trained on ``crop`` (H, W) by sliding ``window`` (H, W) in evaluation
    ``mode``: None in whole mode (no window slides) or unless the window is at least twice the crop on a side. A network trained on small crops scores lower on much larger
    windows (docs/benchmarks.md: 384-px windows cost a 96-px-crop network 4.7 mIoU on the real aerial set)."""
    if mode == "whole" or not crop or (window[0] < 2 * crop[0] and window[1] < 2 * crop[1]):
        return None
    return (f"evaluation window {window[0]}x{window[1]} is {max(window[0] / crop[0], window[1] / crop[1]):.1f}x the "
            f"training crop {crop[0]}x{crop[1]}: a network trained on small crops scores lower on much larger windows; "
            f"score it on windows of its crop (--window {crop[0]} or --eval_window {crop[0]},{crop[1]})")


def training_dataset(ckpt: Dict[str, Any], data_args: Dict[str, Any], run_cfg: Optional[Dict[str, Any]] = None) -> tuple:
    """``(registered dataset name, build_dataset kwargs)`` a checkpoint was trained on, from its run's config.json
    (``run_cfg`` when the caller has read it already):
    a ``folder`` run is rebuilt as ``folder`` with its root (the checkpoint only records the set's display name,
    e.g. ``dubai_aerial``). ``data_args``, when given, replace the run's dataset arguments (its root stays).
    Without a run config the checkpoint's dataset name is used; raises ConfigError when that is no registered
    dataset."""
    run_cfg = run_config(ckpt) if run_cfg is None else run_cfg
    if run_cfg.get("data"):
        kwargs = run_dataset_kwargs(run_cfg)
        if data_args:
            kwargs = {**data_args, **({"root": kwargs["root"]} if "root" in kwargs else {})}
        return run_cfg["data"], kwargs
    name = ckpt["dataset"]["name"]
    if name not in DATASETS.names():
        where = ckpt.get("path") or "the checkpoint"
        raise ConfigError(f"{where}: trained on {name!r}, which is no registered dataset, and no run config.json "
                          "was found next to it; pass --data (e.g. folder) and --data_root")
    return name, dict(data_args)
