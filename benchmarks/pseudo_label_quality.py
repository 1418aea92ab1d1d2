"""How good are a trained model's confident predictions as pseudo-labels? Per class, on a fixed random draw of the
unlabelled images of its run's split (the run folder's split.json; patches for a patched run), whose true masks the
benchmark knows (synthetic or fully labelled sets). All-label runs, which leave nothing unlabelled, are skipped.

For each run: the share of pixels whose top softmax probability reaches the threshold (FixMatch's mask ratio), the
precision of those pixels, and per true class the share of its pixels that are confident and how many of those are
predicted correctly. A class whose confident pixels are mostly wrong is taught its own errors by any
threshold-based pseudo-labelling method.

``--mode`` sets how the network predicts: ``eval`` (running BatchNorm statistics, no dropout: an EMA teacher in eval
mode), ``train`` (BatchNorm on the batch's statistics, the model's dropout active: FixMatch/UniMatch's weak forward
before method revision 2) or ``train-nodropout`` (batch statistics, dropout off: the official networks, which have none).

``--dist_align`` adds a row per run and mode with the probabilities distribution-aligned first (ReMixMatch, Berthelot
et al. ICLR 2020: ``p * prior / mean(p)``, renormalised; ``prior`` = the class frequencies of the run's labelled
images, ``mean(p)`` = the network's mean probability over the scored pixels): what class-aware pseudo-labelling by
alignment would change in the confident set, measured before anyone trains with it.

Each row also gives, per class, its share of the confident set (pixels predicted ``c`` at or above the threshold,
over all confident pixels) divided by its share of the run's labelled pixels: 1 where pseudo-labels carry the class
as often as the labels do, near 0 where the unsupervised loss teaches that the class does not exist (what the
``class_balance`` lever of FixMatch/UniMatch reweights).

``--view crop`` (the default) predicts each image by one crop of the run's training crop size, at a position drawn
with a fixed seed (the same crops for every run of a split): what the network sees when it pseudo-labels a weak view
in training (the view's random scale aside). ``--view whole`` predicts whole images (a 256-px patch of a run trained
on 96-px crops gets context it never had in training, and other predictions). ``--checkpoint last`` scores the
run's final weights (the protocol's row) instead of its best evaluation.

Each row also says where the confident errors go: the (true class -> predicted class) pairs that hold the largest
shares of the confident set, the pixels a threshold-based method teaches wrongly.

``--tta 0.75 1 1.5`` predicts with the mean over those scales, each as is and mirrored: how much a test-time-augmented
teacher would raise the precision of the confident set.

    python benchmarks/pseudo_label_quality.py bench/sup_long/runs/synthetic-driving-1of16-supervised-s0 \
        bench/sup_long/runs/synthetic-driving-1of16-fixmatch-s0 --images 200 --threshold 0.95
"""
from __future__ import annotations

import argparse
import json
import random
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch

from semiseg_sdk.data.patches import run_training_set
from semiseg_sdk.data.splits import load_split
from semiseg_sdk.models.checkpoint import load_inference_model
from semiseg_sdk.models.checkpoint import run_config
from semiseg_sdk.engine.metrics import ConfusionMatrix
from semiseg_sdk.engine.stages import tta_probs
from semiseg_sdk.methods.layer_modes import dropout_off
from semiseg_sdk.methods.pseudo_labels import class_frequencies

MODES = ("eval", "train", "train-nodropout")


@contextmanager
def prediction_mode(model: torch.nn.Module, mode: str) -> Iterator[None]:
    """Put ``model`` in one of :data:`MODES` for the block; its modes and buffers are restored after (a forward pass
    in a ``train`` mode moves batch-norm running statistics, which would change every later ``eval`` prediction)."""
    was = model.training
    buffers = [(b, b.clone()) for b in model.buffers()]
    model.train(mode != "eval")
    try:
        with dropout_off(model, enabled=mode == "train-nodropout"):
            yield
    finally:
        model.train(was)
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)


