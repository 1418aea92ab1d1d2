"""PS-MT: Perturbed and Strict Mean Teachers (Liu et al., CVPR 2022; official code yyliu01/PS-MT).

One student, two EMA teachers (keep rate 0.996) updated in turn. On the weak view of the unlabelled batch the
target is the teachers' ensemble ``softmax(gamma * l1 + (1 - gamma) * l2)`` (logits averaged, then softmax, as in
``VocCode/train.py`` + ``Utils/losses.py semi_ce_loss``). The teachers predict it with their BatchNorm layers on
the batch's own statistics (``teacher_batch_stats``): ``train.py _train_epoch`` puts the whole model, teachers
included, in train mode before ``predict_with_out_grad``, and ``get_r_adv_t`` restores train mode after its search.
The student only ever sees strong views, so the running statistics it hands to the teachers are those of strong
views; eval-mode teachers would normalise the weak view with them. ``teacher_batch_stats=False`` = eval mode.
The student sees the strong view, CutMixed together with the target; its decoder features carry T-VAT noise, the
adversarial direction against the teachers' ensemble. The "strict" loss is the confidence-weighted CE
``CE(student, argmax target) * conf`` averaged over the valid pixels with ``conf >= 0.6``.

Step-based adaptation of PS-MT's epoch schedule (80 epochs over the unlabelled set, ``iter_per_epoch =
len(unsupervised_loader)`` in ``main.py``):

* warm-up: the first ``warm_up`` (5/80) of the steps train the student on labels only. PS-MT instead trains the
  student and both teachers, each on its own, for 5 passes over the *labelled* set (``base_trainer.py train`` +
  ``train.py _warm_up``: ``len(self.supervised_loader)`` steps each), about 0.4 % of its iterations at VOC 1/16
  (5 x 83 of 80 x 1240), not 5/80. Ours is longer on purpose: the teachers are reset to the warmed-up student
  when it ends (neither starts from a random init), so it must be long enough to train that student.
* teachers alternate every ``alternate_every`` steps (PS-MT: every epoch, teacher 1 on odd epochs). The default
  ``None`` = ``total_steps / 80``, one epoch of PS-MT's 80-epoch schedule, the same ratio as the ramp-up (90 steps
  at 7200; one epoch of the 1/16 benchmark, 1875 unlabelled / batch 8, would be 235). ``keep_rate`` stays a
  per-step rate: in PS-MT a teacher's turn (1240 steps at VOC 1/16) spans ~5 EMA time constants (250 steps), so
  it catches up with the student; a 90-step turn at 7200 steps spans 0.36, so each teacher lags ~500 steps.
* the unsupervised weight 1.5 ramps up with PS-MT's cosine ramp (``main.py``: ``ramp_type="cosine_rampup"``) over
  ``ramp_up`` (12/80) of the steps, starting when the warm-up ends.
* the "assist mask" of ``train.py`` (the non-current teacher keeps its top-7 class logits, the others come from the
  current teacher) is kept (``assist_topk``); with 7 classes or fewer it changes nothing.
* T-VAT perturbs the decoder output (``model.decode``) and searches with the teachers' classifiers, at feature
  resolution, in float32 (PS-MT: the 304-channel decoder input and the teachers' last convs + classifier).
  Like PS-MT it is applied to the labelled and the unlabelled student passes, never during the warm-up. The
  direction is normalised scale-invariantly (:func:`~.cct.vat_noise`), so the noise has norm ``eps`` = 2 per
  sample. PS-MT's ``_l2_normalize`` (``d / (norm + 1e-8)``) meets a gradient of norm ~1e-11 with ``xi`` = 1e-6
  in float32 (the KL at ``xi * d`` is rounding noise), so its noise has norm ~0.003-0.06, not 2: in the official
  code T-VAT is close to a no-op. ``eps=0`` turns ours off.
* CutMix: one box of area U(0.25, 0.75) (PS-MT: ``1 - lam``, lam ~ Beta(4, 4), centre in [W/8, W) and clipped at
  the border: mean area 0.36), partner = next image in the batch (PS-MT: a random permutation); the supervised
  input is the strong view of the labelled batch, as in ``train.py``.

Evaluation: PS-MT evaluates the average of the two teachers' predictions (``train.py _valid_epoch``), which no
single plain network reproduces; ``inference_model()`` is the student, the network both teachers average over.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..augment import box_masks, mix
from ..errors import ConfigError
from .base import Method, MethodConfig
from .cct import vat_noise
from .ema import EMATeacher
from .pseudo_labels import Target, pixel_cross_entropy
from .registry import register_method


def cosine_rampup(step: float, length: float) -> float:
    """``(1 - cos(pi t)) / 2`` with ``t = clip(step / length, 0, 1)`` (PS-MT ``Utils/ramps.py``); 1 if ``length`` is 0."""
    if length <= 0:
        return 1.0
    t = min(max(step / length, 0.0), 1.0)
    return 0.5 * (1.0 - math.cos(math.pi * t))


def strict_loss(logits: torch.Tensor, target: Target, thresh: float) -> torch.Tensor:
    """Confidence-weighted CE on valid pixels with ``conf >= thresh``, mean over those pixels (0 if none)."""
    keep = (target.conf >= thresh) & target.valid
    loss = pixel_cross_entropy(logits, target.label) * target.conf
    return (loss * keep).sum() / keep.sum().clamp(min=1)


def assist(core: torch.Tensor, other: torch.Tensor, topk: int) -> torch.Tensor:
    """``other``'s logits on its ``topk`` classes per pixel, ``core``'s elsewhere (PS-MT ``assist_mask_calculate``)."""
    if topk <= 0 or topk >= other.shape[1]:
        return other
    keep = torch.zeros_like(other, dtype=torch.bool).scatter_(1, other.topk(topk, dim=1).indices, True)
    return torch.where(keep, other, core)


@register_method("psmt")
class PSMT(Method):
    """Student + two alternately updated EMA teachers, strong/CutMix/T-VAT perturbations, confidence-weighted CE."""

    family = "consistency: network perturbation (mean teachers)"

    @dataclasses.dataclass(frozen=True)
    class Config(MethodConfig):
        keep_rate: float = 0.996                # yyliu01/PS-MT VocCode/train.py update_teachers(keep_rate=0.996)
        gamma: float = 0.5                      # VocCode/configs/config_deeplab_v3+.json trainer.gamma
        assist_topk: int = 7                    # VocCode/train.py assist_mask_calculate(topk=7)
        semi_p_th: float = 0.6                  # scripts/train_voc_aug.sh --semi_p_th=.6
        unsup_weight: float = 1.5               # scripts/train_voc_aug.sh unsup_weight=1.5
        ramp_up: float = 12 / 80                # config_deeplab_v3+.json ramp_up 12 (epochs) of trainer.epochs 80
        warm_up: float = 5 / 80                 # scripts/train_voc_aug.sh --warm_up=5 (epochs) of 80
        alternate_every: Optional[int] = None   # Base/base_trainer.py: one epoch per teacher; None = total_steps / 80
        xi: float = 1e-6                        # Model/Deeplabv3_plus/encoder_decoder.py get_r_adv_t(xi=1e-6)
        eps: float = 2.0                        # encoder_decoder.py get_r_adv_t(eps=2.0), 1 power iteration
        cutmix_area: Tuple[float, float] = (0.25, 0.75)  # train.py rand_bbox_1: area 1 - lam, lam ~ Beta(4, 4)
        teacher_batch_stats: bool = True        # train.py _train_epoch: model.train() before predict_with_out_grad

        def __post_init__(self) -> None:
            if self.alternate_every is not None and self.alternate_every < 1:
                raise ConfigError(f"method 'psmt': alternate_every must be >= 1 or None, got {self.alternate_every}")
            for name in ("ramp_up", "warm_up", "gamma", "keep_rate"):
                if not 0 <= getattr(self, name) <= 1:
                    raise ConfigError(f"method 'psmt': {name} must lie in [0, 1], got {getattr(self, name)}")

    def __init__(self, model: nn.Module, num_classes: int, views, config=None, total_steps: int = 1) -> None:
        super().__init__(model, num_classes, views, config, total_steps)
        cfg = self.cfg
        self.teacher1 = EMATeacher(model, cfg.keep_rate, warmup=False, batch_stats=cfg.teacher_batch_stats)
        self.teacher2 = EMATeacher(model, cfg.keep_rate, warmup=False, batch_stats=cfg.teacher_batch_stats)
        self.warm_steps = int(cfg.warm_up * self.total_steps)
        self.ramp_steps = cfg.ramp_up * self.total_steps
        self.alternate_every = cfg.alternate_every or max(1, round(self.total_steps / 80))

    # -- schedule ---------------------------------------------------------------------------------------------------
    def current_teacher(self, step: int) -> int:
        """1 or 2: the teacher updated after ``step`` (teacher 1 first, switching every ``alternate_every`` steps)."""
        return 1 + ((max(step - self.warm_steps, 0) // self.alternate_every) % 2)

    def unsup_weight(self, step: int) -> float:
        """0 during the warm-up, then ``unsup_weight`` times the cosine ramp."""
        if step < self.warm_steps:
            return 0.0
        return self.cfg.unsup_weight * cosine_rampup(step - self.warm_steps, self.ramp_steps)

    # -- pieces -----------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def teacher_target(self, image: torch.Tensor, valid: torch.Tensor, step: int) -> Target:
        """Ensemble pseudo-label ``softmax(gamma * l1 + (1 - gamma) * l2)`` of the two teachers on ``image``.

        With ``teacher_batch_stats`` their BatchNorm layers use the statistics of ``image`` (dropout stays off)."""
        l1, l2 = self.teacher1(image).float(), self.teacher2(image).float()
        if self.current_teacher(step) == 1:
            l2 = assist(l1, l2, self.cfg.assist_topk)
        else:
            l1 = assist(l2, l1, self.cfg.assist_topk)
        conf, label = F.softmax(self.cfg.gamma * l1 + (1 - self.cfg.gamma) * l2, dim=1).max(dim=1)
        return Target(label, conf, valid)

    def student(self, image: torch.Tensor, tvat: bool) -> torch.Tensor:
        """Student logits; with ``tvat`` its decoder features get T-VAT noise against the teachers' ensemble."""
        dec = self.model.decode(self.model.encode(image))
        if tvat:
            t1, t2, size = self.teacher1.net, self.teacher2.net, dec.shape[-2:]

            def ensemble(f: torch.Tensor) -> torch.Tensor:  # the teachers' classifiers on the student's features
                return (t1.classify(f, size) + t2.classify(f, size)) / 2

            dec = dec + vat_noise(dec, ensemble, self.cfg.xi, self.cfg.eps)
        return self.model.classify(dec, image.shape[-2:])

    # -- the step ---------------------------------------------------------------------------------------------------
    def training_step(self, x: Dict[str, torch.Tensor], u: Optional[Dict[str, torch.Tensor]], step: int) -> Dict[str, torch.Tensor]:
        v_x = self.views.weak(x)
        img_x = self.views.strong(v_x.image)
        warm = step < self.warm_steps
        sup = self.labelled_loss(self.student(img_x, tvat=not warm), v_x.mask)
        if warm:
            zero = sup.new_zeros(())
            return {"loss": sup, "sup": sup, "unsup": zero, "w_unsup": zero, "conf_ratio": zero}

        v_u = self.views.weak(u)
        target = self.teacher_target(v_u.image, v_u.valid, step)
        img_u_s = self.views.strong(v_u.image)
        m = box_masks(img_u_s.shape[0], img_u_s.shape[-2:], n_boxes=1, area=self.cfg.cutmix_area, p=1.0, device=img_u_s.device)
        img_u_s = mix(img_u_s, img_u_s.roll(1, dims=0), m)
        target = target.mixed(target.rolled(), m)

        unsup = strict_loss(self.student(img_u_s, tvat=True), target, self.cfg.semi_p_th)
        w = self.unsup_weight(step)
        kept = ((target.conf >= self.cfg.semi_p_th) & target.valid).sum() / target.valid.sum().clamp(min=1)
        return {"loss": sup + w * unsup, "sup": sup, "unsup": unsup, "w_unsup": sup.new_tensor(w), "conf_ratio": kept.float()}

    def after_optimizer_step(self, step: int) -> None:
        """Reset both teachers to the student when the warm-up ends; afterwards move only the current teacher."""
        if step < self.warm_steps - 1:
            return
        if step == self.warm_steps - 1:
            for t in (self.teacher1, self.teacher2):
                t.net.load_state_dict(self.model.state_dict())
            return
        (self.teacher1 if self.current_teacher(step) == 1 else self.teacher2).update(self.model, step)
