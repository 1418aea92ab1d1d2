"""UniMatch: the feature-perturbation stream really perturbs the encoder features, the two strong views take their own
CutMix targets, and the four losses combine as ``(L_x + 0.25 L_s1 + 0.25 L_s2 + 0.5 L_fp) / 2``.

A per-pixel model (logits = a * RGB) makes the losses computable by hand: a red pixel is class 0 with confidence
``1 / (1 + 2 e^-a)``, green is class 1 alike, a grey pixel has confidence 1/3.
"""
import math

import pytest
import torch

from method_helpers import (CE0, RED, IdentityViews, PixelModel, colour_batch, same_images_batches, scalar,
                            undropped_mean_neg_log_conf, unlabelled_batch)
from semiseg_sdk.methods import get_method
from semiseg_sdk.methods import unimatch as unimatch_module
from semiseg_sdk.models import build_model


def _tiny(fp_dropout=0.5):
    torch.manual_seed(0)
    model = build_model("deeplabv3plus", encoder="tiny", num_classes=4, dropout=0.0)
    cls = get_method("unimatch")
    return cls(model, 4, IdentityViews(), cls.make_config({"fp_dropout": fp_dropout})).train()


def test_fp_stream_drops_whole_channels_of_every_encoder_feature_for_the_unlabelled_half():
    m = _tiny()
    seen = []
    decode = m.model.decode
    m.model.decode = lambda feats: seen.append([f.detach() for f in feats]) or decode(feats)
    img_x, img_u = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    m.forward_with_fp(img_x, img_u)
    (feats,) = seen
    assert len(feats) == len(m.model.encoder.out_channels)  # all five feature maps reach the decoder
    dropped = kept = 0
    for f in feats:
        assert f.shape[0] == 6  # [x; u_w; u_w perturbed]
        clean, fp = f[2:4], f[4:6]
        ratio = fp.sum(dim=(2, 3)) / clean.sum(dim=(2, 3)).clamp(min=1e-12)
        live = clean.sum(dim=(2, 3)) > 1e-6  # ReLU features; all-zero channels say nothing
        is_zero = ratio[live].abs() < 1e-5
        is_two = (ratio[live] - 2.0).abs() < 1e-4  # Dropout2d(0.5) keeps a channel scaled by 1 / (1 - 0.5)
        assert bool((is_zero | is_two).all())
        dropped, kept = dropped + int(is_zero.sum()), kept + int(is_two.sum())
    assert dropped > 0 and kept > 0


def test_fp_predictions_differ_between_calls_and_only_through_the_feature_dropout():
    m = _tiny()
    img_x, img_u = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    _, u1, fp1 = m.forward_with_fp(img_x, img_u)
    _, _, fp2 = m.forward_with_fp(img_x, img_u)
    assert not torch.allclose(fp1, fp2, atol=1e-3)  # train mode: two calls draw different channel drops
    assert not torch.allclose(fp1, u1, atol=1e-3)
    # eval mode (no BN batch statistics, no ASPP dropout): the FP stream is still perturbed, and only by fp_dropout
    _, u_e, fp_e = m.eval().forward_with_fp(img_x, img_u)
    assert not torch.allclose(fp_e, u_e, atol=1e-3)
    _, u0, fp0 = _tiny(fp_dropout=0.0).eval().forward_with_fp(img_x, img_u)
    assert torch.allclose(u0, fp0, atol=1e-5)


def test_each_strong_view_has_its_own_cutmix_target_and_losses_combine_as_stated(monkeypatch):
    boxes = [torch.zeros(2, 8, 8, dtype=torch.bool), torch.zeros(2, 8, 8, dtype=torch.bool)]
    boxes[0][0, :, :4] = True  # view 1: sample 0 takes the left half of sample 1; view 2: no box
    calls = iter(boxes)
    monkeypatch.setattr(unimatch_module, "unimatch_box_masks", lambda b, size, p, device: next(calls))
    cls = get_method("unimatch")
    m = cls(PixelModel(), 3, IdentityViews(), cls.make_config({"fp_dropout": 0.0})).train()
    out = m.training_step(colour_batch([RED, RED], [0, 0]), unlabelled_batch(), 0)
    # 112 valid pixels after mixing (sample 1's last two columns are padding); grey pixels are below 0.95
    s1, s2, fp = 108 * CE0 / 112, 104 * CE0 / 112, 104 * CE0 / 112
    assert scalar(out["unsup_s1"]) == pytest.approx(s1, rel=1e-5)
    assert scalar(out["unsup_s2"]) == pytest.approx(s2, rel=1e-5)
    assert scalar(out["unsup_fp"]) == pytest.approx(fp, rel=1e-5)
    assert scalar(out["loss"]) == pytest.approx((CE0 + 0.25 * s1 + 0.25 * s2 + 0.5 * fp) / 2, rel=1e-5)


