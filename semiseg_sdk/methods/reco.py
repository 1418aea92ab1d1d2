"""ReCo: regional contrast on a mean-teacher ClassMix base (Liu et al., ICLR 2022, "Bootstrapping Semantic
Segmentation with Regional Contrast").

Official code: lorenmt/reco (``train_semisup.py``, ``module_list.py``). The EMA teacher pseudo-labels the weak view
of the unlabelled batch; image ``i`` is ClassMixed with image ``i + 1`` (half of its predicted classes pasted onto
the next image), then strongly augmented. ``L = CE_sup + L_unsup + L_reco`` where ``L_unsup`` is the CE to the mixed
pseudo-labels, each image weighted by the fraction of its pixels with confidence >= ``strong_threshold``, and
``L_reco`` (:func:`reco_loss`) is a pixel-to-prototype contrastive loss on a 256-d representation head over the
decoder features: hard queries of each class are pulled to the class prototype (mean representation) and pushed
from negatives of other classes, drawn with the class-relation graph (:func:`sample_negative_indices`).

The teacher predicts the pseudo-labels with BatchNorm on the unlabelled batch's own statistics
(``teacher_batch_stats``): ``train_semisup.py`` calls ``ema.model.train()`` at each epoch (l.64 at 3e856a3) before
``ema.model(train_u_data)`` (l.78); its DeepLab-v3+ has no active dropout (``aspp.py``: ``# nn.Dropout(0.5)``).
Its ``module_list.py EMA.update`` (l.20-24 at b70fcf8) averages parameters only; ours also averages BN buffers.
Evaluation and export use the EMA teacher: ReCo evaluates and saves ``ema.model`` (in eval mode).

Differences from the official code: DeepLab-v3+ -> any Segmentor (the representation head is a
:class:`ProjectionHead` on ``model.decode`` features, at their resolution); the teacher predicts the weak (already
scaled, cropped, flipped) view instead of the raw image; padding pixels of the crop never count as valid or
confident; negatives are scored by ``anchor @ keys.T`` then gathered (same values as gathering keys first, much less
memory); ReCo's ``--apply_aug`` alternatives (cutout/cutmix) are not offered.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F

from ..augment import classmix_masks, mix
from ..data.base import IGNORE_INDEX
from ..models.heads import ProjectionHead
from .base import Method, MethodConfig
from .ema import EMATeacher
from .registry import register_method


def class_prototypes(feats: torch.Tensor, labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per present class, the mean of ``feats`` (N,D) over pixels with that label (N,).

    Returns ``(protos (K,D), classes (K,) sorted, counts (K,))`` for the K classes present.
    """
    classes, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    sums = feats.new_zeros(len(classes), feats.shape[1]).index_add_(0, inverse, feats)
    return sums / counts[:, None].to(feats.dtype), classes, counts


