"""CCT: detached main-decoder targets, auxiliary decoders on perturbed decoder features, ramped weight."""
import math

import pytest
import torch
import torch.nn.functional as F

from method_helpers import random_batch
from semiseg_sdk.augment import ViewConfig, ViewMaker
from semiseg_sdk.errors import ConfigError
from semiseg_sdk.methods import get_method
from semiseg_sdk.methods.cct import guided_cutout_keep, vat_noise
from semiseg_sdk.models import build_model

CCT = get_method("cct")


def _method(total_steps=100, **cfg):
    torch.manual_seed(0)
    model = build_model("deeplabv3plus", encoder="tiny", num_classes=4)
    views = ViewMaker(ViewConfig(crop_size=(32, 32), scale_range=(1.0, 1.0), flip_p=0.0))
    return CCT(model, 4, views, CCT.make_config(cfg), total_steps=total_steps)


def test_unsup_gradient_reaches_aux_decoders_and_encoder_but_not_the_target():
    m = _method()
    assert len(m.aux_decoders) == 30  # the official 2+6+6+2+2+6+6
    x, u = random_batch(seed=1), random_batch(seed=2)
    u["mask"].fill_(255)
    out = m.training_step(x, u, step=50)
    out["unsup"].backward()
    # the main classifier only produces the (detached) target: the unsupervised loss gives it no gradient
    assert m.model.classifier.weight.grad is None
    assert all(h.conv.weight.grad is not None and h.conv.weight.grad.abs().sum() > 0 for h in m.aux_decoders)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.model.encoder.parameters())
    assert {f"unsup_{k}" for k in ("vat", "drop", "cutout", "context_masking", "object_masking", "feature_drop",
                                   "feature_noise")} <= set(out)


def test_target_is_the_main_prediction_without_dropout():
    # one auxiliary decoder that copies the main classifier, with an identity perturbation (noise range 0):
    # its prediction equals the target, so the loss is 0; with noise it is not
    counts = dict(vat=0, drop=0, cutout=0, context_masking=0, object_masking=0, feature_drop=0, feature_noise=1)
    m = _method(uniform_range=0.0, **counts)
    m.aux_decoders[0].conv.load_state_dict(m.model.classifier.state_dict())
    x, u = random_batch(seed=1), random_batch(seed=2)
    assert m.training_step(x, u, step=0)["unsup"].item() < 1e-10
    m2 = _method(uniform_range=0.3, **counts)
    m2.aux_decoders[0].conv.load_state_dict(m2.model.classifier.state_dict())
    assert m2.training_step(x, u, step=0)["unsup"].item() > 1e-10


def test_rampup_weight_from_near_zero_to_30():
    m = _method(total_steps=1000)  # ramp over the first 100 steps
    assert m.unsup_weight(0) == pytest.approx(30 * math.exp(-5))  # 0.20: near 0 (CCT's sigmoid ramp starts at e^-5)
    assert m.unsup_weight(50) == pytest.approx(30 * math.exp(-5 * 0.25))
    assert m.unsup_weight(100) == pytest.approx(30.0)
    assert m.unsup_weight(999) == pytest.approx(30.0)


def test_guided_cutout_erases_40_percent_of_the_object_box():
    labels = torch.zeros(1, 16, 16, dtype=torch.long)
    labels[0, 2:12, 4:14] = 2  # bbox rows 2..11, cols 4..13: max - min = 9, erase floor(9 * 0.4) = 3 per side
    for _ in range(10):
        keep = guided_cutout_keep(labels, 4, background=0, erase=0.4)
        erased = (~keep[0]).nonzero()
        assert len(erased) == 9
        assert (labels[0][~keep[0]] == 2).all()  # the box lies inside the object's bbox (here: the object)
    only_background = torch.zeros(1, 16, 16, dtype=torch.long)
    assert guided_cutout_keep(only_background, 4, background=0, erase=0.4).all()


