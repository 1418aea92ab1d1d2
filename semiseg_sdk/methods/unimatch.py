"""UniMatch (Yang et al., "Revisiting Weak-to-Strong Consistency in Semi-Supervised Semantic Segmentation", CVPR 2023;
official code LiheYoung/UniMatch ``unimatch.py``).

FixMatch widened in two ways: two strong views of each unlabelled image (each with its own CutMix box, p=0.5, drawn
exactly as ``obtain_cutmix_box``: :func:`~semiseg_sdk.augment.unimatch_box_masks`) are both supervised by the weak
view's pseudo-label, and a feature-perturbation (FP) stream decodes the weak view's encoder features after
``Dropout2d(0.5)``. Pixels below ``conf_thresh`` contribute nothing; unlabelled losses are divided by the number of
valid (non-padding) pixels. Loss ``(L_x + 0.25 L_s1 + 0.25 L_s2 + 0.5 L_fp) / 2``. As in FixMatch, every forward
runs with the model's own dropout layers inactive and BatchNorm in train mode (``model_dropout=False``; UniMatch's
DeepLab-v3+ has no dropout), so the weak target is not perturbed; the FP stream's ``Dropout2d`` is the method's and
always on.

Differences from the official script:

* FP stream: the official DeepLab-v3+ drops out the two features its decoder reads (``c1``, ``c4``); here every
  encoder feature map (all five strides) goes through ``Dropout2d(0.5)``, so whatever subset a decoder reads is
  perturbed. Only the unlabelled half is perturbed: the official code also decodes a perturbed copy of the
  labelled batch and then discards it, which only changes the decoder's BN batch statistics.
* CutMix partner: the same unlabelled batch rolled by one sample (``roll(1, 0)``), its strong views rolled likewise,
  instead of a second unlabelled batch predicted in eval mode; its pseudo-label is the weak forward's prediction of
  those same images, rolled (``partner_label="weak"``, no extra forward; ``"eval"`` predicts them again in eval
  mode as the official code does for its partner batch).
* DeepLab-v3+ ResNet -> any Segmentor (through ``model.encode / decode / classify``); CE (no OHEM) for ``L_x``.
Opt-in lever (off by default): ``ema_teacher=True`` takes the pseudo-labels (and the CutMix partner's) from an EMA of
the student predicting in eval mode, updated after every optimiser step with ``min(1 - 1 / (t + 1), ema_momentum)``
(0.996), as UniMatch V2's code does; the student still makes every prediction that is trained, and is what is
evaluated and exported. The class-wise thresholds (``class_thresholds``) and class-balanced unsupervised weights
(``class_balance``) of :mod:`~semiseg_sdk.methods.fixmatch` apply to all three unlabelled losses.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Tuple

import torch
import torch.nn.functional as F

from ..augment import mix, unimatch_box_masks
from .fixmatch import FixMatch
from .pseudo_labels import (Target, confident_fraction, cutmix_partner, masked_cross_entropy, pseudo_label,
                            weak_logits)
from .registry import register_method


@register_method("unimatch")
class UniMatch(FixMatch):
    """Dual strong views + feature perturbation on top of FixMatch's thresholded weak-to-strong pseudo-labels.

    Shares FixMatch's settings (threshold, CutMix p and box law, partner label, model dropout, the EMA teacher,
    class-threshold and class-balance levers)
    and its step wrapper; adds the FP stream's dropout."""

    family = "hybrid: input + feature perturbation"

    @dataclasses.dataclass(frozen=True)
    class Config(FixMatch.Config):
        fp_dropout: float = 0.5  # LiheYoung/UniMatch model/semseg/deeplabv3plus.py: nn.Dropout2d(0.5)

    def forward_with_fp(self, img_x: torch.Tensor, img_u_w: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One encoder pass over ``[x; u_w]``; the decoder sees the clean features and a Dropout2d copy of ``u_w``'s.

        Returns ``(pred_x, pred_u_w, pred_u_w_fp)`` logits at input size."""
        num_x, num_u = img_x.shape[0], img_u_w.shape[0]
        feats = self.model.encode(torch.cat([img_x, img_u_w]))
        feats = [torch.cat([f, F.dropout2d(f[num_x:], self.cfg.fp_dropout, training=True)]) for f in feats]
        logits = self.model.classify(self.model.decode(feats), img_x.shape[-2:])
        pred_x, pred_u_w, pred_u_w_fp = logits.split([num_x, num_u, num_u])
        return pred_x, pred_u_w, pred_u_w_fp

    def _step(self, x: Dict[str, torch.Tensor], u: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        cfg = self.cfg
        v_x, v_u = self.views.weak(x), self.views.weak(u)

        b, _, h, w = v_u.image.shape
        img_u_s1, img_u_s2 = self.views.strong(v_u.image), self.views.strong(v_u.image)
        box1 = unimatch_box_masks(b, (h, w), p=cfg.cutmix_p, device=v_u.image.device)
        box2 = unimatch_box_masks(b, (h, w), p=cfg.cutmix_p, device=v_u.image.device)
        img_u_s1 = mix(img_u_s1, img_u_s1.roll(1, dims=0), box1)
        img_u_s2 = mix(img_u_s2, img_u_s2.roll(1, dims=0), box2)

        pred_x, pred_u_w, pred_u_w_fp = self.forward_with_fp(v_x.image, v_u.image)
        pred_u_s1, pred_u_s2 = self.model(torch.cat([img_u_s1, img_u_s2])).chunk(2)

        conf_u_w, mask_u_w = pseudo_label(weak_logits(self.teacher, v_u.image, pred_u_w))
        target = Target(mask_u_w, conf_u_w, v_u.valid)
        self.observe(target, v_x.mask)
        target_mix = cutmix_partner(self.target_net, v_u.image, target, cfg.partner_label)
        target1, target2 = target.mixed(target_mix, box1), target.mixed(target_mix, box2)

        loss_x = self.labelled_loss(pred_x, v_x.mask)
        loss_u_s1 = masked_cross_entropy(pred_u_s1, target1.label, target1.conf, self.threshold(target1), target1.valid,
                                         self.pixel_weight(target1))
        loss_u_s2 = masked_cross_entropy(pred_u_s2, target2.label, target2.conf, self.threshold(target2), target2.valid,
                                         self.pixel_weight(target2))
        loss_u_fp = masked_cross_entropy(pred_u_w_fp, target.label, target.conf, self.threshold(target), target.valid,
                                         self.pixel_weight(target))
        unsup = 0.25 * loss_u_s1 + 0.25 * loss_u_s2 + 0.5 * loss_u_fp
        loss = (loss_x + unsup) / 2.0
        mask_ratio = confident_fraction(conf_u_w, self.threshold(target), v_u.valid)
        return {"loss": loss, "sup": loss_x, "unsup": unsup, "unsup_s1": loss_u_s1, "unsup_s2": loss_u_s2,
                "unsup_fp": loss_u_fp, "mask_ratio": mask_ratio}
