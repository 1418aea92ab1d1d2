"""Pseudo-labels from logits and the masked pixel losses built on them, shared by confidence-based methods.

Conventions: confidences and losses are computed in float32 whatever the autocast dtype; ``valid`` (B,H,W) bool is
False on padding pixels (:class:`~semiseg_sdk.augment.View`), which never count in an unsupervised loss, not even in
its denominator (UniMatch divides by the number of non-padding pixels, its ``ignore_mask != 255``).
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..augment import mix
from ..errors import ConfigError
from ..data.base import IGNORE_INDEX


@torch.no_grad()
def pseudo_label(logits: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(conf, label)`` of (B,C,H,W) logits: float32 softmax maximum and argmax class, both (B,H,W), no gradient."""
    conf, label = logits.detach().float().softmax(dim=1).max(dim=1)
    return conf, label


def pixel_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel cross-entropy (B,H,W) in float32; pixels whose target is 255 give 0."""
    return F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX, reduction="none")


def mean_over_valid(loss_map: torch.Tensor, keep: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``sum(loss_map[keep]) / count(valid)``: kept pixels contribute, every valid pixel counts in the denominator.

    This is UniMatch/FixMatch's normalisation (confident pixels over all non-padding pixels); 0 if none is valid.
    """
    n = valid.sum().clamp(min=1).to(torch.float32)
    return (loss_map.float() * keep).sum() / n


Threshold = Union[float, torch.Tensor]  # one value, or one per pixel (B,H,W) (class-wise thresholds)


def confident_mask(conf: torch.Tensor, thresh: Threshold, valid: torch.Tensor) -> torch.Tensor:
    """Bool (B,H,W): valid pixels whose confidence reaches ``thresh`` (``>=``, as in the official code)."""
    return (conf >= thresh) & valid


def confident_fraction(conf: torch.Tensor, thresh: Threshold, valid: torch.Tensor) -> torch.Tensor:
    """Fraction of valid pixels with ``conf >= thresh``: the scalar loss weight of French et al. and ClassMix."""
    return confident_mask(conf, thresh, valid).sum().to(torch.float32) / valid.sum().clamp(min=1).to(torch.float32)


def masked_cross_entropy(logits: torch.Tensor, target: torch.Tensor, conf: torch.Tensor, thresh: Threshold,
                         valid: torch.Tensor, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """FixMatch/UniMatch unsupervised loss: CE on valid pixels with ``conf >= thresh``, divided by the valid count.

    ``weight`` (B,H,W), when given, scales each pixel's CE first (the class-balance lever, :class:`ClassBalance`)."""
    loss_map = pixel_cross_entropy(logits, target)
    if weight is not None:
        loss_map = loss_map * weight
    return mean_over_valid(loss_map, confident_mask(conf, thresh, valid), valid)


def class_frequencies(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C,) share of each class among the pixels of ``labels`` (any shape) whose value is a class; 255 and other
    out-of-range values are skipped; all zeros if none is left."""
    m = labels[(labels >= 0) & (labels < num_classes)]
    counts = torch.bincount(m.flatten(), minlength=num_classes)[:num_classes].float()
    return counts / counts.sum().clamp(min=1)


class Target(NamedTuple):
    """A pseudo-label map: ``label`` long, ``conf`` float32 and ``valid`` bool, all (B,H,W)."""

    label: torch.Tensor
    conf: torch.Tensor
    valid: torch.Tensor

    def rolled(self) -> "Target":
        """The batch shifted by one sample (sample i gets sample i-1's maps): the CutMix partner of ``image.roll(1, 0)``."""
        return Target(*(t.roll(1, dims=0) for t in self))

    def mixed(self, other: "Target", m: torch.Tensor) -> "Target":
        """Take ``other`` where ``m`` (B,H,W) is True, this target elsewhere (the same rule as ``augment.mix``)."""
        return Target(*(mix(a, b, m) for a, b in zip(self, other)))


@torch.no_grad()
def eval_pseudo_label(model: nn.Module, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(conf, label)`` of ``model`` on ``image`` predicted in eval mode (BN statistics, no dropout); every layer's
    mode is restored (a layer a method had put in eval mode stays so).

    FixMatch/UniMatch predict their CutMix partner images this way (``model.eval()`` under ``torch.no_grad()``)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        logits = model(image)
    finally:
        for m, mode in modes:
            m.training = mode
    return pseudo_label(logits)


PARTNER_LABELS = ("weak", "eval")


def weak_logits(teacher: Optional[nn.Module], image: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """The logits a weak view's pseudo-label comes from: ``teacher(image)`` when a teacher is given (an EMA teacher
    lever of FixMatch/UniMatch), else the student's own prediction ``student_logits``."""
    if teacher is None:
        return student_logits
    with torch.no_grad():
        return teacher(image)


def cutmix_partner(model: nn.Module, image: torch.Tensor, weak: Target, mode: str) -> Target:
    """Pseudo-label of the CutMix partner of FixMatch/UniMatch, the unlabelled batch rolled by one sample.

    ``"weak"`` reuses ``weak``, the weak view's (train-mode) prediction of the very same images: no extra forward.
    ``"eval"`` predicts ``image`` once more in eval mode, as the official code predicts its separate partner batch."""
    if mode == "weak":
        return weak.rolled()
    if mode == "eval":
        conf, label = eval_pseudo_label(model, image)
        return Target(label, conf, weak.valid).rolled()
    raise ConfigError(f"partner_label must be one of {PARTNER_LABELS}, got {mode!r}")
