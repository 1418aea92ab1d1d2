"""FixMatch for segmentation, as re-implemented in UniMatch (Yang et al., CVPR 2023; LiheYoung/UniMatch ``fixmatch.py``).

Per step: the weak view of the unlabelled batch is predicted together with the labelled batch (one forward, so BN
sees both); its argmax is the pseudo-label of a strong view (colour jitter, grayscale, blur, then CutMix with p=0.5,
one box drawn exactly as ``obtain_cutmix_box``: area U(0.02, 0.4), height/width U(0.3, 1/0.3), so mostly tall
boxes, see :func:`~semiseg_sdk.augment.unimatch_box_masks`); only pixels whose weak-view confidence reaches
``conf_thresh`` are supervised, and the unlabelled loss is divided by the number of valid (non-padding) pixels, not
by the confident ones. Loss ``(L_x + L_s) / 2``. Every forward runs with the model's dropout layers inactive and
BatchNorm in train mode (``model_dropout=False``): UniMatch's DeepLab-v3+ has no dropout, so its pseudo-labels come
from the undropped network, whereas the SDK's DeepLab-v3+ has ASPP ``Dropout(0.5)`` and ``Dropout2d(0.1)`` before
the classifier, which would perturb the weak view's target itself.

Differences from the official script:

* CutMix partner: the official code draws a second unlabelled batch from the loader and predicts it in eval mode
  under ``torch.no_grad()``; here it is the same unlabelled batch rolled by one sample (``image.roll(1, 0)``: sample
  ``i`` receives a box from sample ``i-1``), its strong view rolled likewise. Its pseudo-label is by default the
  weak forward's prediction of those same images, rolled (``partner_label="weak"``: no extra forward);
  ``partner_label="eval"`` predicts them again in eval mode as the official code does for its partner batch. This
  saves a second unlabelled batch per step (loading, weak view, one forward) at the cost of pairing images within
  one batch.
* DeepLab-v3+ ResNet -> any Segmentor; CE (no OHEM) for the labelled loss.
Opt-in lever (off by default): ``ema_teacher=True`` takes the pseudo-labels (and the CutMix partner's) from an EMA of
the student predicting in eval mode, updated after every optimiser step with ``min(1 - 1 / (t + 1), ema_momentum)``
(0.996), as UniMatch V2's code does; the student still makes every prediction that is trained, and is what is
evaluated and exported. ``class_thresholds=True`` replaces the one threshold by class-wise ones
(:class:`~semiseg_sdk.methods.class_levers.ClassThresholds`), so classes the model is less sure of keep getting
pseudo-labels. ``class_balance=True`` weights each confident pixel's loss by its pseudo-label class so that every
class gets the share of the unsupervised loss its labelled frequency asks for
(:class:`~semiseg_sdk.methods.class_levers.ClassBalance`). UniMatch inherits the three levers.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional

import torch

from ..augment import ViewMaker, mix, unimatch_box_masks
from .base import Method
from .class_levers import ClassLeverConfig, ClassLevers
from .ema import EMATeacher
from .layer_modes import dropout_off
from .pseudo_labels import Target, confident_fraction, cutmix_partner, masked_cross_entropy, pseudo_label, weak_logits
from .registry import register_method


@register_method("fixmatch")
class FixMatch(ClassLevers, Method):
    """Weak-to-strong pseudo-labelling with a confidence threshold and CutMix on the strong view."""

    family = "pseudo-labelling (weak-to-strong)"

    @dataclasses.dataclass(frozen=True)
    class Config(ClassLeverConfig):  # + the class levers' options (class_levers.ClassLeverConfig)
        conf_thresh: float = 0.95  # LiheYoung/UniMatch configs/pascal.yaml (configs/cityscapes.yaml uses 0)
        cutmix_p: float = 0.5  # LiheYoung/UniMatch dataset/semi.py: obtain_cutmix_box(p=0.5)
        partner_label: str = "weak"  # SDK: the CutMix partner is the rolled batch (see the module docstring)
        model_dropout: bool = False  # LiheYoung/UniMatch model/semseg/deeplabv3plus.py: no dropout layer at all
        # opt-in lever, not UniMatch V1's recipe: pseudo-labels from an EMA of the student in eval mode, as
        # LiheYoung/UniMatch-V2 fixmatch.py / unimatch_v2.py (ema_ratio = min(1 - 1 / (iters + 1), 0.996))
        ema_teacher: bool = False
        ema_momentum: float = 0.996

    def __init__(self, model: torch.nn.Module, num_classes: int, views: ViewMaker, config: Any = None, total_steps: int = 1) -> None:
        super().__init__(model, num_classes, views, config, total_steps)
        self.teacher = EMATeacher(model, self.cfg.ema_momentum, warmup=True) if self.cfg.ema_teacher else None
        self.init_class_levers(num_classes, self.cfg.conf_thresh)

    @property
    def target_net(self) -> torch.nn.Module:
        """The network whose predictions are the pseudo-labels: the EMA teacher's with ``ema_teacher``, else the student."""
        return self.teacher.net if self.teacher is not None else self.model

    def after_optimizer_step(self, step: int) -> None:
        """With ``ema_teacher``: move the teacher towards the student."""
        if self.teacher is not None:
            self.teacher.update(self.model, step)

    def training_step(self, x: Dict[str, torch.Tensor], u: Optional[Dict[str, torch.Tensor]], step: int) -> Dict[str, torch.Tensor]:
        """The step below, with the model's dropout layers inactive unless ``model_dropout``."""
        with dropout_off(self.model, enabled=not self.cfg.model_dropout):
            return self._step(x, u)

    def _step(self, x: Dict[str, torch.Tensor], u: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        cfg = self.cfg
        v_x, v_u = self.views.weak(x), self.views.weak(u)

        img_u_s = self.views.strong(v_u.image)
        b, _, h, w = img_u_s.shape
        box = unimatch_box_masks(b, (h, w), p=cfg.cutmix_p, device=img_u_s.device)
        img_u_s = mix(img_u_s, img_u_s.roll(1, dims=0), box)

        num_x = v_x.image.shape[0]
        pred_x, pred_u_w = self.model(torch.cat([v_x.image, v_u.image])).split([num_x, b])
        pred_u_s = self.model(img_u_s)

        conf_u_w, mask_u_w = pseudo_label(weak_logits(self.teacher, v_u.image, pred_u_w))
        weak = Target(mask_u_w, conf_u_w, v_u.valid)
        self.observe(weak, v_x.mask)
        target = weak.mixed(cutmix_partner(self.target_net, v_u.image, weak, cfg.partner_label), box)

        loss_x = self.labelled_loss(pred_x, v_x.mask)
        loss_u_s = masked_cross_entropy(pred_u_s, target.label, target.conf, self.threshold(target), target.valid,
                                        self.pixel_weight(target))
        loss = (loss_x + loss_u_s) / 2.0
        mask_ratio = confident_fraction(conf_u_w, self.threshold(weak), v_u.valid)
        return {"loss": loss, "sup": loss_x, "unsup": loss_u_s, "mask_ratio": mask_ratio}
