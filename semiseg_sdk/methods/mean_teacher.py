"""Mean teacher with mask-based mixing: CutMix and CutOut (French et al., BMVC 2020), ClassMix (Olsson et al.,
WACV 2021) and ComplexMix (Chen et al., ICIP 2021).

The EMA teacher predicts the weak view of the unlabelled batch; the student sees a mixed image (or, for CutOut, a
partly zeroed one) and learns the teacher's probabilities mixed with the same mask, so the target of every pixel
is the teacher's prediction on the image that pixel came from. Official code:

* CutMix / CutOut: Britefury/cutmix-semisup-seg ``train_seg_semisup_mask_mt.py`` + ``run_pascal_aug_experiments.sh``:
  EMA 0.99 (fixed), squared difference of class probabilities ("var"), one box covering half the image (CutMix) or
  the outside of a box of area U(0, 1) zeroed, with its target ignored (CutOut); conf_thresh 0.97 applied as a
  scalar weight = fraction of confident pixels (``conf_per_pixel`` off). The teacher predicts with BatchNorm on its
  running statistics: ``teacher_net.train()`` then ``freeze_batchnorm()`` (l.268-275 at af6183a, ``--freeze_bn`` in
  every ``run_*_experiments.sh``) puts every BN layer of their DeepLab-v2 in eval mode (of their DeepLab-v3+, only
  the backbone's).
* ClassMix: WilhelmT/ClassMix ``trainSSL.py`` + ``configs/*.json``: EMA ``min(1 - 1/(t+1), 0.99)``, half of the
  classes the teacher predicts on one image pasted onto another, CE to the argmax of the mixed teacher
  probabilities weighted by the fraction of pixels with confidence >= 0.968 ("threshold_uniform"). The EMA model
  predicts in train mode, BatchNorm on the weak batch's own statistics (``teacher_batch_stats``): ``main`` calls
  ``ema_model.train()`` once (l.265 at f39df9a) and never ``eval()``; ``create_ema_model`` copies only parameters,
  so its running statistics are never the student's.
* ComplexMix has **no official code**; implemented from the paper (arXiv 2101.10156): the mask joins CutMix-style
  rectangles and ClassMix-style semantic regions, with a "complexity" that sets how many regions there are. Here the
  crop is cut into ``complexity x complexity`` equal boxes and ClassMix runs inside each box (half of the classes
  the teacher predicts in that box); complexity 1 is ClassMix. The loss, threshold, EMA and teacher BatchNorm mode
  follow ClassMix, on which the paper builds; the default complexity is our choice (the grid layout and its default
  are not verified).
  What the stored paper text (abstract, Fig. 1) does confirm: a mean teacher whose student "attempts to match mixed
  predictions from the teacher with its own predictions based on the mixed image input", and a mask that
  "incorporates aspects of CutMix and ClassMix" with "the ability to control the complexity of the augmented data
  while attempting to be semantically-correct". Complexity counts boxes per side, so a cell is ``H / complexity``
  pixels: 24 px on a 96 px crop at the default 4, against 80 px (321x321 VOC crops) or 128x256 px (512x1024
  Cityscapes frames) at the input sizes of ClassMix's configs, on which the paper builds.

Opt-in levers (off by default, in no official recipe): ``class_thresholds`` and ``class_balance``
(:mod:`~semiseg_sdk.methods.class_levers`) as for FixMatch/UniMatch. Both are fed by the teacher's prediction of the
weak view. Class-wise thresholds decide which pixels count as confident (the scalar weight's fraction, or the pixels
kept with ``conf_per_pixel``); the class balance weights each pixel's loss by its target class (the argmax of the
mixed teacher probabilities), its share measured over the pixels that bear the loss: every valid one under the
scalar weight, the confident ones with ``conf_per_pixel``.

``inference_model()`` is the EMA teacher for every mix. French et al. evaluate the teacher; ClassMix's script
evaluates the student (``evaluate(model, ...)``): the teacher is used here for all four so they compare alike.

Differences from the official code: the mixing partner is the same unlabelled batch rolled by one sample (both
scripts draw pairs from their loaders); the unlabelled loss and the confident fraction count only non-padding
pixels; strong colour augmentation (``strong``) is applied to each image before mixing (French's order; ClassMix
jitters after mixing); any Segmentor instead of DeepLab-v2/v3+.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, NamedTuple, Optional

import torch
import torch.nn.functional as F

from ..augment import ViewMaker, box_masks, classmix_masks, cutout, mix
from ..data.base import IGNORE_INDEX
from ..errors import ConfigError
from .base import Method
from .class_levers import ClassLeverConfig, ClassLevers
from .ema import EMATeacher
from .pseudo_labels import Target, confident_fraction, confident_mask, mean_over_valid, pixel_cross_entropy
from .registry import register_method

MIXES = ("cutmix", "cutout", "classmix", "complexmix")
LOSSES = ("mse", "ce")

# The official recipe of each mix, used for every option left at None.
OFFICIAL = {
    # Britefury/cutmix-semisup-seg: --cons_loss_fn var, --conf_thresh 0.97, EMAWeightOptimizer with fixed alpha
    # and --freeze_bn: the teacher's BatchNorm on running statistics
    "cutmix": {"loss": "mse", "conf_thresh": 0.97, "ema_warmup": False, "teacher_batch_stats": False},
    "cutout": {"loss": "mse", "conf_thresh": 0.97, "ema_warmup": False, "teacher_batch_stats": False},
    # WilhelmT/ClassMix trainSSL.py: consistency_loss "CE", max_probs.ge(0.968), update_ema_variables warm-up,
    # ema_model.train(): the teacher's BatchNorm on batch statistics
    "classmix": {"loss": "ce", "conf_thresh": 0.968, "ema_warmup": True, "teacher_batch_stats": True},
    # no official code: ClassMix's recipe assumed (unverified)
    "complexmix": {"loss": "ce", "conf_thresh": 0.968, "ema_warmup": True, "teacher_batch_stats": True},
}


class Mixed(NamedTuple):
    """The student's unlabelled input and its target: image (B,3,H,W), teacher probabilities (B,C,H,W) mixed with
    the same mask, ``valid`` (non-padding), ``keep`` (pixels with a target: valid and not cut out) and ``mask``
    (True = pixel of the image itself for mixes, pixel zeroed for CutOut)."""

    image: torch.Tensor
    prob: torch.Tensor
    valid: torch.Tensor
    keep: torch.Tensor
    mask: torch.Tensor


def complexmix_masks(labels: torch.Tensor, num_classes: int, complexity: int) -> torch.Tensor:
    """ComplexMix mask: ``labels`` (B,H,W) cut into ``complexity x complexity`` equal boxes, ClassMix in each box.

    Each box independently keeps half (``n // 2``, ClassMix's ``(n - n % 2) / 2`` in trainSSL.py) of the classes
    present in it, chosen at random, so a box with one class comes wholly from the partner; 255 is never chosen.
    Returns bool (B,H,W), the union over boxes of the chosen class regions."""
    b, h, w = labels.shape
    n = int(complexity)
    pad_h, pad_w = -h % n, -w % n
    lab = F.pad(labels, (0, pad_w, 0, pad_h), value=IGNORE_INDEX)
    ch, cw = (h + pad_h) // n, (w + pad_w) // n
    cells = lab.reshape(b, n, ch, n, cw).permute(0, 1, 3, 2, 4).reshape(b * n * n, ch, cw)
    m = classmix_masks(cells, num_classes)
    m = m.view(b, n, n, ch, cw).permute(0, 1, 3, 2, 4).reshape(b, h + pad_h, w + pad_w)
    return m[:, :h, :w]


@register_method("mean-teacher")
class MeanTeacher(ClassLevers, Method):
    """EMA teacher + mask-based mixing consistency (``mix``: cutmix, cutout, classmix, complexmix)."""

    family = "consistency: input perturbation (mean teacher + mixing)"

    @dataclasses.dataclass(frozen=True)
    class Config(ClassLeverConfig):  # + the class levers' options (class_levers.ClassLeverConfig)
        mix: str = "cutmix"  # French et al.'s headline variant (Britefury/cutmix-semisup-seg --mask_mode mix)
        ema_momentum: float = 0.99  # French --teacher_alpha 0.99; ClassMix trainSSL.py alpha_teacher = 0.99
        ema_warmup: Optional[bool] = None  # None = per mix: French fixed alpha, ClassMix min(1 - 1/(t+1), alpha)
        conf_thresh: Optional[float] = None  # None = per mix: French --conf_thresh 0.97, ClassMix 0.968
        conf_per_pixel: bool = False  # French --conf_per_pixel off / ClassMix "threshold_uniform": scalar weight
        loss: Optional[str] = None  # None = per mix: "mse" = French --cons_loss_fn var, "ce" = ClassMix "CE"
        unsup_weight: float = 1.0  # French --cons_weight 1.0; ClassMix configs consistency_weight 1
        strong: bool = True  # French --aug_strong_colour (run_pascal_aug_experiments.sh); ClassMix Cityscapes jitter+blur
        complexity: int = 4  # ComplexMix boxes per side (paper only, value not verified)
        teacher_batch_stats: Optional[bool] = None  # None = per mix: False (French --freeze_bn), True (ClassMix)

    def __init__(self, model: torch.nn.Module, num_classes: int, views: ViewMaker, config: Any = None, total_steps: int = 1) -> None:
        super().__init__(model, num_classes, views, config, total_steps)
        cfg = self.cfg
        if cfg.mix not in MIXES:
            raise ConfigError(f"method '{self.name}': mix={cfg.mix!r} is not one of {list(MIXES)}")
        self.cfg = cfg = dataclasses.replace(cfg, **{k: v for k, v in OFFICIAL[cfg.mix].items() if getattr(cfg, k) is None})
        if cfg.loss not in LOSSES:
            raise ConfigError(f"method '{self.name}': loss={cfg.loss!r} is not one of {list(LOSSES)}")
        if cfg.complexity < 1:
            raise ConfigError(f"method '{self.name}': complexity must be >= 1, got {cfg.complexity}")
        self.teacher = EMATeacher(model, cfg.ema_momentum, cfg.ema_warmup, batch_stats=cfg.teacher_batch_stats)
        self.init_class_levers(num_classes, cfg.conf_thresh)

    def training_step(self, x: Dict[str, torch.Tensor], u: Optional[Dict[str, torch.Tensor]], step: int) -> Dict[str, torch.Tensor]:
        cfg = self.cfg
        labelled = self.supervised_loss(x)
        sup = labelled["sup"]

        v_u = self.views.weak(u)
        with torch.no_grad():
            prob_u_w = self.teacher(v_u.image).float().softmax(dim=1)
        conf_w, label_w = prob_u_w.max(dim=1)
        weak = Target(label_w, conf_w, v_u.valid)
        self.observe(weak, labelled["mask_x"], None if cfg.conf_per_pixel else weak.valid)
        u_s = self.mix_unlabelled(v_u.image, prob_u_w, v_u.valid)
        pred_u_s = self.model(u_s.image)

        conf_t, label_t = u_s.prob.max(dim=1)
        target = Target(label_t, conf_t, u_s.valid)
        thresh = self.threshold(target)
        if cfg.loss == "mse":
            loss_map = (pred_u_s.float().softmax(dim=1) - u_s.prob).pow(2).sum(dim=1)
        else:
            loss_map = pixel_cross_entropy(pred_u_s, label_t)
        weight = self.pixel_weight(target)
        if weight is not None:
            loss_map = loss_map * weight
        conf_ratio = confident_fraction(conf_t, thresh, u_s.valid)
        if cfg.conf_per_pixel:
            unsup = mean_over_valid(loss_map, u_s.keep & confident_mask(conf_t, thresh, u_s.valid), u_s.valid)
        else:
            unsup = conf_ratio * mean_over_valid(loss_map, u_s.keep, u_s.valid)
        loss = sup + cfg.unsup_weight * unsup
        return {"loss": loss, "sup": sup, "unsup": unsup, "conf_ratio": conf_ratio}

    def mix_unlabelled(self, image: torch.Tensor, prob: torch.Tensor, valid: torch.Tensor) -> Mixed:
        """Student input and target: each image mixed with its batch neighbour (``roll(1, 0)``) under one mask."""
        cfg = self.cfg
        b, _, h, w = image.shape
        image = self.views.strong(image) if cfg.strong else image
        label = torch.where(valid, prob.argmax(dim=1), torch.full_like(valid, IGNORE_INDEX, dtype=torch.long))
        if cfg.mix == "cutout":
            # French: the outside of a box of area U(0, 1) is zeroed and gets no target
            cut = ~box_masks(b, (h, w), area=(0.0, 1.0), ratio=(0.3 * w / h, w / h / 0.3), device=image.device)
            image, label_cut = cutout(image, label, cut)
            return Mixed(image, prob, valid, label_cut != IGNORE_INDEX, cut)
        if cfg.mix == "cutmix":
            # French --mask_prop_range 0.5: one box of half the area, side fractions in [0.5, 1]
            m = box_masks(b, (h, w), area=(0.5, 0.5), ratio=(0.5 * w / h, 2.0 * w / h), device=image.device)
        elif cfg.mix == "classmix":
            m = classmix_masks(label, self.num_classes)
        else:
            m = complexmix_masks(label, self.num_classes, cfg.complexity)
        valid = mix(valid.roll(1, dims=0), valid, m)
        return Mixed(mix(image.roll(1, dims=0), image, m), mix(prob.roll(1, dims=0), prob, m), valid, valid, m)

    def after_optimizer_step(self, step: int) -> None:
        self.teacher.update(self.model, step)

    def inference_model(self) -> torch.nn.Module:
        """The EMA teacher (what French et al. evaluate; see the module docstring for ClassMix)."""
        return self.teacher.net


def _mix_config(default_mix: str, owner: str) -> type:
    """``MeanTeacher.Config`` whose ``mix`` defaults to ``default_mix`` (the aliases' only difference)."""

    @dataclasses.dataclass(frozen=True)
    class Config(MeanTeacher.Config):
        mix: str = default_mix

    Config.__qualname__ = f"{owner}.Config"
    return Config


# Thin aliases: ``--method classmix`` = ``--method mean-teacher --method_args '{"mix": "classmix"}'``.
@register_method("cutmix")
class CutMixMT(MeanTeacher):
    """Mean teacher with CutMix (French et al.)."""

    Config = _mix_config("cutmix", "CutMixMT")


@register_method("cutout")
class CutOutMT(MeanTeacher):
    """Mean teacher with CutOut (French et al.)."""

    Config = _mix_config("cutout", "CutOutMT")


@register_method("classmix")
class ClassMixMT(MeanTeacher):
    """Mean teacher with ClassMix (Olsson et al.)."""

    Config = _mix_config("classmix", "ClassMixMT")


@register_method("complexmix")
class ComplexMixMT(MeanTeacher):
    """Mean teacher with ComplexMix (Chen et al.; implemented from the paper, no official code)."""

    Config = _mix_config("complexmix", "ComplexMixMT")
