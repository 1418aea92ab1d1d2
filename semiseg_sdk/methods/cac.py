"""CAC: semi-supervised segmentation with directional context-aware consistency (Lai et al., CVPR 2021).

Official code: dvlab-research/Context-Aware-Consistency (``models/model.py``, ``dataloaders/voc.py``). Each
unlabelled image gives two crops at one shared scale ~ U(``pair_scale_range``) (0.8-2.0: the official pair loader
draws the long side from [0.8, 2.0] x base size, where the labelled loader uses [0.5, 2.0]; ``None`` = the views'
range) whose windows overlap (crop IoU in ``iou_bound``), each flipped and photometrically augmented on its own, so
the overlap is seen in two contexts. On the overlap the directional contrastive loss pulls the L2-normalised 128-d
projection of a pixel towards the same pixel in the other crop (stop-gradient on that target) only when the other
crop is more confident there (and above ``pos_thresh``), against negatives sampled from both crops whose
pseudo-label differs from the anchor's. ``L = CE_sup + weight_unsup * (L_1 + L_2)``, the unlabelled term from
``unsup_start`` of training.

Differences from the official code: DeepLab-v3+ -> any Segmentor (decoder features avg-pooled 2x, projector =
:class:`ProjectionHead`, which has a BatchNorm the official projector lacks); crops are affine warps on the device
(:func:`sample_overlapping_crops`) and the overlap correspondence is computed from their matrices
(:func:`match_features`) instead of from crop corners; scales are relative to the source image (the official ones
to ``base_size``, 400 for 320 crops on VOC); the strong view is the SDK's (ColorJitter 0.5/0.5/0.5/0.25 instead of
0.4/0.4/0.4/0.1, and blur sigma U(0.1, 2) after jitter and grayscale instead of a 5x5 blur before them); one
process, so no all_gather and no feature bank of the previous step (``step_save``): negatives are this step's
``selected_num`` pixels per crop (fewer when a crop has fewer); ``epoch_start_unsup = 5`` of 80 epochs ->
``unsup_start = 5 / 80`` of ``total_steps``; padding pixels are never anchors nor negatives.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ..augment import warp_view
from ..augment.views import valid_sizes
from ..models.heads import ProjectionHead
from .base import Method, MethodConfig
from .registry import register_method

_MASKED = -1e9  # logit of a removed negative (finite: keeps gradients finite when a whole chunk is removed)


def _crop_matrix(s: torch.Tensor, y0: torch.Tensor, x0: torch.Tensor, flip: torch.Tensor, crop: Tuple[int, int]) -> torch.Tensor:
    """(B,2,3) source -> crop matrices: ``x' = ±(s x - x0) [+ w - 1 if flipped]``, ``y' = s y - y0``."""
    m = torch.zeros(s.shape[0], 2, 3, device=s.device)
    sign = 1.0 - 2.0 * flip.float()
    m[:, 0, 0], m[:, 0, 2] = sign * s, -sign * x0 + flip.float() * (crop[1] - 1.0)
    m[:, 1, 1], m[:, 1, 2] = s, -y0
    return m


def sample_overlapping_crops(src_sizes: torch.Tensor, crop: Tuple[int, int], scale_range: Sequence[float] = (0.5, 2.0),
                             iou_bound: Sequence[float] = (0.1, 1.0), stride: int = 8, flip_p: float = 0.5, tries: int = 50,
                             generator: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Two (B,2,3) source -> crop matrices per sample: one scale ~ U(scale_range), two crop offsets that differ by a
    multiple of ``stride`` with crop IoU in ``iou_bound`` (first of ``tries`` candidates; else the same crop), and
    independent horizontal flips. ``src_sizes`` (B,2) are the valid (h, w) of each source image."""
    b, dev = src_sizes.shape[0], src_sizes.device
    ch, cw = float(crop[0]), float(crop[1])
    r = torch.rand(b, 5, device=dev, generator=generator)
    s = scale_range[0] + (scale_range[1] - scale_range[0]) * r[:, 0]
    span = src_sizes.float() * s[:, None] - torch.tensor([ch, cw], device=dev)  # (B, 2): room for the offset
    lo = span.clamp(max=0.0)
    first_xy = lo + r[:, 1:3] * span.abs()
    y1, x1 = first_xy.unbind(1)
    # candidates for crop 2 uniform over the offsets where it can still touch crop 1 (same law as CAC's rejection
    # sampling over the whole image, far fewer rejections on large images)
    size = torch.tensor([ch, cw], device=dev)
    c_lo, c_hi = torch.maximum(lo, first_xy - size), torch.minimum(lo + span.abs(), first_xy + size)
    cand = c_lo[:, None] + torch.rand(b, tries, 2, device=dev, generator=generator) * (c_hi - c_lo)[:, None]
    dy = torch.trunc((cand[..., 0] - y1[:, None]) / stride) * stride  # towards crop 1: stays inside the range
    dx = torch.trunc((cand[..., 1] - x1[:, None]) / stride) * stride
    inter = (ch - dy.abs()).clamp(min=0) * (cw - dx.abs()).clamp(min=0)
    iou = inter / (2 * ch * cw - inter)
    ok = (iou >= iou_bound[0]) & (iou <= iou_bound[1])
    first = ok.float().argmax(dim=1, keepdim=True)
    found = ok.any(dim=1)
    dy = torch.where(found, dy.gather(1, first)[:, 0], torch.zeros_like(y1))
    dx = torch.where(found, dx.gather(1, first)[:, 0], torch.zeros_like(x1))
    m1 = _crop_matrix(s, y1, x1, r[:, 3] < flip_p, crop)
    m2 = _crop_matrix(s, y1 + dy, x1 + dx, r[:, 4] < flip_p, crop)
    return m1, m2


