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


class ClassThresholds(nn.Module):
    """Class-wise confidence thresholds (an opt-in lever, not in the official FixMatch/UniMatch recipes).

    With one threshold for all, classes the model is less sure of (thin structures: poles, people, signs) rarely
    reach it, get almost no pseudo-labels and fade. Here class ``c``'s threshold is ``thresh * m_c / max_k m_k``,
    ``m_c`` an EMA (``momentum``) of the mean confidence of the valid pixels pseudo-labelled ``c``, so the most
    confident class keeps ``thresh`` and the others are scaled by how confident the model typically is on them (the
    per-class normalisation of FreeMatch's self-adaptive thresholds, Wang et al. ICLR 2023, without its global
    schedule). Every ``m_c`` starts at 1 (all thresholds at ``thresh``); classes absent from a batch keep theirs.
    The EMA is a buffer: it is saved with the method and resumes exactly."""

    def __init__(self, num_classes: int, thresh: float, momentum: float = 0.999) -> None:
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ConfigError(f"class_threshold_momentum must lie in [0, 1), got {momentum!r}")
        self.thresh, self.momentum = float(thresh), float(momentum)
        self.register_buffer("mean_conf", torch.ones(num_classes))

    @torch.no_grad()
    def update(self, conf: torch.Tensor, label: torch.Tensor, valid: torch.Tensor) -> None:
        """Move each present class's mean confidence towards this batch's (weak-view pseudo-labels)."""
        n = self.mean_conf.numel()
        label, conf = label[valid], conf[valid].float()
        counts = torch.bincount(label, minlength=n)[:n]
        sums = torch.zeros(n, device=conf.device).scatter_add_(0, label, conf)
        present = counts > 0
        batch_mean = sums / counts.clamp(min=1)
        self.mean_conf[present] = self.momentum * self.mean_conf[present] + (1.0 - self.momentum) * batch_mean[present]

    def thresholds(self) -> torch.Tensor:
        """The threshold of every class, (C,)."""
        return self.thresh * self.mean_conf / self.mean_conf.max().clamp(min=1e-6)

    def per_pixel(self, label: torch.Tensor) -> torch.Tensor:
        """The threshold of each pixel's pseudo-label class, (B,H,W)."""
        return self.thresholds()[label]


class ClassBalance(nn.Module):
    """Class-balanced weights for the unsupervised loss (an opt-in lever, not in the official recipes).

    With few labels a network is rarely confident on thin or rare classes, so they are nearly absent from the
    confident pseudo-labels (on synthetic-driving at 32 labelled frames: person, pole and sign hold 1-13 % of their
    labelled share of the confident set) and the unsupervised loss teaches that they do not exist. Here the pixel
    pseudo-labelled ``c`` is weighted ``w_c = min(prior_c / share_c, cap) / Z``: ``prior_c`` an EMA (``momentum``) of
    class ``c``'s share of the labelled batches' pixels, ``share_c`` an EMA of its share of the confident (loss-bearing)
    pseudo-labelled pixels, ``Z = sum_k share_k min(prior_k / share_k, cap)`` so a kept pixel weighs 1 on average. It
    gives each class the gradient mass its labelled frequency asks for while keeping only confident pixels (the aim
    of DARS, He et al. ICCV 2021, reached by weights instead of lowered thresholds). Both EMAs start uniform (all
    weights 1) and are buffers: saved with the method, they resume exactly."""

    def __init__(self, num_classes: int, momentum: float = 0.99, cap: float = 10.0) -> None:
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ConfigError(f"class_balance_momentum must lie in [0, 1), got {momentum!r}")
        if not cap >= 1.0:
            raise ConfigError(f"class_balance_cap must be at least 1, got {cap!r}")
        self.momentum, self.cap = float(momentum), float(cap)
        self.register_buffer("prior", torch.full((num_classes,), 1.0 / num_classes))
        self.register_buffer("share", torch.full((num_classes,), 1.0 / num_classes))

    @torch.no_grad()
    def update(self, labelled_mask: torch.Tensor, pseudo_label: torch.Tensor, keep: torch.Tensor) -> None:
        """Move ``prior`` towards the class shares of ``labelled_mask`` (255 and out-of-range skipped) and ``share``
        towards those of ``pseudo_label`` where ``keep``; a batch with no such pixel leaves its EMA as is."""
        n = self.prior.numel()
        for ema, labels in ((self.prior, labelled_mask), (self.share, pseudo_label[keep])):
            freq = class_frequencies(labels, n)
            if freq.sum() > 0:
                ema.mul_(self.momentum).add_((1.0 - self.momentum) * freq.to(ema.device))

    def weights(self) -> torch.Tensor:
        """The weight of every class, (C,)."""
        w = (self.prior / self.share.clamp(min=1e-12)).clamp(max=self.cap)
        return w / (self.share * w).sum().clamp(min=1e-12)

    def per_pixel(self, label: torch.Tensor) -> torch.Tensor:
        """The weight of each pixel's pseudo-label class, (B,H,W)."""
        return self.weights()[label]


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
