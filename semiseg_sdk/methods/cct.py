"""CCT: Cross-Consistency Training (Ouali et al., CVPR 2020; official code yassouali/CCT).

A shared encoder and the main decoder (here the Segmentor's own decoder + classifier) learn from labels; on
unlabelled images, K auxiliary decoders each see a perturbed copy of the features the main decoder consumes and
are pulled (MSE of softmaxes) towards the main decoder's detached prediction. Gradients of that loss reach the
auxiliary decoders, the decoder and the encoder, never the target.

What differs from the official code (ResNet-50 + PSP module, ``models/model.py``, ``models/decoders.py``):

* Perturbation point. CCT perturbs the encoder/PSP output that its main decoder (1x1 conv + PixelShuffle x8)
  consumes. Our decoders differ (UNet, DeepLabV3+, ...), so we perturb the *decoder output* (``model.decode``,
  ``model.decoder.out_channels`` channels), the features the main classifier consumes. An auxiliary decoder
  mirrors the main one: a 1x1 conv to class logits (``ClassifierHead``) then bilinear upsampling to the image,
  as ``Segmentor.classify`` does, instead of CCT's learned PixelShuffle upsampling. They stay light: 30 heads cost
  30 1x1 convs. They are method-owned and never part of ``inference_model()``.
* G-Cutout, context and object masking use the main prediction's foreground (class != ``background_class``; CCT
  assumes VOC's background 0). G-Cutout erases ``erase`` (40 %) of the height and width of the bounding box of
  each predicted foreground *class* per image, on the device; CCT boxes each external OpenCV contour (> 50 points).
* Dropout. CCT's encoder (ResNet + PSP module) and main decoder have none, so its target and the features the
  auxiliary decoders perturb come from a dropout-free train-mode forward. Ours do too: the unlabelled forward runs
  with every dropout layer of the model off (e.g. DeepLabV3+'s ASPP dropout 0.5), BatchNorm still on the batch's
  statistics, and the target skips the classifier's dropout; the labelled forward keeps the model's dropout.
  ``unlabelled_dropout=True`` keeps the decoder's dropout on in the unlabelled forward (the SDK's behaviour before).
* I-VAT, as in CCT, searches the direction against each VAT head's own clean prediction, in float32 with
  autocast off (``xi`` = 1e-6 would vanish in bf16), at feature resolution. The direction is normalised
  scale-invariantly, so the noise has norm ``eps`` even where the gradient is far below CCT's 1e-8 epsilon
  (with ``d / (norm + 1e-8)`` it shrank to ~1e-5 on our decoders).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..models.heads import ClassifierHead
from .base import Method, MethodConfig
from .layer_modes import dropout_off
from .registry import register_method

PERTURBATIONS = ("vat", "drop", "cutout", "context_masking", "object_masking", "feature_drop", "feature_noise")


def sigmoid_rampup(step: float, length: float) -> float:
    """``exp(-5 (1 - t)^2)`` with ``t = clip(step / length, 0, 1)`` (CCT ``utils/ramps.py``); 1 when ``length`` is 0."""
    if length <= 0:
        return 1.0
    t = min(max(step / length, 0.0), 1.0)
    return math.exp(-5.0 * (1.0 - t) ** 2)


def _unit(d: torch.Tensor) -> torch.Tensor:
    """Per-sample unit L2 norm, scale-invariant (divide by the max first, as Miyato et al.'s VAT code does): CCT's
    ``d / (norm + 1e-8)`` shrinks the noise towards 0 when the gradient is tiny, as it is with ``xi`` = 1e-6."""
    shape = (-1,) + (1,) * (d.dim() - 1)
    d = d / (d.flatten(1).abs().amax(dim=1).view(shape) + 1e-30)
    return d / (d.flatten(1).norm(dim=1).view(shape) + 1e-12)


def vat_noise(feats: torch.Tensor, predict: Callable[[torch.Tensor], torch.Tensor], xi: float = 1e-6,
              eps: float = 2.0, iterations: int = 1) -> torch.Tensor:
    """Virtual adversarial noise (Miyato et al.): ``eps`` times the unit direction (per sample) that most changes
    ``softmax(predict(feats))`` by KL, found by ``iterations`` power iterations from a random direction.

    Runs in float32 with autocast off; only ``d`` receives gradients (no parameter ``.grad`` is touched).
    Returns a tensor shaped and typed like ``feats``, without gradient, of L2 norm ``eps`` per sample."""
    f = feats.detach().float()
    with torch.autocast(f.device.type, enabled=False):
        with torch.no_grad():
            p = F.softmax(predict(f), dim=1)
        d = _unit(torch.rand_like(f) - 0.5)
        for _ in range(iterations):
            d.requires_grad_(True)
            logp_hat = F.log_softmax(predict(f + xi * d), dim=1)
            (grad,) = torch.autograd.grad(F.kl_div(logp_hat, p, reduction="batchmean"), d)
            d = _unit(grad.detach())
    return (eps * d).to(feats.dtype)


def guided_cutout_keep(labels: torch.Tensor, num_classes: int, background: int, erase: float) -> torch.Tensor:
    """Bool (B,H,W), False inside one random box per predicted foreground class: ``erase`` of the class's bounding
    box height and width, at a random position inside it (CCT ``guided_cutout``, one box per class, not contour)."""
    b, h, w = labels.shape
    onehot = F.one_hot(labels, num_classes).permute(0, 3, 1, 2).bool()  # (B,C,H,W)
    rows, cols = onehot.any(dim=3), onehot.any(dim=2)                   # (B,C,H), (B,C,W)
    present = rows.any(dim=2)
    present[:, background] = False

    def span(hit: torch.Tensor, n: int) -> Tuple[torch.Tensor, torch.Tensor]:
        lo = hit.float().argmax(dim=2)
        hi = n - 1 - hit.flip(2).float().argmax(dim=2)
        size = (hi - lo).float()                                       # CCT: max - min
        length = (size * erase).floor()
        start = lo + (torch.rand_like(size) * ((size * (1 - erase)).floor() + 1)).floor()
        pos = torch.arange(n, device=labels.device, dtype=torch.float32)
        return (pos >= start[..., None]) & (pos < (start + length)[..., None])

    box = span(rows, h)[..., :, None] & span(cols, w)[..., None, :] & present[..., None, None]
    return ~box.any(dim=1)


def _resize_mask(m: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """(B,H,W) bool -> (B,1,h,w) float, nearest (CCT interpolates its masks to the feature size the same way)."""
    return F.interpolate(m[:, None].float(), size=tuple(size), mode="nearest")


@register_method("cct")
class CCT(Method):
    """Main decoder trained on labels; auxiliary decoders on perturbed decoder features match its prediction."""

    family = "consistency: feature perturbation"

    @dataclasses.dataclass(frozen=True)
    class Config(MethodConfig):
        unsupervised_w: float = 30.0        # yassouali/CCT configs/config.json "unsupervised_w"
        ramp_up: float = 0.1                # config.json "ramp_up" (fraction of training; sigmoid_rampup in utils/losses.py)
        vat: int = 2                        # config.json "vat" (I-VAT decoders)
        xi: float = 1e-6                    # config.json "xi"
        eps: float = 2.0                    # config.json "eps"
        drop: int = 6                       # config.json "drop" (spatial dropout decoders)
        drop_rate: float = 0.5              # config.json "drop_rate"
        cutout: int = 6                     # config.json "cutout" (G-Cutout decoders)
        erase: float = 0.4                  # config.json "erase"
        context_masking: int = 2            # config.json "context_masking"
        object_masking: int = 2             # config.json "object_masking"
        feature_drop: int = 6               # config.json "feature_drop"
        feature_drop_range: Tuple[float, float] = (0.6, 0.9)  # models/decoders.py FeatureDropDecoder (METHODS.md: 0.7-0.9)
        feature_noise: int = 6              # config.json "feature_noise"
        uniform_range: float = 0.3          # config.json "uniform_range"
        background_class: int = 0           # decoders.py guided_cutout/guided_masking: argmax > 0 is an object (VOC)
        unlabelled_dropout: bool = False    # decoder dropout in the unlabelled forward (CCT's encoder/PSP has none)

        def __post_init__(self) -> None:
            counts = {k: getattr(self, k) for k in PERTURBATIONS}
            bad = [k for k, v in counts.items() if not isinstance(v, int) or v < 0]
            if bad:
                raise ConfigError(f"method 'cct': auxiliary decoder counts must be integers >= 0, got {bad}")
            if sum(counts.values()) == 0:
                raise ConfigError(f"method 'cct': at least one auxiliary decoder is needed (counts {counts})")
            lo, hi = self.feature_drop_range
            if not 0 < lo <= hi <= 1:
                raise ConfigError(f"method 'cct': feature_drop_range must satisfy 0 < lo <= hi <= 1, got {self.feature_drop_range}")

    def __init__(self, model: nn.Module, num_classes: int, views, config=None, total_steps: int = 1) -> None:
        super().__init__(model, num_classes, views, config, total_steps)
        if not 0 <= self.cfg.background_class < num_classes:
            raise ConfigError(f"method 'cct': background_class {self.cfg.background_class} is not a class id (0..{num_classes - 1})")
        self.aux_kinds = tuple(k for k in PERTURBATIONS for _ in range(getattr(self.cfg, k)))
        ch = model.decoder.out_channels
        self.aux_decoders = nn.ModuleList(ClassifierHead(ch, num_classes, dropout=0.0) for _ in self.aux_kinds)

    def unsup_weight(self, step: int) -> float:
        """``unsupervised_w`` times the sigmoid ramp over the first ``ramp_up`` of training."""
        return self.cfg.unsupervised_w * sigmoid_rampup(step, self.cfg.ramp_up * self.total_steps)

    def perturb(self, kind: str, f: torch.Tensor, head: nn.Module, pred_u: Optional[torch.Tensor]) -> torch.Tensor:
        """One perturbation of the decoder features ``f`` (B,C,h,w); ``pred_u`` (B,H,W) is the main prediction."""
        cfg = self.cfg
        if kind == "vat":
            return f + vat_noise(f, head, cfg.xi, cfg.eps)
        if kind == "drop":
            return F.dropout2d(f, cfg.drop_rate, training=True)
        if kind == "feature_drop":
            attention = f.mean(dim=1, keepdim=True)
            peak = attention.flatten(1).max(dim=1).values.view(-1, 1, 1, 1)
            return f * (attention < peak * float(torch.empty(()).uniform_(*cfg.feature_drop_range))).to(f.dtype)
        if kind == "feature_noise":
            noise = torch.empty(f.shape[1:], device=f.device, dtype=f.dtype).uniform_(-cfg.uniform_range, cfg.uniform_range)
            return f + f * noise[None]
        if kind == "cutout":
            keep = guided_cutout_keep(pred_u, self.num_classes, cfg.background_class, cfg.erase)
            return f * _resize_mask(keep, f.shape[-2:]).to(f.dtype)
        objects = _resize_mask(pred_u != cfg.background_class, f.shape[-2:]).to(f.dtype)
        if kind == "context_masking":  # keep the objects, mask the context
            return f * objects
        if kind == "object_masking":   # keep the context, mask the objects
            return f * (1 - objects)
        raise ValueError(f"unknown CCT perturbation {kind!r}")

    def training_step(self, x: Dict[str, torch.Tensor], u: Optional[Dict[str, torch.Tensor]], step: int) -> Dict[str, torch.Tensor]:
        sup = self.supervised_loss(x)["sup"]

        v_u = self.views.weak(u)
        size = v_u.image.shape[-2:]
        with dropout_off(self.model, enabled=not self.cfg.unlabelled_dropout):
            dec_u = self.model.decode(self.model.encode(v_u.image))
        with torch.no_grad():  # the main decoder's prediction, without the classifier's dropout
            logits_u = F.interpolate(self.model.classifier(dec_u), size=size, mode="bilinear", align_corners=False)
            prob_u = logits_u.float().softmax(dim=1)
            pred_u = prob_u.argmax(dim=1)

        valid = v_u.valid[:, None].float()
        n_valid = valid.sum().clamp(min=1) * self.num_classes
        per_kind: Dict[str, list] = {}
        for kind, head in zip(self.aux_kinds, self.aux_decoders):
            f = self.perturb(kind, dec_u, head, pred_u)
            logits = F.interpolate(head(f), size=size, mode="bilinear", align_corners=False)
            mse = ((logits.float().softmax(dim=1) - prob_u) ** 2 * valid).sum() / n_valid
            per_kind.setdefault(kind, []).append(mse)

        unsup = torch.stack([m for ms in per_kind.values() for m in ms]).mean()
        w = self.unsup_weight(step)
        out = {"loss": sup + w * unsup, "sup": sup, "unsup": unsup, "w_unsup": torch.tensor(w, device=sup.device)}
        out.update({f"unsup_{k}": torch.stack(ms).mean().detach() for k, ms in per_kind.items()})
        return out