def match_features(m1: torch.Tensor, m2: torch.Tensor, valid1: torch.Tensor, valid2: torch.Tensor,
                   feat_size: Tuple[int, int]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Feature cells of view 1 and view 2 that show the same source point.

    ``m1``/``m2`` map source pixels to crop pixels, ``valid1``/``valid2`` (B,H,W) are the crops' validity, the
    features are ``feat_size`` (h, w) cells over the crop. Each valid cell centre of view 1 is mapped into view 2
    (``m2 @ m1^-1``) and matched to the nearest cell there, if inside and valid. Returns ``(batch, flat index in
    view 1, flat index in view 2)``, each (N,) long.
    """
    b, (ch, cw), (fh, fw) = m1.shape[0], valid1.shape[-2:], feat_size
    sy, sx = ch / fh, cw / fw
    ys = (torch.arange(fh, device=m1.device) + 0.5) * sy - 0.5
    xs = (torch.arange(fw, device=m1.device) + 0.5) * sx - 0.5
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    pts = torch.stack([gx.reshape(-1), gy.reshape(-1), torch.ones(fh * fw, device=m1.device)])  # (3, n) crop-1 coords
    last = torch.tensor([0.0, 0.0, 1.0], device=m1.device).expand(b, 1, 3)
    a1, a2 = torch.cat([m1.float(), last], 1), torch.cat([m2.float(), last], 1)
    p2 = (a2 @ torch.linalg.inv(a1) @ pts)[:, :2]  # (B, 2, n) crop-2 coords
    j = torch.round((p2[:, 0] + 0.5) / sx - 0.5).long()
    i = torch.round((p2[:, 1] + 0.5) / sy - 0.5).long()
    inside = (i >= 0) & (i < fh) & (j >= 0) & (j < fw)
    idx2 = torch.where(inside, i * fw + j, torch.zeros_like(i))
    cell_ok1, cell_ok2 = _valid_cells(valid1, feat_size), _valid_cells(valid2, feat_size)
    ok = inside & cell_ok1 & cell_ok2.gather(1, idx2)
    bi, n1 = torch.nonzero(ok, as_tuple=True)
    return bi, n1, idx2[bi, n1]


def _valid_cells(valid: torch.Tensor, feat_size: Tuple[int, int]) -> torch.Tensor:
    """(B, h*w) True where most of a feature cell's pixels are valid (not padding)."""
    return (F.adaptive_avg_pool2d(valid[:, None].float(), tuple(feat_size)) > 0.5).flatten(1)


def _negative_lse(anchor: torch.Tensor, neg: torch.Tensor, neg_label: torch.Tensor, label: torch.Tensor,
                  temp: float) -> torch.Tensor:
    """log-sum-exp over one chunk of negatives of ``anchor . neg / temp``, same-pseudo-label negatives removed."""
    sim = anchor @ neg.T / temp
    return torch.logsumexp(sim.masked_fill(neg_label[None] == label[:, None], _MASKED), dim=1)


def _one_direction(anchor, target, label, neg, neg_label, temp: float, chunk: int) -> torch.Tensor:
    """Mean ``-log(exp(a.t/T) / (exp(a.t/T) + sum_neg exp(a.n/T)))`` over anchors; ``target`` is a fixed positive."""
    if anchor.shape[0] == 0:
        return anchor.sum() * 0.0
    pos = (anchor * target.detach()).sum(dim=1) / temp
    lse = pos
    for start in range(0, neg.shape[0], chunk):
        part = checkpoint(_negative_lse, anchor, neg[start:start + chunk], neg_label[start:start + chunk], label, temp,
                          use_reentrant=False)
        lse = torch.logaddexp(lse, part)
    return (lse - pos).mean()


def directional_contrastive_loss(f1: torch.Tensor, f2: torch.Tensor, conf1: torch.Tensor, conf2: torch.Tensor,
                                 label1: torch.Tensor, label2: torch.Tensor, neg: torch.Tensor, neg_label: torch.Tensor,
                                 temp: float = 0.1, pos_thresh: float = 0.75,
                                 chunk: int = 8000) -> Tuple[torch.Tensor, torch.Tensor]:
    """CAC's two directional losses on matched overlap features ``f1``/``f2`` (N,D), L2-normalised.

    ``L_1`` pulls a view-1 feature towards its (detached) view-2 match where ``conf2 > pos_thresh`` and
    ``conf1 < conf2``; ``L_2`` the other way round. Negatives ``neg`` (M,D) (detached) sharing the anchor's
    pseudo-label are removed; they are processed ``chunk`` at a time under activation checkpointing.
    """
    with torch.autocast(f1.device.type, enabled=False):
        f1, f2, neg = f1.float(), f2.float(), neg.detach().float()
        pull1 = (conf2 > pos_thresh) & (conf1 < conf2)
        pull2 = (conf1 > pos_thresh) & (conf2 < conf1)
        loss1 = _one_direction(f1[pull1], f2[pull1], label1[pull1], neg, neg_label, temp, chunk)
        loss2 = _one_direction(f2[pull2], f1[pull2], label2[pull2], neg, neg_label, temp, chunk)
    return loss1, loss2


@register_method("cac")
class CAC(Method):
    """Supervised CE + directional contrast between two overlapping crops; the student is the inference model."""

    family = "contrastive (context-aware consistency)"

    @dataclasses.dataclass(frozen=True)
    class Config(MethodConfig):
        weight_unsup: float = 0.1        # Context-Aware-Consistency configs/voc_cac_*.json "weight_unsup"
        temp: float = 0.1                # configs/voc_cac_*.json "temp"
        pos_thresh: float = 0.75         # configs/voc_cac_*.json "pos_thresh_value"
        selected_num: int = 6400         # configs/voc_cac_*.json "selected_num" (negatives per crop)
        proj_dim: int = 128              # configs/voc_cac_*.json "proj_final_dim"
        downsample: bool = True          # configs/voc_cac_*.json "downsample": avg-pool features 2x
        iou_bound: tuple = (0.1, 1.0)    # configs/voc_cac_*.json "iou_bound"
        pair_scale_range: Optional[tuple] = (0.8, 2.0)  # dataloaders/voc.py Pair*Dataset: longside U(0.8, 2.0) x base
        stride: int = 8                  # configs/voc_cac_*.json "stride": crop offsets differ by multiples of it
        unsup_start: float = 5 / 80      # configs/voc_cac_*.json "epoch_start_unsup" 5 of "epochs" 80
        neg_chunk: int = 8000            # models/model.py: negatives processed 8000 at a time (checkpointed)

    def __init__(self, model, num_classes, views, config=None, total_steps: int = 1) -> None:
        super().__init__(model, num_classes, views, config, total_steps)
        ch = model.decoder.out_channels
        self.projector = ProjectionHead(ch, self.cfg.proj_dim, hidden=ch)

    def _embed(self, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(normalised projections (B,D,h,w), confidence (B,h,w), pseudo-label (B,h,w)) at the pooled feature size."""
        dec = self.model.decode(self.model.encode(image))
        if self.cfg.downsample:
            dec = F.avg_pool2d(dec, kernel_size=2, stride=2)
        proj = F.normalize(self.projector(dec).float(), dim=1)
        with torch.no_grad():
            conf, label = self.model.classify(dec, dec.shape[-2:]).float().softmax(dim=1).max(dim=1)
        return proj, conf, label

    def training_step(self, x: Dict[str, torch.Tensor], u: Optional[Dict[str, torch.Tensor]], step: int) -> Dict[str, torch.Tensor]:
        cfg = self.cfg
        sup = self.supervised_loss(x)["sup"]
        zero = sup.detach() * 0.0
        if step < int(cfg.unsup_start * self.total_steps):
            return {"loss": sup, "sup": sup, "unsup": zero, "loss_1": zero, "loss_2": zero}

        crop, valid = tuple(self.views.cfg.crop_size), u["valid"]
        scale_range = cfg.pair_scale_range if cfg.pair_scale_range is not None else self.views.cfg.scale_range
        m1, m2 = sample_overlapping_crops(valid_sizes(valid), crop, scale_range, cfg.iou_bound, cfg.stride,
                                          self.views.cfg.flip_p)
        with torch.no_grad():
            image = u["image"].float().div_(255.0)
            v1, v2 = warp_view(image, u["mask"], valid, m1, crop), warp_view(image, u["mask"], valid, m2, crop)
            img_u_s = self.views.strong(torch.cat([v1.image, v2.image]))
        proj, conf, label = self._embed(img_u_s)
        b, (fh, fw) = valid.shape[0], proj.shape[-2:]
        bi, n1, n2 = match_features(m1, m2, v1.valid, v2.valid, (fh, fw))
        feat = proj.permute(0, 2, 3, 1).reshape(2, b, fh * fw, -1)
        conf, label = conf.reshape(2, b, fh * fw), label.reshape(2, b, fh * fw)

        cells_ok = torch.stack([_valid_cells(v1.valid, (fh, fw)), _valid_cells(v2.valid, (fh, fw))])
        neg, neg_label = self._negatives(feat, label, cells_ok)
        loss_1, loss_2 = directional_contrastive_loss(
            feat[0, bi, n1], feat[1, bi, n2], conf[0, bi, n1], conf[1, bi, n2], label[0, bi, n1], label[1, bi, n2],
            neg, neg_label, cfg.temp, cfg.pos_thresh, cfg.neg_chunk)
        unsup = cfg.weight_unsup * (loss_1 + loss_2)
        return {"loss": sup + unsup, "sup": sup, "unsup": unsup, "loss_1": loss_1, "loss_2": loss_2}

    def _negatives(self, feat: torch.Tensor, label: torch.Tensor, ok: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Up to ``selected_num`` random valid cells of each crop (features detached) and their pseudo-labels."""
        negs, labels = [], []
        for view in range(2):
            f, lab = feat[view][ok[view]], label[view][ok[view]]
            pick = torch.randperm(f.shape[0], device=f.device)[: self.cfg.selected_num]
            negs.append(f[pick].detach())
            labels.append(lab[pick])
        return torch.cat(negs), torch.cat(labels)
