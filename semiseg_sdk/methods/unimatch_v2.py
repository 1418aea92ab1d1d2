"""UniMatch V2 (Yang et al., "UniMatch V2: Pushing the Limit of Semi-Supervised Semantic Segmentation", TPAMI 2025;
official code LiheYoung/UniMatch-V2 ``unimatch_v2.py``).

Against UniMatch V1: the pseudo-labels come from an EMA teacher (``min(1 - 1 / (t + 1), 0.996)``, parameters and
floating-point buffers, predicting the weak view in eval mode), and the separate feature-perturbation stream is gone:
the two strong views (each CutMixed with the batch reversed, ``flip(0)``, box p=0.5) run in one forward whose encoder
features get *complementary channel dropout*: for each image of the first view a channel mask of 0/2 values
(Bernoulli 0.5, times 2), its second view the complement (2 - mask), and half of the images (chosen at random) left
unperturbed in both views. The same mask scales every feature map of an image (UniMatch V2's four ViT layers all have
the encoder's width; maps of other widths, from a CNN encoder, get their own mask). Pixels below ``conf_thresh``
contribute nothing; unlabelled losses are divided by the number of valid pixels. Loss
``(L_x + (L_s1 + L_s2) / 2) / 2``. The student is what is evaluated and exported (the official script keeps its best
checkpoint by the student's score).

The official recipe goes with ``--model dpt --encoder dinov2_vits14 --pretrained dinov2_vits14_pretrain.pth
--optimizer adamw --lr 5e-6 --head_lr_mult 40 --weight_decay 0.01`` (configs/pascal.yaml: AdamW, lr 5e-6, decoder
x40, weight decay 0.01, poly 0.9, crop 518, batch 4 per GPU x 4); those are trainer settings, so the method does not
set them. Differences: CE for ``L_x`` unless ``--sup_loss ohem`` (Cityscapes uses OHEM); the model's own dropout
layers (if any) are inactive in every forward, as in FixMatch/UniMatch here (the official DPT has none).

Opt-in levers (off by default, in no official recipe): ``class_thresholds`` and ``class_balance``
(:mod:`~semiseg_sdk.methods.class_levers`), fed by the teacher's weak-view pseudo-labels, as for FixMatch/UniMatch.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional

import torch

from ..augment import mix, unimatch_box_masks
from .base import Method
from .class_levers import ClassLeverConfig, ClassLevers
from .ema import EMATeacher
from .layer_modes import dropout_off
from .pseudo_labels import Target, confident_fraction, masked_cross_entropy, pseudo_label
from .registry import register_method


def complementary_masks(images: int, widths: List[int], kept_fraction: float,
                        device: torch.device) -> Dict[int, torch.Tensor]:
    """Channel masks (2 * images, width, 1, 1) per distinct width: the first ``images`` rows are 0/2 Bernoulli(0.5),
    the next ``images`` their complement (2 - m), and ``round_down(images * kept_fraction)`` random images are 1 in
    both halves (left unperturbed)."""
    masks = {}
    kept = torch.randperm(images, device=device)[: int(images * kept_fraction)]
    for width in sorted(set(widths)):
        first = torch.bernoulli(torch.full((images, width), 0.5, device=device)) * 2.0
        second = 2.0 - first
        first[kept], second[kept] = 1.0, 1.0
        masks[width] = torch.cat([first, second])[:, :, None, None]
    return masks


@register_method("unimatch-v2")
class UniMatchV2(ClassLevers, Method):
    """EMA-teacher pseudo-labels for two CutMixed strong views decoded with complementary channel dropout."""

    family = "hybrid: input + feature perturbation (EMA teacher)"

    @dataclasses.dataclass(frozen=True)
    class Config(ClassLeverConfig):  # + the class levers' options (class_levers.ClassLeverConfig)
        conf_thresh: float = 0.95  # LiheYoung/UniMatch-V2 configs/pascal.yaml
        cutmix_p: float = 0.5  # dataset/semi.py: obtain_cutmix_box(p=0.5)
        ema_momentum: float = 0.996  # unimatch_v2.py: ema_ratio = min(1 - 1 / (iters + 1), 0.996)
        kept_fraction: float = 0.5  # model/semseg/dpt.py: num_kept = int(bs // 2 * (1 - dropout_prob)), 0.5

    def __init__(self, model: torch.nn.Module, num_classes: int, views, config=None, total_steps: int = 1) -> None:
        super().__init__(model, num_classes, views, config, total_steps)
        self.teacher = EMATeacher(model, self.cfg.ema_momentum, warmup=True)
        self.init_class_levers(num_classes, self.cfg.conf_thresh)

    def after_optimizer_step(self, step: int) -> None:
        """Move the teacher towards the student."""
        self.teacher.update(self.model, step)

    def strong_logits(self, img_s1: torch.Tensor, img_s2: torch.Tensor) -> torch.Tensor:
        """One forward of ``[s1; s2]`` whose encoder features get complementary channel dropout."""
        images = img_s1.shape[0]
        feats = self.model.encode(torch.cat([img_s1, img_s2]))
        masks = complementary_masks(images, [f.shape[1] for f in feats], self.cfg.kept_fraction, img_s1.device)
        feats = [f * masks[f.shape[1]].to(f.dtype) for f in feats]
        return self.model.classify(self.model.decode(feats), img_s1.shape[-2:])

    def training_step(self, x: Dict[str, torch.Tensor], u: Optional[Dict[str, torch.Tensor]], step: int) -> Dict[str, torch.Tensor]:
        with dropout_off(self.model):
            return self._step(x, u)

    def _step(self, x: Dict[str, torch.Tensor], u: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        cfg = self.cfg
        v_x, v_u = self.views.weak(x), self.views.weak(u)
        with torch.no_grad():
            conf_u_w, mask_u_w = pseudo_label(self.teacher.net(v_u.image))
        weak = Target(mask_u_w, conf_u_w, v_u.valid)
        self.observe(weak, v_x.mask)
        partner = Target(*(t.flip(0) for t in weak))

        b, _, h, w = v_u.image.shape
        box1 = unimatch_box_masks(b, (h, w), p=cfg.cutmix_p, device=v_u.image.device)
        box2 = unimatch_box_masks(b, (h, w), p=cfg.cutmix_p, device=v_u.image.device)
        img_u_s1, img_u_s2 = self.views.strong(v_u.image), self.views.strong(v_u.image)
        img_u_s1 = mix(img_u_s1, img_u_s1.flip(0), box1)
        img_u_s2 = mix(img_u_s2, img_u_s2.flip(0), box2)
        target1, target2 = weak.mixed(partner, box1), weak.mixed(partner, box2)

        pred_x = self.model(v_x.image)
        pred_u_s1, pred_u_s2 = self.strong_logits(img_u_s1, img_u_s2).chunk(2)

        loss_x = self.labelled_loss(pred_x, v_x.mask)
        loss_u_s1 = masked_cross_entropy(pred_u_s1, target1.label, target1.conf, self.threshold(target1), target1.valid,
                                         self.pixel_weight(target1))
        loss_u_s2 = masked_cross_entropy(pred_u_s2, target2.label, target2.conf, self.threshold(target2), target2.valid,
                                         self.pixel_weight(target2))
        unsup = (loss_u_s1 + loss_u_s2) / 2.0
        loss = (loss_x + unsup) / 2.0
        mask_ratio = confident_fraction(conf_u_w, self.threshold(weak), v_u.valid)
        return {"loss": loss, "sup": loss_x, "unsup": unsup, "unsup_s1": loss_u_s1, "unsup_s2": loss_u_s2,
                "mask_ratio": mask_ratio}
