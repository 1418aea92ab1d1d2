"""``field-adapt``: fine-tune a deployed model on unlabelled field images while replaying its labelled data.

The idea is CoTTA's (Wang et al., CVPR 2022; qinenergy/cotta ``cotta.py``) made into a training method of the
SDK, with FixMatch's weak-to-strong pseudo-labelling (Sohn et al. 2020; as in UniMatch's ``fixmatch.py``):

* student and EMA teacher both start from ``init`` (the store's current version); the teacher follows the
  student with momentum 0.999 (CoTTA's ``mt_alpha``) and never receives gradients;
* the teacher labels the weak view of each field image (eval mode, averaged with its horizontal flip: a cheap form
  of CoTTA's augmentation-averaged prediction); pixels with confidence >= ``conf_thresh`` supervise the student
  on a strong view (colour jitter, blur, grayscale, CutMix inside the batch), FixMatch's normalisation;
* each step also replays a labelled batch (cross-entropy), in the same forward pass as the strong field view, so
  the student's batch-norm statistics see both domains and the old domain is not forgotten;
* optional stochastic restore (CoTTA ``rst_m``): after each step a fraction ``restore_p`` of the student's weights
  go back to their ``init`` values.

Choices, measured with ``benchmarks/continual_domain_shift.py`` (day -> dusk, fcn/tiny, 150 steps):

* ``infer="student"``: after a refresh of a few hundred steps a 0.999 EMA teacher has moved only ~15-25 % of the
  way from the parent (target +1.0 mIoU vs +3.8 for the student); CoTTA's teacher pays off over long streams.
* ``conf_thresh=0.9`` rather than FixMatch's in-domain 0.95: under a domain shift the teacher is less confident
  (1-6 % of field pixels reach 0.9 in the benchmark, fewer at 0.95, which would switch the pseudo-label loss off).
* ``restore_p=0``: at p = 0.01 per step a 150-step refresh resets 1 - 0.99^150 = 78 % of the weights to their
  init values at least once, undoing most of the adaptation; it is kept as an option for long refreshes.

Without ``init`` the method trains the model it is given (so it runs in the SDK's parametrised method tests).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..augment import ViewMaker, box_masks, mix
from ..data.base import IGNORE_INDEX
from ..models.checkpoint import load_checkpoint, load_state_strict
from ..errors import ConfigError
from ..methods.base import Method, MethodConfig
from ..methods.ema import EMATeacher
from ..methods.pseudo_labels import Target, confident_fraction, masked_cross_entropy
from ..methods.registry import register_method
from ..models import build_model


@register_method("field-adapt")
class FieldAdapt(Method):
    """Teacher pseudo-labels on field images + labelled replay, student initialised from a deployed checkpoint."""

    @dataclasses.dataclass(frozen=True)
    class Config(MethodConfig):
        init: Optional[str] = None     # checkpoint that starts student and teacher (None: the model as given)
        conf_thresh: float = 0.9       # FixMatch/UniMatch use 0.95 in-domain; under shift confidences drop (above)
        ema_momentum: float = 0.999    # qinenergy/cotta cfg MODEL.ADAPTATION mt_alpha 0.999
        teacher_flip: bool = True      # average teacher probabilities over the horizontal flip
        cutmix_p: float = 0.5          # LiheYoung/UniMatch obtain_cutmix_box(p=0.5); box law: box_masks, not theirs
        replay_weight: float = 1.0     # weight of the labelled replay loss
        unsup_weight: float = 1.0      # weight of the pseudo-label loss
        restore_p: float = 0.0         # qinenergy/cotta rst_m 0.01; 0 = off (above)
        infer: str = "student"         # "student" or "teacher": the network evaluation and export use

    def __init__(self, model: nn.Module, num_classes: int, views: ViewMaker, config: Any = None, total_steps: int = 1) -> None:
        cfg = config if config is not None else self.Config()
        if cfg.infer not in ("student", "teacher"):
            raise ConfigError(f"method 'field-adapt': infer must be 'student' or 'teacher', got {cfg.infer!r}")
        if not 0.0 <= cfg.restore_p < 1.0:
            raise ConfigError(f"method 'field-adapt': restore_p must lie in [0, 1), got {cfg.restore_p}")
        if cfg.init:
            model = _load_init(cfg.init, num_classes)
        super().__init__(model, num_classes, views, cfg, total_steps)
        self.teacher = EMATeacher(self.model, cfg.ema_momentum, warmup=False)
        if cfg.restore_p > 0:  # the init weights, moved with the method but never saved (rebuilt from ``init``)
            for i, p in enumerate(self.model.parameters()):
                self.register_buffer(f"source_{i}", p.detach().clone(), persistent=False)

    @torch.no_grad()
    def teacher_probs(self, image: torch.Tensor) -> torch.Tensor:
        """Float32 teacher probabilities of a [0, 1] batch, flip-averaged when ``teacher_flip``."""
        prob = self.teacher(image).float().softmax(dim=1)
        if self.cfg.teacher_flip:
            prob = 0.5 * (prob + self.teacher(image.flip(-1)).float().softmax(dim=1).flip(-1))
        return prob

    def training_step(self, x: Dict[str, torch.Tensor], u: Optional[Dict[str, torch.Tensor]], step: int) -> Dict[str, torch.Tensor]:
        cfg = self.cfg
        v_x, v_u = self.views.weak(x), self.views.weak(u)
        conf_u_w, mask_u_w = self.teacher_probs(v_u.image).max(dim=1)
        target = Target(mask_u_w, conf_u_w, v_u.valid)

        img_u_s = self.views.strong(v_u.image)
        b, _, h, w = img_u_s.shape
        box = box_masks(b, (h, w), p=cfg.cutmix_p, device=img_u_s.device)
        img_u_s = mix(img_u_s, img_u_s.roll(1, dims=0), box)
        target = target.mixed(target.rolled(), box)

        num_x = v_x.image.shape[0]
        pred_x, pred_u_s = self.model(torch.cat([v_x.image, img_u_s])).split([num_x, b])
        loss_x = F.cross_entropy(pred_x.float(), v_x.mask, ignore_index=IGNORE_INDEX)
        loss_u = masked_cross_entropy(pred_u_s, target.label, target.conf, cfg.conf_thresh, target.valid)
        loss = cfg.replay_weight * loss_x + cfg.unsup_weight * loss_u
        mask_ratio = confident_fraction(conf_u_w, cfg.conf_thresh, v_u.valid)
        return {"loss": loss, "sup": loss_x, "unsup": loss_u, "mask_ratio": mask_ratio}

    @torch.no_grad()
    def after_optimizer_step(self, step: int) -> None:
        self.teacher.update(self.model, step)
        p_restore = self.cfg.restore_p
        if p_restore > 0:
            for i, p in enumerate(self.model.parameters()):
                keep = torch.rand_like(p, dtype=torch.float32) >= p_restore
                p.copy_(torch.where(keep, p, getattr(self, f"source_{i}").to(p.dtype)))

    def inference_model(self) -> nn.Module:
        """The student (default) or the EMA teacher, per ``infer``."""
        return self.teacher.net if self.cfg.infer == "teacher" else self.model


def _load_init(path: str, num_classes: int) -> nn.Module:
    """The inference network of checkpoint ``path``, rebuilt from its own spec (architecture flags are ignored)."""
    ckpt = load_checkpoint(path)
    spec = dict(ckpt["model_spec"])
    spec["pretrained"] = None
    model = build_model(**spec)
    if getattr(model, "num_classes", num_classes) != num_classes:
        raise ConfigError(f"{path}: the checkpoint predicts {model.num_classes} classes, the data has {num_classes}")
    load_state_strict(model, ckpt["model_state"], ckpt["path"])
    return model.train()