def sample_negative_indices(k: int, protos: torch.Tensor, counts: torch.Tensor, num_queries: int, num_negatives: int,
                            temp: float, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """(num_queries, num_negatives) indices of negative keys for queries of class position ``k``.

    Keys are sorted by class (``counts[j]`` keys for class position ``j``). A key's class is drawn from the other
    classes with probability ``softmax(cos(proto_k, proto_j) / temp)``, the key uniformly inside that class.
    """
    dev = protos.device
    others = torch.arange(len(counts), device=dev)
    others = others[others != k]
    sim = F.cosine_similarity(protos[k:k + 1], protos[others], dim=1)
    draw = torch.multinomial(torch.softmax(sim / temp, dim=0), num_queries * num_negatives, replacement=True, generator=generator)
    cls = others[draw].view(num_queries, num_negatives)
    start = counts.cumsum(0) - counts
    u = torch.rand(num_queries, num_negatives, device=dev, generator=generator)
    within = torch.minimum((u * counts[cls]).long(), counts[cls] - 1)
    return start[cls] + within


def reco_loss(rep: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor, prob: torch.Tensor, strong_threshold: float = 0.97,
              temp: float = 0.5, num_queries: int = 256, num_negatives: int = 512) -> torch.Tensor:
    """ReCo loss of representations ``rep`` (B,D,h,w) given labels (B,h,w), validity (B,h,w) and class probabilities
    ``prob`` (B,C,h,w); mean over the classes present (0 when fewer than two classes are present)."""
    with torch.autocast(rep.device.type, enabled=False):
        d = rep.shape[1]
        keep = valid.reshape(-1)
        feats = rep.float().permute(0, 2, 3, 1).reshape(-1, d)[keep]
        lab = labels.reshape(-1)[keep]
        p_own = prob.float().permute(0, 2, 3, 1).reshape(-1, prob.shape[1])[keep].gather(1, lab[:, None])[:, 0]
        order = torch.argsort(lab, stable=True)
        feats, lab, p_own = feats[order], lab[order], p_own[order]
        protos, classes, counts = class_prototypes(feats, lab)
        if len(classes) <= 1:
            return rep.sum() * 0.0
        protos = protos.detach()
        keys = F.normalize(feats.detach(), dim=1)
        target = torch.zeros(num_queries, dtype=torch.long, device=rep.device)
        total = rep.sum() * 0.0
        for k in range(len(classes)):
            hard = torch.nonzero((lab == classes[k]) & (p_own < strong_threshold))[:, 0]
            if hard.numel() == 0:  # all pixels of this class are easy
                continue
            q = hard[torch.randint(hard.numel(), (num_queries,), device=rep.device)]
            anchors = F.normalize(feats[q], dim=1)
            with torch.no_grad():
                neg_idx = sample_negative_indices(k, protos, counts, num_queries, num_negatives, temp)
            pos = anchors @ F.normalize(protos[k], dim=0)
            neg = torch.gather(anchors @ keys.T, 1, neg_idx)
            total = total + F.cross_entropy(torch.cat([pos[:, None], neg], dim=1) / temp, target)
        return total / len(classes)


@register_method("reco")
class ReCo(Method):
    """Mean teacher + ClassMix + regional contrast; the EMA teacher is the inference model."""

    family = "contrastive (regional contrast)"

    @dataclasses.dataclass(frozen=True)
    class Config(MethodConfig):
        ema_momentum: float = 0.99       # lorenmt/reco train_semisup.py EMA(model, 0.99) (warm-up in module_list.EMA)
        weak_threshold: float = 0.7      # lorenmt/reco train_semisup.py --weak_threshold
        strong_threshold: float = 0.97   # lorenmt/reco train_semisup.py --strong_threshold
        temp: float = 0.5                # lorenmt/reco train_semisup.py --temp
        num_queries: int = 256           # lorenmt/reco train_semisup.py --num_queries
        num_negatives: int = 512         # lorenmt/reco train_semisup.py --num_negatives
        output_dim: int = 256            # lorenmt/reco train_semisup.py --output_dim (representation head)
        teacher_batch_stats: bool = True  # lorenmt/reco train_semisup.py ema.model.train() before the pseudo-labels

    def __init__(self, model, num_classes, views, config=None, total_steps: int = 1) -> None:
        super().__init__(model, num_classes, views, config, total_steps)
        cfg = self.cfg
        self.teacher = EMATeacher(model, cfg.ema_momentum, warmup=True, batch_stats=cfg.teacher_batch_stats)
        self.rep_head = ProjectionHead(model.decoder.out_channels, cfg.output_dim)

    def _forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Student logits and representations, both at the decoder's resolution."""
        dec = self.model.decode(self.model.encode(image))
        return self.model.classify(dec, dec.shape[-2:]), self.rep_head(dec)

    def training_step(self, x: Dict[str, torch.Tensor], u: Optional[Dict[str, torch.Tensor]], step: int) -> Dict[str, torch.Tensor]:
        cfg = self.cfg
        v_x = self.views.weak(x)
        logits_x, rep_x = self._forward(v_x.image)
        pred_x = F.interpolate(logits_x, size=v_x.mask.shape[-2:], mode="bilinear", align_corners=False)
        sup = self.labelled_loss(pred_x, v_x.mask)

        v_u = self.views.weak(u)
        with torch.no_grad():
            conf_u_w, mask_u_w = self.teacher(v_u.image).float().softmax(dim=1).max(dim=1)
            conf_u_w = torch.where(v_u.valid, conf_u_w, torch.zeros_like(conf_u_w))
            mask_u_w = torch.where(v_u.valid, mask_u_w, torch.full_like(mask_u_w, IGNORE_INDEX))
            m = classmix_masks(mask_u_w, self.num_classes)  # True: keep image i, else take image i + 1
            img_u_s = self.views.strong(mix(v_u.image.roll(-1, 0), v_u.image, m))
            mask_u_s = mix(mask_u_w.roll(-1, 0), mask_u_w, m)
            conf_u_s = mix(conf_u_w.roll(-1, 0), conf_u_w, m)
        logits_u, rep_u = self._forward(img_u_s)
        pred_u = F.interpolate(logits_u, size=mask_u_s.shape[-2:], mode="bilinear", align_corners=False)
        unsup = self._weighted_ce(pred_u, mask_u_s, conf_u_s)

        with torch.no_grad():
            small = logits_x.shape[-2:]
            lab_x = _nearest(v_x.mask, small)
            lab_u = _nearest(mask_u_s, small)
            ok_u = (_nearest(conf_u_s, small) >= cfg.weak_threshold) & (lab_u != IGNORE_INDEX)
            labels = torch.cat([lab_x, lab_u])
            valid = torch.cat([lab_x != IGNORE_INDEX, ok_u])
            prob = torch.cat([logits_x, logits_u]).float().softmax(dim=1)
        reco = reco_loss(torch.cat([rep_x, rep_u]), torch.where(valid, labels, torch.zeros_like(labels)), valid, prob,
                         cfg.strong_threshold, cfg.temp, cfg.num_queries, cfg.num_negatives)
        return {"loss": sup + unsup + reco, "sup": sup, "unsup": unsup, "reco": reco}

    def _weighted_ce(self, pred_u: torch.Tensor, mask_u: torch.Tensor, conf_u: torch.Tensor) -> torch.Tensor:
        """CE to the pseudo-labels; each image weighted by its fraction of pixels with conf >= strong_threshold."""
        b = pred_u.shape[0]
        ok = mask_u != IGNORE_INDEX
        weight = ((conf_u >= self.cfg.strong_threshold) & ok).view(b, -1).sum(1) / ok.view(b, -1).sum(1).clamp(min=1)
        ce = F.cross_entropy(pred_u.float(), mask_u, ignore_index=IGNORE_INDEX, reduction="none")
        return (ce * weight[:, None, None]).sum() / ok.sum().clamp(min=1)

    def after_optimizer_step(self, step: int) -> None:
        self.teacher.update(self.model, step)

    def inference_model(self) -> torch.nn.Module:
        return self.teacher.net


def _nearest(t: torch.Tensor, size) -> torch.Tensor:
    """Nearest-neighbour resize of a (B,H,W) map (labels, confidences) to ``size``, keeping its dtype."""
    return F.interpolate(t[:, None].float(), size=tuple(size), mode="nearest")[:, 0].to(t.dtype)
