"""AdvSemiSeg: adversarial learning for semi-supervised semantic segmentation (Hung et al., BMVC 2018).

Official code: hfslyc/AdvSemiSeg (``train.py``, ``model/discriminator.py``). A fully convolutional discriminator D
tells softmax maps of the segmentor from one-hot ground truth, per pixel. The segmentor learns from

* labelled:   ``CE(S(x), y) + lambda_adv_pred * BCE(D(p_x), 1)`` (ignore pixels masked in the BCE);
* unlabelled: ``lambda_semi_adv * BCE(D(p_u), 1)`` from ``semi_start_adv`` and, from ``semi_start``, the
  self-taught ``lambda_semi * CE(S(u), argmax p_u)`` on the pixels where ``sigmoid(D(p_u)) >= mask_t``.

D learns from ``BCE(D(p.detach()), 0) / 2 + BCE(D(onehot(y)), 1) / 2`` with the unlabelled predictions as extra
fakes (``D_remain``). D is frozen while the segmentor loss is built (it gets no gradient from it) and has its own
Adam with the poly schedule; its loss is built in fp32 in :meth:`training_step` and stepped in
:meth:`after_optimizer_step` (stepping D earlier would modify weights the segmentor's backward still needs).

Differences from the official code: DeepLab-v2 -> any Segmentor; iteration thresholds are fractions of
``total_steps`` (README command: 5000 of 20000 -> 0.25); the one-hot "real" maps are the labelled batch's own
masks (the official code draws them from a second loader over the same labelled images); padding pixels of the
unlabelled crop (``valid == False``) are left out of every unlabelled term; the unlabelled adversarial term is
always back-propagated (the official code skips it in the rare steps where no pixel passes ``mask_t``); every
batch is the run's weak view (random scale and flip by default), while the README command passes neither
``--random-scale`` nor ``--random-mirror`` (both off by default in ``train.py``), so the official model trains
on plain random crops.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional

import torch
import torch.nn.functional as F

from ..data.base import IGNORE_INDEX
from ..models.heads import FCDiscriminator
from .base import Method, MethodConfig
from .registry import register_method


def masked_bce(logits: torch.Tensor, target: float, keep: torch.Tensor) -> torch.Tensor:
    """Mean BCE-with-logits of ``logits`` (B,H,W) against the constant ``target`` over ``keep`` pixels (0 if none)."""
    sel = logits[keep].float()
    if sel.numel() == 0:
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(sel, torch.full_like(sel, target))


def self_taught_loss(pred_u: torch.Tensor, d_logits: torch.Tensor, valid: torch.Tensor, mask_t: float) -> Dict[str, torch.Tensor]:
    """CE of ``pred_u`` to its own argmax on valid pixels where ``sigmoid(d_logits) >= mask_t``.

    Returns ``{"semi": mean CE over the kept pixels (0 if none), "semi_ratio": kept fraction of valid pixels}``.
    """
    with torch.no_grad():
        keep = (torch.sigmoid(d_logits.float()) >= mask_t) & valid
        mask_u = torch.where(keep, pred_u.argmax(dim=1), torch.full_like(keep, IGNORE_INDEX, dtype=torch.long))
        ratio = keep.sum().float() / valid.sum().clamp(min=1)
    if not keep.any():
        return {"semi": pred_u.sum() * 0.0, "semi_ratio": ratio}
    return {"semi": F.cross_entropy(pred_u.float(), mask_u, ignore_index=IGNORE_INDEX), "semi_ratio": ratio}


@register_method("advsemiseg")
class AdvSemiSeg(Method):
    """Segmentor + fully convolutional discriminator with its own Adam (saved in the method's state_dict)."""

    family = "adversarial"

    @dataclasses.dataclass(frozen=True)
    class Config(MethodConfig):
        lambda_adv_pred: float = 0.01   # hfslyc/AdvSemiSeg README training command (train.py default: 0.1)
        lambda_semi: float = 0.1        # hfslyc/AdvSemiSeg train.py LAMBDA_SEMI / README
        lambda_semi_adv: float = 0.001  # hfslyc/AdvSemiSeg train.py LAMBDA_SEMI_ADV
        mask_t: float = 0.2             # hfslyc/AdvSemiSeg train.py MASK_T / README
        semi_start: float = 0.25        # hfslyc/AdvSemiSeg README: --semi-start 5000 of --num-steps 20000
        semi_start_adv: float = 0.0     # hfslyc/AdvSemiSeg train.py SEMI_START_ADV = 0
        d_remain: bool = True           # hfslyc/AdvSemiSeg train.py D_REMAIN: unlabelled predictions are fakes too
        lr_d: float = 1e-4              # hfslyc/AdvSemiSeg train.py LEARNING_RATE_D (Adam)
        betas_d: tuple = (0.9, 0.99)    # hfslyc/AdvSemiSeg train.py optim.Adam(model_D..., betas=(0.9, 0.99))
        poly_power_d: float = 0.9       # hfslyc/AdvSemiSeg train.py POWER (adjust_learning_rate_D)

    def __init__(self, model, num_classes, views, config=None, total_steps: int = 1) -> None:
        super().__init__(model, num_classes, views, config, total_steps)
        cfg = self.cfg
        self.discriminator = FCDiscriminator(num_classes)
        self.optimizer_d = torch.optim.Adam(self.discriminator.parameters(), lr=cfg.lr_d, betas=tuple(cfg.betas_d))
        self._loss_d: Optional[torch.Tensor] = None

    # -- discriminator plumbing -------------------------------------------------------------------------------
    def discriminate(self, probs: torch.Tensor) -> torch.Tensor:
        """D logits (B,H,W) for probability / one-hot maps (B,C,H,W), upsampled like the official ``interp``."""
        out = self.discriminator(probs)
        return F.interpolate(out, size=probs.shape[-2:], mode="bilinear", align_corners=True)[:, 0]

    def _freeze_d(self, frozen: bool) -> None:
        for p in self.discriminator.parameters():
            p.requires_grad_(not frozen)

    def param_groups(self, lr: float, head_lr_mult: float) -> List[Dict[str, Any]]:
        """The segmentor's groups; the discriminator is trained by its own Adam, never by the main optimiser."""
        d_ids = {id(p) for p in self.discriminator.parameters()}
        groups = super().param_groups(lr, head_lr_mult)
        for g in groups:
            g["params"] = [p for p in g["params"] if id(p) not in d_ids]
        return [g for g in groups if g["params"]]

    # -- the method -------------------------------------------------------------------------------------------
    def training_step(self, x: Dict[str, torch.Tensor], u: Optional[Dict[str, torch.Tensor]], step: int) -> Dict[str, torch.Tensor]:
        cfg = self.cfg
        self._freeze_d(True)  # segmentor step: gradients flow through D into S, never into D's weights

        v_x = self.views.weak(x)
        pred_x = self.model(v_x.image)
        keep_x = v_x.mask != IGNORE_INDEX
        sup = self.labelled_loss(pred_x, v_x.mask)
        adv_pred = masked_bce(self.discriminate(pred_x.float().softmax(dim=1)), 1.0, keep_x)

        v_u = self.views.weak(u)
        pred_u = self.model(v_u.image)
        d_u = self.discriminate(pred_u.float().softmax(dim=1))
        zero = sup * 0.0
        semi_adv = masked_bce(d_u, 1.0, v_u.valid) if step >= int(cfg.semi_start_adv * self.total_steps) else zero
        if step >= int(cfg.semi_start * self.total_steps):
            taught = self_taught_loss(pred_u, d_u, v_u.valid, cfg.mask_t)
        else:
            taught = {"semi": zero, "semi_ratio": zero.detach()}
        unsup = cfg.lambda_semi_adv * semi_adv + cfg.lambda_semi * taught["semi"]
        loss = sup + cfg.lambda_adv_pred * adv_pred + unsup

        self._freeze_d(False)
        loss_d = self._discriminator_loss(pred_x.detach(), keep_x, pred_u.detach(), v_u.valid, v_x.mask)
        self._loss_d = loss_d
        return {"loss": loss, "sup": sup, "unsup": unsup, "adv_pred": adv_pred, "semi_adv": semi_adv,
                "semi": taught["semi"], "semi_ratio": taught["semi_ratio"], "loss_d": loss_d.detach()}

    def _discriminator_loss(self, pred_x, keep_x, pred_u, valid_u, mask_x) -> torch.Tensor:
        """``BCE(D(fake), 0) / 2 + BCE(D(onehot(y)), 1) / 2`` in fp32; fakes = labelled (+ unlabelled) predictions."""
        with torch.autocast(pred_x.device.type, enabled=False):
            fake, keep_fake = pred_x.float(), keep_x
            if self.cfg.d_remain:
                fake, keep_fake = torch.cat([fake, pred_u.float()]), torch.cat([keep_x, valid_u])
            loss_fake = masked_bce(self.discriminate(fake.softmax(dim=1)), 0.0, keep_fake)
            onehot = F.one_hot(torch.where(keep_x, mask_x, torch.zeros_like(mask_x)), self.num_classes)
            onehot = onehot.permute(0, 3, 1, 2).float() * keep_x[:, None].float()
            loss_real = masked_bce(self.discriminate(onehot), 1.0, keep_x)
        return loss_fake / 2 + loss_real / 2

    def after_optimizer_step(self, step: int) -> None:
        """Step D on the loss built in the last :meth:`training_step` (poly schedule, as the official code)."""
        if self._loss_d is None:
            return
        factor = max(0.0, 1.0 - step / self.total_steps) ** self.cfg.poly_power_d
        for g in self.optimizer_d.param_groups:
            g["lr"] = self.cfg.lr_d * factor
        self.optimizer_d.zero_grad(set_to_none=True)
        self._loss_d.backward()
        self.optimizer_d.step()
        self._loss_d = None

    # -- resume -----------------------------------------------------------------------------------------------
    def get_extra_state(self) -> Dict[str, Any]:
        """The discriminator's Adam state travels with the method's state_dict (exact resume)."""
        return {"optimizer_d": self.optimizer_d.state_dict()}

    def set_extra_state(self, state: Dict[str, Any]) -> None:
        self.optimizer_d.load_state_dict(state["optimizer_d"])