def test_masking_and_feature_perturbations():
    m = _method()
    f = torch.rand(1, 3, 4, 4) + 0.1
    pred = torch.zeros(1, 4, 4, dtype=torch.long)
    pred[0, :2] = 1  # objects in the top half, context (class 0) below
    ctx = m.perturb("context_masking", f, None, pred)
    obj = m.perturb("object_masking", f, None, pred)
    assert torch.equal(ctx[..., :2, :], f[..., :2, :]) and (ctx[..., 2:, :] == 0).all()
    assert torch.equal(obj[..., 2:, :], f[..., 2:, :]) and (obj[..., :2, :] == 0).all()
    noisy = m.perturb("feature_noise", f, None, pred)
    assert ((noisy - f).abs() <= 0.3 * f + 1e-6).all() and not torch.equal(noisy, f)
    f2 = torch.ones(1, 2, 4, 4)
    f2[..., 1, 1] = 5.0  # the most active position is dropped (threshold max * U(0.6, 0.9) < 5), the others kept
    dropped = m.perturb("feature_drop", f2, None, pred)
    assert (dropped[..., 1, 1] == 0).all() and (dropped.sum() == f2.sum() - 10)


def test_vat_noise_has_norm_eps_and_is_adversarial():
    torch.manual_seed(0)
    head = torch.nn.Conv2d(16, 4, 1)
    f = torch.rand(2, 16, 8, 8)
    r = vat_noise(f, head, xi=1e-6, eps=2.0)
    assert torch.allclose(r.flatten(1).norm(dim=1), torch.full((2,), 2.0), atol=1e-4)
    assert head.weight.grad is None

    def kl(noise):
        with torch.no_grad():
            return F.kl_div(F.log_softmax(head(f + noise), 1), F.softmax(head(f), 1), reduction="batchmean").item()

    rnd = torch.rand_like(f) - 0.5
    rnd = 2.0 * rnd / rnd.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    assert kl(r) > 2 * kl(rnd)  # 5.6x here; a random direction of the same norm gives ~1x


def test_config_errors_and_inference_model_is_plain():
    with pytest.raises(ConfigError, match="at least one"):
        CCT.make_config(dict(vat=0, drop=0, cutout=0, context_masking=0, object_masking=0, feature_drop=0, feature_noise=0))
    with pytest.raises(ConfigError, match="background_class"):
        _method(background_class=7)
    m = _method()
    assert m.inference_model() is m.model
    assert not any("aux" in k for k in m.inference_model().state_dict())


@pytest.mark.parametrize("unlabelled_dropout", [False, True])
def test_unlabelled_forward_has_no_dropout(monkeypatch, unlabelled_dropout):
    # CCT's encoder/PSP has no dropout: the target and every auxiliary decoder's input come from a dropout-free
    # train-mode forward. With the ASPP dropout at p=1, a forward with dropout on would see no ASPP features at all.
    counts = dict(vat=0, drop=0, cutout=0, context_masking=0, object_masking=0, feature_drop=0, feature_noise=1)
    m = _method(unlabelled_dropout=unlabelled_dropout, **counts)
    m.train()
    aspp_drop = m.model.decoder.aspp.project[1]
    aspp_drop.p = 1.0
    made, weak = [], m.views.weak
    monkeypatch.setattr(m.views, "weak", lambda batch: made.append(weak(batch)) or made[-1])
    seen, perturb = [], m.perturb
    monkeypatch.setattr(m, "perturb", lambda kind, f, head, pred: seen.append(f.detach()) or perturb(kind, f, head, pred))
    m.training_step(random_batch(seed=1), random_batch(seed=2), step=0)
    assert aspp_drop.training and m.model.dropout.training  # modes restored after the step
    img_u = made[1].image  # the unlabelled weak view
    with torch.no_grad():
        with_dropout = m.model.decode(m.model.encode(img_u))  # ASPP output zeroed; BatchNorm on batch statistics
        aspp_drop.eval()
        without = m.model.decode(m.model.encode(img_u))
    assert (with_dropout - without).abs().max() > 1e-2
    assert torch.allclose(seen[0], with_dropout if unlabelled_dropout else without, atol=1e-6)