def test_fp_loss_is_computed_on_the_perturbed_prediction_against_the_clean_pseudo_label():
    cls = get_method("unimatch")
    m = cls(PixelModel(), 3, IdentityViews(), cls.make_config({"fp_dropout": 1.0})).train()
    out = m.training_step(colour_batch([RED, RED], [0, 0]), unlabelled_batch(), 0)
    # every feature channel dropped -> uniform FP logits: CE log 3 on the 104 confident of 112 valid pixels
    assert scalar(out["unsup_fp"]) == pytest.approx(104 * math.log(3) / 112, rel=1e-5)


def test_loss_weights_with_distinct_per_term_losses(monkeypatch):
    values = iter([torch.tensor(1.0), torch.tensor(2.0), torch.tensor(4.0)])
    monkeypatch.setattr(unimatch_module, "masked_cross_entropy", lambda *args: next(values))
    cls = get_method("unimatch")
    m = cls(PixelModel(), 3, IdentityViews(), cls.make_config()).train()
    out = m.training_step(colour_batch([RED, RED], [0, 0]), unlabelled_batch(), 0)
    terms = {k: scalar(out[k]) for k in ("unsup_s1", "unsup_s2", "unsup_fp")}
    assert sorted(terms.values()) == [1.0, 2.0, 4.0]
    unsup = 0.25 * terms["unsup_s1"] + 0.25 * terms["unsup_s2"] + 0.5 * terms["unsup_fp"]
    assert scalar(out["unsup"]) == pytest.approx(unsup)
    assert scalar(out["loss"]) == pytest.approx((scalar(out["sup"]) + unsup) / 2)


def test_threshold_one_gives_exactly_zero_unsupervised_losses():
    cls = get_method("unimatch")
    m = cls(PixelModel(), 3, IdentityViews(), cls.make_config({"conf_thresh": 1.0})).train()
    out = m.training_step(colour_batch([RED, RED], [0, 0]), unlabelled_batch(), 0)
    assert all(scalar(out[k]) == 0.0 for k in ("unsup", "unsup_s1", "unsup_s2", "unsup_fp"))
    assert scalar(out["loss"]) == pytest.approx(CE0 / 2, rel=1e-5)


@pytest.mark.parametrize("model_dropout", [False, True])
def test_model_dropout_is_off_in_every_forward_by_default(monkeypatch, model_dropout):
    # LiheYoung/UniMatch model/semseg/deeplabv3plus.py has no dropout; the SDK's has ASPP Dropout(0.5) + Dropout2d(0.1).
    # Identity strong views, no boxes, fp_dropout 0, labelled images = unlabelled ones, threshold 0: without model
    # dropout every forward sees the same BN statistics and reproduces the weak one, so each unlabelled loss is
    # mean CE(p_w, argmax p_w) = mean(-log conf_w) exactly; with it the forwards (and the two strong views) differ.
    monkeypatch.setattr(unimatch_module, "unimatch_box_masks", lambda b, size, p, device: torch.zeros(b, *size, dtype=torch.bool))
    torch.manual_seed(0)
    model = build_model("deeplabv3plus", encoder="tiny", num_classes=4)
    cls = get_method("unimatch")
    cfg = cls.make_config({"conf_thresh": 0.0, "fp_dropout": 0.0, "model_dropout": model_dropout})
    m = cls(model, 4, IdentityViews(), cfg).train()
    x, u = same_images_batches()
    expected = undropped_mean_neg_log_conf(model, u["image"])
    out = m.training_step(x, u, 0)
    for k in ("unsup_s1", "unsup_s2", "unsup_fp"):
        assert (scalar(out[k]) == pytest.approx(expected, rel=1e-4)) != model_dropout, k
    assert (scalar(out["unsup_s1"]) == pytest.approx(scalar(out["unsup_s2"]), rel=1e-5)) != model_dropout
    assert all(d.training for d in model.modules() if isinstance(d, torch.nn.modules.dropout._DropoutNd))
