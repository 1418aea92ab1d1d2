"""The class levers of the confidence-thresholded methods: class-wise thresholds and class-balanced pixel weights.

Neither is in an official recipe; both are opt-in settings (off by default) of FixMatch, UniMatch, UniMatch V2 and
the mean teacher (CutMix, CutOut, ClassMix, ComplexMix); CPS, which keeps every pseudo-labelled pixel, takes the
class balance alone (:class:`ClassBalanceConfig`). With few labels a network is rarely confident on thin or rare
classes, so one threshold keeps almost none of their pixels as pseudo-labels and the unsupervised loss teaches that
they do not exist. :class:`ClassThresholds` lowers the threshold of the classes the model is typically less sure of;
:class:`ClassBalance` weights each kept pixel so that every class gets the share of the loss its labelled frequency
asks for. A method takes both through :class:`ClassLevers` and its config through :class:`ClassLeverConfig`.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import torch
from torch import nn

from ..errors import ConfigError
from .base import MethodConfig
from .pseudo_labels import Target, Threshold, class_frequencies, confident_mask


@dataclasses.dataclass(frozen=True)
class ClassBalanceConfig(MethodConfig):
    """The class balance's settings (off by default), for a method without a confidence threshold (CPS)."""

    class_balance: bool = False  # opt-in lever: class-balanced weights of the unsupervised loss (ClassBalance)
    class_balance_momentum: float = 0.99  # EMA momentum of the labelled and pseudo-labelled class shares
    class_balance_cap: float = 10.0  # largest weight ratio prior / share of a class, before normalising


@dataclasses.dataclass(frozen=True)
class ClassLeverConfig(ClassBalanceConfig):
    """Both levers' settings, shared by the configs of the thresholded methods (all off by default); the
    method's config adds its own ``conf_thresh``."""

    class_thresholds: bool = False  # opt-in lever: class-wise thresholds (ClassThresholds), off in the official recipes
    class_threshold_momentum: float = 0.999  # EMA momentum of each class's mean confidence
    # what the class balance aims at: "labelled" (the labelled pixels' class shares) or "predicted" (the shares of the
    # weak view's argmax over every valid unlabelled pixel, so only the threshold's filtering is corrected)
    class_balance_prior: str = "labelled"


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
    weights 1) and are buffers: saved with the method, they resume exactly.

    ``prior="predicted"`` aims at the class shares of the weak view's argmax over every valid unlabelled pixel
    instead of the labelled ones: a few labelled images are a noisy sample of the classes (on the real aerial set's
    23-patch split 0, water is 8.6 % of the labelled pixels and 13.7 % of the unlabelled ones, so the labelled prior
    weighs water's pseudo-labels down); the predicted prior corrects only what the confidence filter removes. For a
    loss that reaches every valid pixel (CPS, the mean teacher's image weight) it equals the share: all weights 1."""

    PRIORS = ("labelled", "predicted")

    @classmethod
    def from_config(cls, num_classes: int, cfg: ClassBalanceConfig) -> Optional["ClassBalance"]:
        """The balance a method's config asks for, or None when ``class_balance`` is off."""
        if not cfg.class_balance:
            return None
        return cls(num_classes, cfg.class_balance_momentum, cfg.class_balance_cap,
                   getattr(cfg, "class_balance_prior", "labelled"))

    def __init__(self, num_classes: int, momentum: float = 0.99, cap: float = 10.0, prior: str = "labelled") -> None:
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ConfigError(f"class_balance_momentum must lie in [0, 1), got {momentum!r}")
        if not cap >= 1.0:
            raise ConfigError(f"class_balance_cap must be at least 1, got {cap!r}")
        if prior not in self.PRIORS:
            raise ConfigError(f"class_balance_prior must be one of {', '.join(self.PRIORS)}, got {prior!r}")
        self.momentum, self.cap, self.prior_source = float(momentum), float(cap), prior
        self.register_buffer("prior", torch.full((num_classes,), 1.0 / num_classes))
        self.register_buffer("share", torch.full((num_classes,), 1.0 / num_classes))

    @torch.no_grad()
    def update(self, labelled_mask: torch.Tensor, pseudo_label: torch.Tensor, keep: torch.Tensor,
               valid: Optional[torch.Tensor] = None) -> None:
        """Move ``prior`` towards the class shares of ``labelled_mask`` (255 and out-of-range skipped; with the
        predicted prior: of ``pseudo_label`` where ``valid``) and ``share`` towards those of ``pseudo_label`` where
        ``keep``; a batch with no such pixel leaves its EMA as is."""
        n = self.prior.numel()
        if self.prior_source == "predicted":
            if valid is None:
                raise ValueError("the predicted class-balance prior needs the valid mask of the pseudo-labels")
            prior_labels = pseudo_label[valid]
        else:
            prior_labels = labelled_mask
        for ema, labels in ((self.prior, prior_labels), (self.share, pseudo_label[keep])):
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


class ClassLevers:
    """Mixin of a :class:`~semiseg_sdk.methods.base.Method` whose config is a :class:`ClassLeverConfig`: the
    threshold and pixel weight of a pseudo-label map, with or without the levers.

    The EMAs are submodules named ``class_thresholds`` and ``class_balance`` (None when off), so they are saved with
    the method's state and ``--resume`` continues them."""

    class_thresholds: Optional[ClassThresholds]
    class_balance: Optional[ClassBalance]

    def init_class_levers(self, num_classes: int, conf_thresh: float) -> None:
        """Create the levers the config switches on; ``conf_thresh`` is the method's resolved threshold."""
        cfg = self.cfg
        self.class_thresholds = (ClassThresholds(num_classes, conf_thresh, cfg.class_threshold_momentum)
                                 if cfg.class_thresholds else None)
        self.class_balance = ClassBalance.from_config(num_classes, cfg)

    def threshold(self, target: Target) -> Threshold:
        """The confidence a pixel of ``target`` must reach: ``conf_thresh``, or its class's with ``class_thresholds``
        (updated from the weak view's pseudo-labels by :meth:`observe`)."""
        return self.cfg.conf_thresh if self.class_thresholds is None else self.class_thresholds.per_pixel(target.label)

    def pixel_weight(self, target: Target) -> Optional[torch.Tensor]:
        """Each pixel's weight in the unsupervised loss: its pseudo-label class's with ``class_balance``, else None."""
        return None if self.class_balance is None else self.class_balance.per_pixel(target.label)

    def observe(self, weak: Target, labelled_mask: torch.Tensor, bearing: Optional[torch.Tensor] = None) -> None:
        """Feed the weak view's pseudo-labels to the class-wise thresholds, then the labelled batch's mask and the
        pseudo-labelled pixels that bear the unsupervised loss to the class balance (each a no-op without its lever).

        ``bearing`` (B,H,W) bool defaults to the confident valid pixels (the thresholded losses); a method whose
        loss reaches every valid pixel (the mean teacher's scalar confidence weight) passes ``weak.valid``."""
        if self.class_thresholds is not None:
            self.class_thresholds.update(weak.conf, weak.label, weak.valid)
        if self.class_balance is not None:
            if bearing is None:
                bearing = confident_mask(weak.conf, self.threshold(weak), weak.valid)
            self.class_balance.update(labelled_mask, weak.label, bearing, weak.valid)
