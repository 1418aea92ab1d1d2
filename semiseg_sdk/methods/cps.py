"""CPS: Cross Pseudo Supervision (Chen et al., CVPR 2021; official code charlesCXK/TorchSemiSeg).

Two segmentors of the same architecture, initialised differently, each learn from the labels and from the other's
one-hot (argmax) prediction, with no confidence threshold: ``L_cps = CE(f1(x), argmax f2(x)) + CE(f2(x), argmax f1(x))``.

Variants (``cutmix``):

* ``cutmix=True`` (default), CPS + CutMix (``exp.voc/voc8.res50v3+.CPS+CutMix/train.py``): both nets predict the
  *unmixed* unlabelled images under ``no_grad``; their predictions are mixed with the same box mask as the images
  (3 boxes, each of area U(0.25, 0.5) / 3, French et al.'s generator) and the argmax supervises the other net on the
  mixed image. Those target forwards run as TorchSemiSeg's (``model.train()``, no dropout in its DeepLab-v3+):
  BatchNorm on the batch's statistics, every dropout layer of our nets off (ASPP 0.5, classifier 0.1);
  ``target_dropout=True`` keeps dropout on in them (the SDK's behaviour before). ``cps_weight`` 1.0 (that
  folder's ``config.py``). This is the default because it is the variant that reproduces the paper
  (TorchSemiSeg#14: plain CPS gives 71.6-71.7 at VOC 1/8 instead of 73.2; CutMix 73.9).
* ``cutmix=False``, plain CPS: on the weak views of the labelled and the unlabelled images; ``cps_weight`` 1.5 (VOC).
  As in TorchSemiSeg the targets are the argmax of the very forwards being trained, so here they carry the
  model's dropout (TorchSemiSeg's network has none).

What differs from the official code:

* Initialisation. TorchSemiSeg loads the same ImageNet backbone into both branches and draws the heads with
  kaiming init independently. The second net is ``build_model(**model.spec)`` built under a re-seeded RNG (seed
  ``torch.initial_seed() + 1``, the global RNG stream is left untouched), so all its layers get their own random
  init. ``spec`` never carries the pretrained path, so with ``share_encoder_init=True`` (default) branch 2's encoder
  starts from a copy of branch 1's *initial* encoder weights: the same pretrained backbone when the run uses one
  (TorchSemiSeg's setting), the same random encoder otherwise; the decoders always differ.
  ``share_encoder_init=False`` keeps branch 2's encoder at its own random init.
* CutMix partners: TorchSemiSeg draws two unlabelled batches; we mix each image with the next one in the batch
  (``roll(1)``), so the unmixed predictions are computed once. Padding pixels are ignored (255) in the targets.
* One optimiser over both nets (``param_groups``): encoders at ``lr``, decoders/heads at ``lr * head_lr_mult``
  (TorchSemiSeg: two SGD optimisers, same lr everywhere).

Opt-in lever, not in the official recipe: ``class_balance=True`` weights each pixel of a cross loss by its
pseudo-label's class (:class:`~semiseg_sdk.methods.class_levers.ClassBalance`, one per branch, each fed by the
labelled masks and that branch's pseudo-labels), so classes a few labelled images make the nets rarely predict keep
the share of the unsupervised loss their labelled frequency asks for. CPS has no confidence threshold, so every
valid pixel bears the loss and counts in the shares; with the lever off the loss is the official pixel mean.

Logged terms: ``sup`` (branch 1 CE), ``sup2`` (branch 2 CE), ``unsup`` (the CPS loss, both directions),
``w_unsup``; ``loss = sup + sup2 + w_unsup * unsup``. ``inference_model()`` is branch 1, as in TorchSemiSeg's eval.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..augment import box_masks, mix
from ..data.base import IGNORE_INDEX
from ..errors import ConfigError
from ..models import build_model
from .base import Method
from .class_levers import ClassBalance, ClassBalanceConfig
from .layer_modes import dropout_off
from .pseudo_labels import mean_over_valid, pixel_cross_entropy
from .registry import register_method


def build_second_branch(model: nn.Module, share_encoder_init: bool) -> nn.Module:
    """A fresh ``build_model(**model.spec)`` under the re-seeded RNG ``initial_seed + 1`` (global RNG untouched);
    with ``share_encoder_init`` its encoder starts from a copy of ``model``'s encoder weights and buffers."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed((torch.initial_seed() + 1) % 2**63)
        net = build_model(**model.spec)
    if share_encoder_init:
        net.encoder.load_state_dict(model.encoder.state_dict())
    p = next(model.parameters())
    return net.to(device=p.device)


