"""CAC: the overlap correspondence is right and the directional loss moves only the less confident side."""
import pytest
import torch
import torch.nn.functional as F

from semiseg_sdk.augment import ViewConfig, ViewMaker, warp_view
from semiseg_sdk.methods import get_method
from semiseg_sdk.methods.cac import directional_contrastive_loss, match_features, sample_overlapping_crops
from semiseg_sdk.models import build_model


def _coordinate_image(b=6, h=40, w=56):
    """Pixel (y, x) holds (y / h, x / w, 0.5): bilinear sampling returns the exact (fractional) source coordinate."""
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    img = torch.stack([yy / h, xx / w, torch.full_like(xx, 0.5)])[None].repeat(b, 1, 1, 1)
    return img, torch.zeros(b, h, w, dtype=torch.long), torch.ones(b, h, w, dtype=torch.bool)


@pytest.mark.parametrize("stride,cell", [(1, 1), (8, 4)])
def test_matched_cells_show_the_same_source_pixels(stride, cell):
    img, mask, valid = _coordinate_image()
    g = torch.Generator().manual_seed(stride)
    crop = (32, 32)
    sizes = torch.tensor([[40, 56]] * img.shape[0])
    m1, m2 = sample_overlapping_crops(sizes, crop, (0.8, 1.6), (0.1, 1.0), stride=stride, flip_p=0.5, generator=g)
    assert (m1[:, 0, 0] * m2[:, 0, 0] < 0).any()  # some pairs are flipped differently: the test covers flips
    v1, v2 = warp_view(img, mask, valid, m1, crop), warp_view(img, mask, valid, m2, crop)
    feat = (crop[0] // cell, crop[1] // cell)
    bi, n1, n2 = match_features(m1, m2, v1.valid, v2.valid, feat)
    assert len(bi) > 50 and set(bi.tolist()) == set(range(img.shape[0]))
    # a feature cell = the mean of its pixels; matched cells cover the same source pixels (a flipped cell the same set)
    c1 = F.avg_pool2d(v1.image, cell).permute(0, 2, 3, 1).reshape(img.shape[0], -1, 3)[bi, n1]
    c2 = F.avg_pool2d(v2.image, cell).permute(0, 2, 3, 1).reshape(img.shape[0], -1, 3)[bi, n2]
    assert torch.allclose(c1, c2, atol=1e-5)
    # and none is missing: per sample, as many matches as cells in the overlap of the two windows (no padding here)
    flip1, flip2 = m1[:, 0, 0] < 0, m2[:, 0, 0] < 0
    x1 = torch.where(flip1, m1[:, 0, 2] - (crop[1] - 1), -m1[:, 0, 2])
    x2 = torch.where(flip2, m2[:, 0, 2] - (crop[1] - 1), -m2[:, 0, 2])
    dy, dx = (m1[:, 1, 2] - m2[:, 1, 2]).abs(), (x1 - x2).abs()
    cells = ((crop[0] - dy) / cell).round() * ((crop[1] - dx) / cell).round()
    assert torch.equal(torch.bincount(bi, minlength=img.shape[0]), cells.long())


def test_overlapping_crops_respect_iou_bound_and_stride():
    g = torch.Generator().manual_seed(0)
    sizes = torch.tensor([[200, 300]] * 32)
    m1, m2 = sample_overlapping_crops(sizes, (64, 64), (1.0, 2.0), (0.3, 0.7), stride=8, flip_p=0.0, generator=g)
    assert torch.equal(m1[:, 0, 0], m2[:, 0, 0])  # one shared scale
    d = m1[:, :, 2] - m2[:, :, 2]  # offsets (y0, x0) differ by multiples of the stride
    assert torch.allclose(d / 8, torch.round(d / 8), atol=1e-4)
    inter = (64 - d[:, 0].abs()).clamp(min=0) * (64 - d[:, 1].abs()).clamp(min=0)
    iou = inter / (2 * 64 * 64 - inter)
    assert (iou >= 0.3 - 1e-6).all() and (iou <= 0.7 + 1e-6).all()


def _pairs(n=6, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    f1 = F.normalize(torch.randn(n, d, generator=g), dim=1).requires_grad_(True)
    f2 = F.normalize(torch.randn(n, d, generator=g), dim=1).requires_grad_(True)
    neg = F.normalize(torch.randn(10, d, generator=g), dim=1)
    return f1, f2, neg, torch.randint(0, 3, (10,), generator=g)


def test_loss_moves_only_the_less_confident_side():
    f1, f2, neg, neg_label = _pairs()
    label = torch.zeros(6, dtype=torch.long)
    conf1 = torch.tensor([0.9, 0.9, 0.9, 0.6, 0.5, 0.7])
    conf2 = torch.tensor([0.8, 0.8, 0.8, 0.95, 0.9, 0.72])  # pairs 0-2: view 1 leads; 3-4: view 2 leads; 5: nobody > 0.75
    l1, l2 = directional_contrastive_loss(f1, f2, conf1, conf2, label, label, neg, neg_label, temp=0.1, pos_thresh=0.75)
    (l1 + l2).backward()
    g1, g2 = f1.grad.abs().sum(1), f2.grad.abs().sum(1)
    assert torch.all(g1[:3] == 0) and torch.all(g2[:3] > 0)   # view 1 more confident: only view 2 moves
    assert torch.all(g1[3:5] > 0) and torch.all(g2[3:5] == 0)  # and vice versa
    assert g1[5] == 0 and g2[5] == 0                         # the leader must be confident (> 0.75)


def test_loss_value_removes_same_label_negatives_and_is_chunk_invariant():
    f1, f2, neg, neg_label = _pairs(n=3)
    label = torch.tensor([0, 1, 2])
    conf1, conf2 = torch.full((3,), 0.5), torch.full((3,), 0.9)  # only L_1 is active
    temp = 0.1
    pos = (f1 * f2).sum(1) / temp
    sims = f1 @ neg.T / temp
    keep = neg_label[None] != label[:, None]
    expected = (torch.logsumexp(torch.cat([pos[:, None], sims.masked_fill(~keep, -float("inf"))], 1), 1) - pos).mean()
    for chunk in (3, 4, 100):
        l1, l2 = directional_contrastive_loss(f1, f2, conf1, conf2, label, label, neg, neg_label, temp=temp, chunk=chunk)
        assert float(l1.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
        assert float(l2.detach()) == 0.0


def test_unsupervised_term_starts_after_warm_up_fraction():
    torch.manual_seed(0)
    cls = get_method("cac")
    model = build_model("deeplabv3plus", encoder="tiny", num_classes=4)
    method = cls(model, 4, ViewMaker(ViewConfig(crop_size=(32, 32))), cls.make_config({"pos_thresh": 0.0}), total_steps=32)
    g = torch.Generator().manual_seed(0)
    x = {"image": torch.randint(0, 256, (2, 3, 40, 40), dtype=torch.uint8, generator=g),
         "mask": torch.randint(0, 4, (2, 40, 40), generator=g), "valid": torch.ones(2, 40, 40, dtype=torch.bool)}
    u = {"image": torch.randint(0, 256, (2, 3, 40, 40), dtype=torch.uint8, generator=g),
         "mask": torch.full((2, 40, 40), 255), "valid": torch.ones(2, 40, 40, dtype=torch.bool)}
    early = method.training_step(x, u, 1)  # 5/80 of 32 steps -> starts at step 2
    assert float(early["unsup"]) == 0.0
    late = method.training_step(x, u, 2)
    assert float(late["unsup"].detach()) > 0.0
    assert float(late["unsup"].detach()) == pytest.approx(0.1 * float((late["loss_1"] + late["loss_2"]).detach()), rel=1e-5)
    late["loss"].backward()
    assert method.projector.net[0].weight.grad.abs().sum() > 0
    assert method.inference_model() is method.model


@pytest.mark.parametrize("pair_scale_range,lowest", [((0.8, 2.0), 0.8), (None, 0.5)])
def test_crop_pairs_are_drawn_at_the_official_pair_scales(monkeypatch, pair_scale_range, lowest):
    # dataloaders/voc.py PairVOCDataset: long side U(0.8, 2.0) x base_size (the labelled loader: U(0.5, 2.0))
    from semiseg_sdk.methods import cac as cac_module

    seen = {"scales": [], "ranges": [], "valid": []}

    def spy_crops(sizes, crop, scale_range, *args):
        seen["ranges"].append(tuple(scale_range))
        m1, m2 = sample_overlapping_crops(sizes, crop, scale_range, *args)
        seen["scales"].append(m1[:, 1, 1])
        return m1, m2

    def spy_warp(*args):
        view = warp_view(*args)
        seen["valid"].append(view.valid)
        return view

    monkeypatch.setattr(cac_module, "sample_overlapping_crops", spy_crops)
    monkeypatch.setattr(cac_module, "warp_view", spy_warp)
    torch.manual_seed(0)
    cls = get_method("cac")
    model = build_model("deeplabv3plus", encoder="tiny", num_classes=4)
    views = ViewMaker(ViewConfig(crop_size=(32, 32), scale_range=(0.5, 2.0)))
    method = cls(model, 4, views, cls.make_config({"pair_scale_range": pair_scale_range}), total_steps=1)
    x = {"image": torch.randint(0, 256, (2, 3, 40, 40), dtype=torch.uint8), "mask": torch.randint(0, 4, (2, 40, 40)),
         "valid": torch.ones(2, 40, 40, dtype=torch.bool)}
    u = {"image": torch.randint(0, 256, (16, 3, 40, 40), dtype=torch.uint8), "mask": torch.full((16, 40, 40), 255),
         "valid": torch.ones(16, 40, 40, dtype=torch.bool)}
    for step in range(4):
        method.training_step(x, u, step)
    assert seen["ranges"] == [(lowest, 2.0)] * 4
    scales = torch.cat(seen["scales"])
    assert scales.min() >= lowest and scales.max() <= 2.0
    # a 40 px source at scale >= 0.8 is >= 32 px: no crop of a pair is padded; at the views' 0.5 some are
    padded = any(not bool(v.all()) for v in seen["valid"])
    assert padded == (lowest < 0.8)
