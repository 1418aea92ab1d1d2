"""Self-training (ST) and ST++: pseudo-label the unlabelled images with a supervised model, re-train from scratch.

Paper: Yang, Zhuo, Qi, Shi, Gao, "ST++: Make Self-training Work Better for Semi-supervised Semantic Segmentation",
CVPR 2022. Official code: LiheYoung/ST-PlusPlus (``train.py``, ``dataset/semi.py``, ``dataset/transform.py``,
``model/semseg/base.py``). Both methods run in stages, all in one command; each stage is a sub-folder of the run
folder closed by a ``stage.json`` record (see :mod:`semiseg_sdk.engine.stages`), and ``--resume`` skips finished stages:

* ``self-training`` (ST): ``stage1_sup`` SupOnly on the labelled images -> ``stage2_pseudo`` pseudo-label every
  unlabelled image with the best SupOnly model, TTA over scales {0.5, 0.75, 1, 1.5, 2} x hflip (summed softmax,
  argmax), stored as PNGs -> ``stage3_retrain`` a NEW model from scratch on labelled ∪ pseudo-labelled.
* ``st++``: ``stage1_sup`` SupOnly, keeping K = 3 snapshots (1/3, 2/3 and the end of the stage) -> ``stage2_select``
  stability score of every unlabelled image (:mod:`.stability`; mean mIoU of snapshots k < K against snapshot K),
  top 50 % reliable -> ``stage3_pseudo_reliable`` (best SupOnly model) -> ``stage4_retrain_reliable`` from scratch on
  labelled ∪ reliable -> ``stage5_pseudo_unreliable`` (best model of stage 4) -> ``stage6_retrain_all`` from scratch.

Step budget (``split_steps=True``, the default): ``--steps`` is SHARED by the training stages, so a benchmark with a
fixed step budget compares fairly with single-stage methods: ST gives half to SupOnly and half to the re-training;
ST++ gives a third to each of its three training stages. SupOnly steps see ``batch_size`` labelled images; a
re-training step sees ``batch_size + unlabelled_batch_size`` images drawn from labelled ∪ pseudo-labelled, the
labelled list repeated ``ceil(P / L)`` times (the official ``dataset/semi.py``), so about half of each batch is
labelled. ``split_steps=False`` gives every training stage the full ``--steps``, as the official code does (every
stage trains for the full 80 / 240 epochs), i.e. 2x (ST) or 3x (ST++) the compute of a single-stage method.

The training step: one weak view (scale, crop, flip) of the batch; the pseudo-labelled images (their names carry
``PSEUDO_TAG``, set by the dataset wrapper of the staged run) also get the strong view (colour jitter p=0.8, grayscale
p=0.2, blur p=0.5) and CutOut with p=0.5 (a box of U(0.02, 0.4) of the crop, aspect U(0.3, 1/0.3), filled with
uniform noise, labels ignored there); one cross-entropy over all pixels of the batch, as the official single loader
and single criterion compute it. ``sup`` / ``unsup`` log the labelled / pseudo-labelled parts of that loss.

Differences from the official code: DeepLab-v3+/PSPNet/DeepLab-v2 -> any Segmentor; iterations instead of epochs (the
K snapshots and the budget are in steps); bilinear resizes use ``align_corners=False``; the supervised batch is not
padded to a square crop but cropped by the shared weak view (padding is ignore, 255).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from ..augment import box_masks, cutout, mix
from ..data.base import IGNORE_INDEX
from ..errors import ConfigError
from .base import Method, MethodConfig, OpenStagedRun
from .registry import register_method
from .stability import image_stability, split_reliable

PSEUDO_TAG = "pseudo-label::"  # name prefix of pseudo-labelled images in a training batch


def pseudo_flags(x: Dict[str, Any], device: torch.device) -> torch.Tensor:
    """(B,) bool: which images of the batch carry pseudo-labels (all False for a batch without names)."""
    names = list(x.get("name") or [])
    flags = [str(n).startswith(PSEUDO_TAG) for n in names]
    if len(flags) != x["image"].shape[0]:
        flags = [False] * x["image"].shape[0]
    return torch.tensor(flags, dtype=torch.bool, device=device)


def stage_steps(steps: int, stages: int, split: bool) -> List[int]:
    """Steps of each training stage: ``steps`` shared as equally as possible (the last gets the rest), or all of it each."""
    if not split:
        return [int(steps)] * stages
    share = int(steps) // stages
    return [share] * (stages - 1) + [int(steps) - share * (stages - 1)]


@register_method("self-training")
class SelfTraining(Method):
    """ST: SupOnly -> TTA pseudo-labels of all unlabelled images -> re-training from scratch (strong view on them)."""

    family = "self-training (offline pseudo-labels)"
    staged = True
    uses_unlabelled = False  # the re-training stages serve pseudo-labelled images in the labelled stream

    @dataclasses.dataclass(frozen=True)
    class Config(MethodConfig):
        tta_scales: Tuple[float, ...] = (0.5, 0.75, 1.0, 1.5, 2.0)  # LiheYoung/ST-PlusPlus model/semseg/base.py (tta=True)
        tta_flip: bool = True  # same file: every scale also predicted flipped
        cutout_p: float = 0.5  # LiheYoung/ST-PlusPlus dataset/transform.py cutout(p=0.5), on pseudo-labelled images
        split_steps: bool = True  # SDK: --steps shared by the training stages (official: each stage trains fully)

        def __post_init__(self) -> None:
            if not self.tta_scales or any(float(s) <= 0 for s in self.tta_scales):
                raise ConfigError(f"tta_scales must be positive numbers, got {self.tta_scales!r}")
            if not 0.0 <= self.cutout_p <= 1.0:
                raise ConfigError(f"cutout_p must lie in [0, 1], got {self.cutout_p!r}")

    def training_step(self, x: Dict[str, torch.Tensor], u: Optional[Dict[str, torch.Tensor]], step: int) -> Dict[str, torch.Tensor]:
        v = self.views.weak(x)
        pseudo = pseudo_flags(x, v.image.device)
        image, mask = v.image, v.mask
        if bool(pseudo.any()):  # strong view + CutOut on the pseudo-labelled images only
            img_u_s = self.views.strong(image[pseudo])
            b, _, h, w = img_u_s.shape
            box = box_masks(b, (h, w), p=self.cfg.cutout_p, device=img_u_s.device)
            img_u_s = mix(img_u_s, torch.rand_like(img_u_s), box)  # the box is filled with uniform noise ...
            _, mask_u = cutout(img_u_s, mask[pseudo], box)  # ... and its labels are ignored
            image, mask = image.clone(), mask.clone()
            image[pseudo], mask[pseudo] = img_u_s, mask_u

        pred = self.model(image)
        loss_map = F.cross_entropy(pred.float(), mask, ignore_index=IGNORE_INDEX, reduction="none")
        counted = mask != IGNORE_INDEX
        loss = loss_map.sum() / counted.sum().clamp(min=1)
        sup = _mean_where(loss_map, counted & ~pseudo[:, None, None])
        unsup = _mean_where(loss_map, counted & pseudo[:, None, None])
        return {"loss": loss, "sup": sup, "unsup": unsup, "pseudo_fraction": pseudo.float().mean()}

    @classmethod
    def run_stages(cls, cfg, open_run: OpenStagedRun) -> Dict[str, Any]:
        """ST in three stages (see the module docstring); returns the summary of the final stage."""
        opts = cls.make_config(cfg.method_args)
        s1, s2 = stage_steps(cfg.steps, 2, opts.split_steps)
        run = open_run({"stage1_sup": s1, "stage3_retrain": s2}, PSEUDO_TAG)
        sup = run.train("stage1_sup")
        pseudo = run.pseudo_label("stage2_pseudo", sup["best"], run.unlabelled, opts.tta_scales, opts.tta_flip)
        final = run.train("stage3_retrain", pseudo=[pseudo])
        return run.finish(final)


@register_method("st++")
class STPlusPlus(SelfTraining):
    """ST++: ST with selective re-training, reliable (stable) images first, the unreliable half by the better model."""

    @dataclasses.dataclass(frozen=True)
    class Config(SelfTraining.Config):
        checkpoints: int = 3  # LiheYoung/ST-PlusPlus train.py: models kept at epochs E/3, 2E/3 and E (K = 3)
        reliable_fraction: float = 0.5  # train.py select_reliable: the first len // 2 after sorting

        def __post_init__(self) -> None:
            super().__post_init__()
            if int(self.checkpoints) < 2:
                raise ConfigError(f"checkpoints must be at least 2 (K-1 earlier models vs the final one), got {self.checkpoints!r}")
            if not 0.0 < self.reliable_fraction < 1.0:
                raise ConfigError(f"reliable_fraction must lie strictly between 0 and 1, got {self.reliable_fraction!r}")

    @classmethod
    def run_stages(cls, cfg, open_run: OpenStagedRun) -> Dict[str, Any]:
        """ST++ in six stages (see the module docstring); returns the summary of the final stage."""
        opts = cls.make_config(cfg.method_args)
        s1, s2, s3 = stage_steps(cfg.steps, 3, opts.split_steps)
        k = int(opts.checkpoints)
        run = open_run({"stage1_sup": s1, "stage4_retrain_reliable": s2, "stage6_retrain_all": s3}, PSEUDO_TAG)
        sup = run.train("stage1_sup", snapshots=[max(1, i * s1 // k) for i in range(1, k + 1)])
        select = run.record("stage2_select", "select", lambda folder: select_reliable(run, sup["snapshots"], opts.reliable_fraction))
        reliable = [e["index"] for e in select["reliable"]]
        unreliable = [e["index"] for e in select["unreliable"]]
        pseudo1 = run.pseudo_label("stage3_pseudo_reliable", sup["best"], reliable, opts.tta_scales, opts.tta_flip)
        retrain1 = run.train("stage4_retrain_reliable", pseudo=[pseudo1])
        pseudo2 = run.pseudo_label("stage5_pseudo_unreliable", retrain1["best"], unreliable, opts.tta_scales, opts.tta_flip)
        final = run.train("stage6_retrain_all", pseudo=[pseudo1, pseudo2])
        return run.finish(final)


def select_reliable(run: Any, snapshots: List[str], fraction: float) -> Dict[str, Any]:
    """The ``stage2_select`` record: stability score of every unlabelled image, reliable / unreliable lists."""
    names, n = run.data.train.names(), run.data.info.num_classes
    scored = [(i, image_stability(maps, n)) for i, maps in run.predict_labels(snapshots, run.unlabelled)]
    reliable, unreliable = split_reliable(scored, fraction)

    def listed(part: List[Tuple[int, float]]) -> List[Dict[str, Any]]:
        return [{"index": i, "name": names[i], "score": s} for i, s in part]

    return {"config": {"snapshots": list(snapshots), "reliable_fraction": fraction},
            "metrics": {"images": len(scored), "mean_score": sum(s for _, s in scored) / len(scored),
                        "reliable_min_score": reliable[-1][1] if reliable else None},
            "reliable": listed(reliable), "unreliable": listed(unreliable)}


def _mean_where(loss_map: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean of ``loss_map`` over ``keep`` (0 when nothing is kept), for logging the parts of the pooled loss."""
    return (loss_map * keep).sum() / keep.sum().clamp(min=1)