def cross_targets(logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """One-hot targets of ``logits`` as class ids (argmax, no gradient), 255 on padding pixels."""
    label = logits.detach().argmax(dim=1)
    return torch.where(valid, label, torch.full_like(label, IGNORE_INDEX))


def ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pixel-mean cross-entropy in float32, ignoring 255."""
    return F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX)


def balanced_ce(logits: torch.Tensor, target: torch.Tensor, balance: Optional[ClassBalance]) -> torch.Tensor:
    """:func:`ce`, or with ``balance`` the mean over the non-ignored pixels of each pixel's CE times its target
    class's weight."""
    if balance is None:
        return ce(logits, target)
    keep = target != IGNORE_INDEX
    weight = balance.per_pixel(torch.where(keep, target, torch.zeros_like(target)))
    return mean_over_valid(pixel_cross_entropy(logits, target) * weight, keep, keep)


@register_method("cps")
class CPS(Method):
    """Two networks supervising each other with hard pseudo-labels; branch 1 is the deployed network."""

    family = "consistency: network perturbation"

    @dataclasses.dataclass(frozen=True)
    class Config(ClassBalanceConfig):  # + the class balance's options (class_levers.ClassBalanceConfig)
        cutmix: bool = True                     # TorchSemiSeg exp.voc/voc8.res50v3+.CPS+CutMix (reproduces, TorchSemiSeg#14)
        cps_weight: Optional[float] = None      # None: 1.0 with CutMix (CPS+CutMix/config.py C.cps_weight), 1.5 without (VOC CPS config)
        n_boxes: int = 3                        # CPS+CutMix/config.py cutmix_boxmask_n_boxes
        prop_range: Tuple[float, float] = (0.25, 0.5)  # CPS+CutMix/config.py cutmix_mask_prop_range (area of all boxes)
        share_encoder_init: bool = True         # both branches load the same pretrained backbone (CPS+CutMix/train.py)
        target_dropout: bool = False            # CutMix targets with dropout on (TorchSemiSeg's network has no dropout)

        def __post_init__(self) -> None:
            lo, hi = self.prop_range
            if not 0 <= lo <= hi <= 1:
                raise ConfigError(f"method 'cps': prop_range must satisfy 0 <= lo <= hi <= 1, got {self.prop_range}")
            if self.n_boxes < 1:
                raise ConfigError(f"method 'cps': n_boxes must be >= 1, got {self.n_boxes}")

    def __init__(self, model: nn.Module, num_classes: int, views, config=None, total_steps: int = 1) -> None:
        super().__init__(model, num_classes, views, config, total_steps)
        self.model2 = build_second_branch(model, self.cfg.share_encoder_init)
        weight = self.cfg.cps_weight
        self.cps_weight = float(weight if weight is not None else (1.0 if self.cfg.cutmix else 1.5))
        # the class balance of each branch's pseudo-labels (branch 1's teach branch 2, and the reverse); None when off
        self.class_balance1 = ClassBalance.from_config(num_classes, self.cfg)
        self.class_balance2 = ClassBalance.from_config(num_classes, self.cfg)

    def param_groups(self, lr: float, head_lr_mult: float) -> List[Dict[str, Any]]:
        """Both encoders at ``lr``; both decoders and classifiers at ``lr * head_lr_mult``."""
        nets = (self.model, self.model2)
        backbone = [p for net in nets for p in net.backbone_parameters() if p.requires_grad]
        seen = {id(p) for p in backbone}
        head = [p for net in nets for p in net.parameters() if p.requires_grad and id(p) not in seen]
        return [{"params": backbone, "lr": lr, "name": "backbone"}, {"params": head, "lr": lr * head_lr_mult, "name": "head"}]

    def mix_mask(self, batch: int, size: Tuple[int, int], device: torch.device) -> torch.Tensor:
        """French et al.'s box mask: ``n_boxes`` boxes, each of area U(prop_range) / n_boxes."""
        n, (lo, hi) = self.cfg.n_boxes, self.cfg.prop_range
        return box_masks(batch, size, n_boxes=n, area=(lo / n, hi / n), p=1.0, device=device)

    def predict_targets(self, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Both nets' logits on ``image`` under ``no_grad``, BatchNorm as the nets are (train mode in training: batch
        statistics, as TorchSemiSeg), dropout off unless ``target_dropout``."""
        with torch.no_grad(), dropout_off(self.model, self.model2, enabled=not self.cfg.target_dropout):
            return self.model(image), self.model2(image)

    def cps_loss(self, pred1: torch.Tensor, pred2: torch.Tensor, target1: torch.Tensor, target2: torch.Tensor) -> torch.Tensor:
        """``CE(pred1, target2) + CE(pred2, target1)``: each net learns from the other's pseudo-label (each pixel
        weighted by its target's class with ``class_balance``)."""
        return balanced_ce(pred1, target2, self.class_balance2) + balanced_ce(pred2, target1, self.class_balance1)

    def observe(self, labelled_mask: torch.Tensor, target1: torch.Tensor, target2: torch.Tensor) -> None:
        """Feed the labelled masks and each branch's pseudo-labels (valid pixels) to its class balance, if on."""
        for balance, target in ((self.class_balance1, target1), (self.class_balance2, target2)):
            if balance is not None:
                balance.update(labelled_mask, target, target != IGNORE_INDEX)

    def training_step(self, x: Dict[str, torch.Tensor], u: Optional[Dict[str, torch.Tensor]], step: int) -> Dict[str, torch.Tensor]:
        v_x = self.views.weak(x)
        pred1_x, pred2_x = self.model(v_x.image), self.model2(v_x.image)
        sup, sup2 = self.labelled_loss(pred1_x, v_x.mask), self.labelled_loss(pred2_x, v_x.mask)

        v_u = self.views.weak(u)
        if self.cfg.cutmix:
            logits1_u, logits2_u = self.predict_targets(v_u.image)  # pseudo-labels from the unmixed images
            m = self.mix_mask(v_u.image.shape[0], v_u.image.shape[-2:], v_u.image.device)
            img_mix = mix(v_u.image, v_u.image.roll(1, dims=0), m)
            valid_mix = mix(v_u.valid, v_u.valid.roll(1, dims=0), m)
            target1 = cross_targets(mix(logits1_u, logits1_u.roll(1, dims=0), m), valid_mix)
            target2 = cross_targets(mix(logits2_u, logits2_u.roll(1, dims=0), m), valid_mix)
            self.observe(v_x.mask, target1, target2)
            unsup = self.cps_loss(self.model(img_mix), self.model2(img_mix), target1, target2)
        else:
            pred1 = torch.cat([pred1_x, self.model(v_u.image)])
            pred2 = torch.cat([pred2_x, self.model2(v_u.image)])
            valid = torch.cat([v_x.valid, v_u.valid])
            target1, target2 = cross_targets(pred1, valid), cross_targets(pred2, valid)
            self.observe(v_x.mask, target1, target2)
            unsup = self.cps_loss(pred1, pred2, target1, target2)

        w = self.cps_weight
        return {"loss": sup + sup2 + w * unsup, "sup": sup, "sup2": sup2, "unsup": unsup,
                "w_unsup": torch.tensor(w, device=sup.device)}