def predict(model: torch.nn.Module, x: torch.Tensor, mode: str) -> torch.Tensor:
    """Softmax of ``model`` on ``x`` in one of :data:`MODES` (the model's modes are restored)."""
    with prediction_mode(model, mode):
        return model(x).softmax(1)


def predict_tta(model: torch.nn.Module, x: torch.Tensor, mode: str, scales: Sequence[float]) -> torch.Tensor:
    """Mean over ``scales`` x {as is, mirrored} of the SDK's pseudo-labelling TTA (:func:`tta_probs`) in ``mode``."""
    with prediction_mode(model, mode):
        return tta_probs(model, x, scales, flip=True) / (2 * len(scales))


def distribution_align(probs: torch.Tensor, prior: torch.Tensor, pred_mean: torch.Tensor) -> torch.Tensor:
    """ReMixMatch's distribution alignment of (B,C,H,W) ``probs``: scale class c by ``prior[c] / pred_mean[c]``, renormalise."""
    scaled = probs * (prior / pred_mean.clamp(min=1e-8)).view(1, -1, 1, 1)
    return scaled / scaled.sum(dim=1, keepdim=True).clamp(min=1e-12)


def confident_set_balance(probs: List[torch.Tensor], truth: List[torch.Tensor], threshold: float,
                          prior: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Two (C,) tensors for per-batch (B,C,H,W) ``probs`` and their (B,H,W) true masks ``truth``: each class's share of
    the confident pixels (predicted that class with top probability >= ``threshold``) divided by its share ``prior`` of
    the labelled pixels (0 where the prior is 0), and the share of those predicted-``c`` pixels that are truly ``c``."""
    c = prior.numel()
    counts, right = torch.zeros(c), torch.zeros(c)
    for p, y in zip(probs, truth):
        conf, pred = p.max(1)
        sure = conf >= threshold
        counts += torch.bincount(pred[sure].flatten(), minlength=c)[:c].float()
        right += torch.bincount(pred[sure & (pred == y)].flatten(), minlength=c)[:c].float()
    share = counts / counts.sum().clamp(min=1)
    balance = torch.where(prior > 0, share / prior.clamp(min=1e-12), torch.zeros_like(share))
    return balance, right / counts.clamp(min=1)


def fixed_crops(images: torch.Tensor, masks: torch.Tensor, size: Sequence[int],
                seeds: Sequence[int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """One ``size`` (h, w) crop of each (N,C,H,W) image and its (N,H,W) mask, image ``i`` at a position drawn by
    ``random.Random(seeds[i])`` (so an image's crop does not depend on its batch; sides larger than the image keep
    the image's)."""
    h, w = min(int(size[0]), images.shape[-2]), min(int(size[1]), images.shape[-1])
    out_x, out_y = [], []
    for x, y, seed in zip(images, masks, seeds):
        rng = random.Random(seed)
        top, left = rng.randint(0, x.shape[-2] - h), rng.randint(0, x.shape[-1] - w)
        out_x.append(x[:, top:top + h, left:left + w])
        out_y.append(y[top:top + h, left:left + w])
    return torch.stack(out_x), torch.stack(out_y)


def confident_errors(probs: List[torch.Tensor], truth: List[torch.Tensor], threshold: float, classes: Sequence[str],
                     top: int = 3) -> List[Tuple[str, str, float]]:
    """The ``top`` (true class, predicted class, share of the confident pixels) pairs of confident wrong pixels,
    largest share first: what a threshold at ``threshold`` teaches wrongly, and as what."""
    c = len(classes)
    matrix = ConfusionMatrix(c)  # of the confident pixels (ignored truth skipped)
    for p, y in zip(probs, truth):
        conf, pred = p.max(1)
        sure = conf >= threshold
        matrix.update(pred[sure], y[sure])
    pairs = matrix.mat.double()
    confident = max(float(pairs.sum()), 1.0)
    wrong = pairs.fill_diagonal_(0).flatten()
    order = wrong.argsort(descending=True)[:top]
    return [(classes[int(i) // c], classes[int(i) % c], float(wrong[i]) / confident) for i in order if wrong[i] > 0]


class NothingToScore(ValueError):
    """A run whose split leaves no unlabelled image."""


def unlabelled_sample(names: Sequence[str], count: int, seed: int = 0) -> List[str]:
    """``count`` of a split's unlabelled ``names`` drawn at random with a fixed seed, in drawn order: the same draw for
    every run of one split, spread over the whole set (a split lists patches tile by tile: its first 200 come from a
    few tiles), and batches that mix images as the training stream's shuffled batches do (batch statistics in the
    ``train`` modes)."""
    return random.Random(seed).sample(list(names), min(count, len(names)))


def quality(run: Path, threshold: float, images: int, modes: Sequence[str] = ("eval",), batch: Optional[int] = None,
            dist_align: bool = False, tta: Sequence[float] = (), view: str = "crop",
            checkpoint: str = "best") -> List[Dict[str, object]]:
    """Mask ratio, precision of confident pixels and per-class (confident share, confident precision) of ``run`` on
    ``images`` of its split's unlabelled images (:func:`unlabelled_sample`), ``batch`` at a time (default: the run's
    batch size; the ``train`` modes' batch statistics depend on it).

    One row per prediction mode in ``modes`` (the run's checkpoint and images are loaded once for all of them; the
    dropout draws of a ``train`` mode start from seed 0 for each mode); with ``dist_align`` a second row per mode
    (``<mode>+DA``) scores the same predictions aligned to the labelled images' class frequencies
    (:func:`distribution_align`, the network's mean taken over the scored pixels). ``view`` "crop" predicts one
    :func:`fixed_crops` crop of the run's training crop size per image, "whole" whole images; ``checkpoint`` "best"
    or "last" (the final weights)."""
    weights = run / f"{checkpoint}.pt"
    model, ckpt = load_inference_model(weights if weights.is_file() else run)
    cfg = run_config(ckpt)
    ds = run_training_set(cfg)  # the items its split file names: patches for a run with --patch_size
    names = ds.names()
    split = load_split(run / "split.json", names)
    index = {n: i for i, n in enumerate(names)}
    chosen = [index[n] for n in unlabelled_sample(split.unlabelled, images)]
    if not chosen:
        raise NothingToScore(f"{run}: skipped, its split has no unlabelled images to score (an all-label run)")
    batch = batch or int(cfg.get("batch_size") or 8)
    classes = list(ds.info.classes)
    batches = []
    for s in range(0, len(chosen), batch):
        items = [ds[i] for i in chosen[s : s + batch]]
        x, y = torch.stack([it["image"] for it in items]).float() / 255, torch.stack([it["mask"] for it in items]).long()
        if view == "crop" and cfg.get("crop_size"):
            x, y = fixed_crops(x, y, cfg["crop_size"], seeds=chosen[s : s + batch])
        batches.append((x, y))
    truth = [y for _, y in batches]
    prior = class_frequencies(torch.stack([ds[index[n]]["mask"].long() for n in split.labelled]), len(classes))
    rows = []
    for mode in modes:
        torch.manual_seed(0)  # the dropout draws of --mode train
        with torch.no_grad():
            probs = [predict_tta(model, x, mode, tta) if tta else predict(model, x, mode) for x, _ in batches]
        name = mode + (f"+TTA{','.join(map(str, tta))}" if tta else "") + (" whole" if view == "whole" else "")
        rows.append(_score(probs, truth, threshold, classes, run.name, name, prior))
        if dist_align:
            pred_mean = torch.cat(probs).mean(dim=(0, 2, 3))
            aligned = [distribution_align(p, prior, pred_mean) for p in probs]
            rows.append(_score(aligned, truth, threshold, classes, run.name, name + "+DA", prior))
    return rows


def _score(probs: List[torch.Tensor], truth: List[torch.Tensor], threshold: float, classes: List[str], run: str,
           mode: str, prior: torch.Tensor) -> Dict[str, object]:
    """The row of :func:`quality` for per-batch (B,C,H,W) probabilities against their (B,H,W) true masks."""
    c = len(classes)
    total, confident, correct = torch.zeros(c), torch.zeros(c), torch.zeros(c)
    for p, y in zip(probs, truth):
        conf, pred = p.max(1)
        sure = conf >= threshold
        for k in range(c):
            is_k = y == k
            total[k] += is_k.sum()
            confident[k] += (sure & is_k).sum()
            correct[k] += (sure & is_k & (pred == k)).sum()
    return {
        "run": run, "mode": mode, "mask_ratio": float(confident.sum() / total.sum()),
        "precision": float(correct.sum() / confident.sum().clamp(min=1)),
        "classes": {classes[k]: (float(confident[k] / total[k].clamp(min=1)), float(correct[k] / confident[k].clamp(min=1)))
                    for k in range(c)},
        "balance": dict(zip(classes, zip(*(t.tolist() for t in confident_set_balance(probs, truth, threshold, prior))))),
        "errors": confident_errors(probs, truth, threshold, classes),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run folders (with best.pt or last.pt, config.json and split.json)")
    p.add_argument("--threshold", type=float, default=0.95)
    p.add_argument("--images", type=int, default=200, help="unlabelled images to score")
    p.add_argument("--mode", nargs="+", default=["eval"], choices=MODES, help="how the network predicts (one row each)")
    p.add_argument("--dist_align", action="store_true", help="also score each run and mode with distribution alignment")
    p.add_argument("--tta", type=float, nargs="*", default=(), metavar="SCALE",
                   help="predict as the mean over these scales, each as is and mirrored (e.g. --tta 0.75 1 1.5)")
    p.add_argument("--view", default="crop", choices=("crop", "whole"),
                   help="predict one crop of the run's training crop size per image (as training's weak view), or "
                        "whole images")
    p.add_argument("--checkpoint", default="best", choices=("best", "last"), help="the run's best or final weights")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args()
    results = []
    for r in args.runs:
        try:
            results += quality(Path(r), args.threshold, args.images, modes=args.mode, dist_align=args.dist_align,
                               tta=args.tta, view=args.view, checkpoint=args.checkpoint)
        except NothingToScore as exc:  # the other runs are still scored
            print(exc, flush=True)
    print(f"threshold {args.threshold}, {args.images} unlabelled images ({args.view}, {args.checkpoint} weights); cells: % of the class's pixels confident / % of those correct")
    classes = None
    for r in results:
        if list(r["classes"]) != classes:  # a header per data set: runs of different sets have different classes
            classes = list(r["classes"])
            print("\n| run | mode | mask ratio | precision | " + " | ".join(classes) + " |")
            print("|---|---|---|---|" + "---|" * len(classes))
        cells = " | ".join(f"{100 * a:.0f} / {100 * b:.0f}" for a, b in r["classes"].values())
        print(f"| {r['run']} | {r['mode']} | {100 * r['mask_ratio']:.0f} % | {100 * r['precision']:.1f} % | {cells} |")
    print("\nper class: its share of the confident set / its share of the labelled pixels (% of the pixels predicted as it"
          " that are right)")
    for r in results:
        print(f"| {r['run']} | {r['mode']} | "
              + " | ".join(f"{k} {b:.2f} ({100 * q:.0f} %)" for k, (b, q) in r["balance"].items()) + " |")
    print("\nwhere the confident errors go: true class -> predicted class (share of the confident pixels)")
    for r in results:
        print(f"| {r['run']} | {r['mode']} | "
              + " | ".join(f"{t} -> {p} ({100 * q:.1f} %)" for t, p, q in r["errors"]) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
