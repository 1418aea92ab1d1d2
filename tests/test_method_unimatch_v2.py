"""UniMatch V2: complementary channel dropout between the two strong views, pseudo-labels from the EMA teacher (not
the student), and the loss ``(L_x + (L_s1 + L_s2) / 2) / 2``.

A per-pixel model (logits = a * RGB) makes the losses computable by hand: a red pixel is class 0 with confidence
``1 / (1 + 2 e^-a)``, green is class 1 alike.
"""
import pytest
import torch

from method_helpers import CE0, GREEN, RED, IdentityViews, PixelModel, colour_batch, scalar
from semiseg_sdk.methods import get_method
from semiseg_sdk.methods.unimatch_v2 import complementary_masks
from semiseg_sdk.models import build_model


def test_complementary_masks_pair_the_two_views_and_leave_half_the_images_unperturbed():
    torch.manual_seed(0)
    masks = complementary_masks(8, [16, 32, 16], kept_fraction=0.5, device=torch.device("cpu"))
    assert sorted(masks) == [16, 32]  # one mask per width: maps of one width share it, as the official ViT layers do
    kept_rows = None
    for width, m in masks.items():
        first, second = m[:8, :, 0, 0], m[8:, :, 0, 0]
        assert m.shape == (16, width, 1, 1)
        assert torch.equal(first + second, torch.full_like(first, 2.0))  # complementary channel for channel
        kept = (first == 1).all(dim=1)
        assert int(kept.sum()) == 4 and bool(((first[~kept] == 0) | (first[~kept] == 2)).all())
        assert 0.3 < float((first[~kept] == 0).float().mean()) < 0.7  # Bernoulli(0.5) drops
        kept_rows = kept if kept_rows is None else kept_rows
        assert torch.equal(kept, kept_rows)  # the same images are left unperturbed in every map


def test_strong_views_decode_features_scaled_by_the_complementary_masks():
    torch.manual_seed(0)
    model = build_model("dpt", encoder="vit_tiny", num_classes=3)
    cls = get_method("unimatch-v2")
    m = cls(model, 3, IdentityViews(), cls.make_config()).train()
    seen = []
    decode = m.model.decode
    m.model.decode = lambda feats: seen.append([f.detach() for f in feats]) or decode(feats)
    img = torch.rand(4, 3, 28, 28)
    m.strong_logits(img, img)  # both views the same image: the decoded maps differ only by the masks
    (feats,) = seen
    clean = m.model.encode(torch.cat([img, img]))
    for f, c in zip(feats, clean):
        scale = (f / c.detach().where(c.abs() > 1e-4, torch.nan)).nanmean(dim=(2, 3))  # (8, width)
        torch.testing.assert_close(scale[:4] + scale[4:], torch.full_like(scale[:4], 2.0), atol=1e-3, rtol=0)
        assert set(torch.round(scale).unique().tolist()) <= {0.0, 1.0, 2.0}


def test_pseudo_labels_come_from_the_ema_teacher_not_the_student():
    cls = get_method("unimatch-v2")
    # kept_fraction 1: no image's features are dropped, so every loss is computable by hand
    m = cls(PixelModel(a=5.0), 3, IdentityViews(), cls.make_config({"kept_fraction": 1.0})).train()
    with torch.no_grad():
        m.teacher.net.a.fill_(0.1)  # an unconfident teacher: no pixel reaches 0.95
    x, u = colour_batch([RED, GREEN], labels=[0, 1]), colour_batch([RED, GREEN])
    out = m.training_step(x, u, 0)
    assert scalar(out["mask_ratio"]) == 0.0 and scalar(out["unsup"]) == 0.0
    assert scalar(out["loss"]) == pytest.approx(CE0 / 2, rel=1e-4)  # (L_x + 0) / 2 with the confident student
    m.after_optimizer_step(0)  # the first EMA step copies the student (decay min(1 - 1/1, 0.996) = 0)
    assert float(m.teacher.net.a) == pytest.approx(5.0)
    out = m.training_step(x, u, 1)
    assert scalar(out["mask_ratio"]) == 1.0  # now confident everywhere
    # red and green are paired by flip(0) in CutMix; every pixel is confident and correct whichever image it shows
    assert scalar(out["unsup"]) == pytest.approx(CE0, rel=1e-3)
    assert scalar(out["loss"]) == pytest.approx((CE0 + CE0) / 2, rel=1e-3)
