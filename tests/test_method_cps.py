"""CPS: each network learns from the OTHER one's argmax; CutMix targets are the mix of the unmixed predictions."""
import math

import pytest
import torch
import torch.nn.functional as F

from method_helpers import random_batch
from semiseg_sdk.augment import ViewConfig, ViewMaker, mix
from semiseg_sdk.methods import get_method
from semiseg_sdk.models import build_model

CPS = get_method("cps")


def _method(**cfg):
    torch.manual_seed(0)
    model = build_model("deeplabv3plus", encoder="tiny", num_classes=4)
    views = ViewMaker(ViewConfig(crop_size=(32, 32), scale_range=(1.0, 1.0), flip_p=0.0))  # identity weak view
    m = CPS(model, 4, views, CPS.make_config(cfg), total_steps=10)
    m.eval()  # deterministic forwards (BN statistics, no dropout) so the test can recompute every prediction
    return m


def _constant_class(net, c):
    """Make ``net`` predict class ``c`` everywhere with fixed logits (bias only)."""
    with torch.no_grad():
        net.classifier.weight.zero_()
        net.classifier.bias.copy_(torch.tensor([0.0, 1.0, 2.0, 3.0]))
        net.classifier.bias[c] = 5.0
    return net.classifier.bias.clone()


def _image(batch):
    return batch["image"].float() / 255.0


def test_plain_cps_targets_come_from_the_other_network():
    m = _method(cutmix=False)
    bias = _constant_class(m.model2, c=2)
    x, u = random_batch(seed=1), random_batch(seed=2, unlabelled=True)
    out = m.training_step(x, u, step=0)
    with torch.no_grad():
        pred1 = torch.cat([m.model(_image(x)), m.model(_image(u))])
    # net 1 learns CE to net 2's constant class; net 2 learns CE to net 1's argmax (its logits are the fixed bias)
    expected1 = F.cross_entropy(pred1, torch.full_like(pred1[:, 0], 2, dtype=torch.long))
    expected2 = F.cross_entropy(bias.view(1, 4, 1, 1).expand_as(pred1), pred1.argmax(1))
    assert out["unsup"].item() == pytest.approx((expected1 + expected2).item(), rel=1e-4)
    assert out["loss"].item() == pytest.approx((out["sup"] + out["sup2"] + 1.5 * out["unsup"]).item(), rel=1e-5)


def test_balanced_ce_by_hand():
    """Uniform logits (CE log 3 everywhere). Labelled shares (0.5, 0.5, 0), pseudo-label shares (0.75, 0.25, 0)
    with momentum 0 -> weights min(prior / share, 10) / Z = (2/3, 2, 0), Z = 1; the loss on targets 0, 1, 1 (and an
    ignored pixel) is their mean weight (2/3 + 2 + 2) / 3 = 14/9 times log 3."""
    from semiseg_sdk.methods.class_levers import ClassBalance
    from semiseg_sdk.methods.cps import balanced_ce

    balance = ClassBalance(3, momentum=0.0)
    balance.update(torch.tensor([[[0, 0, 1, 1]]]), torch.tensor([[[0, 0, 0, 1]]]), torch.ones(1, 1, 4, dtype=torch.bool))
    assert torch.allclose(balance.weights(), torch.tensor([2 / 3, 2.0, 0.0]))
    logits, target = torch.zeros(1, 3, 1, 4), torch.tensor([[[0, 1, 1, 255]]])
    assert balanced_ce(logits, target, balance).item() == pytest.approx(14 / 9 * math.log(3), rel=1e-6)
    assert balanced_ce(logits, target, None).item() == pytest.approx(math.log(3), rel=1e-6)  # off: the official mean


def test_class_balance_weights_each_cross_loss_by_its_target_class():
    """Plain CPS, net 2 predicts class 2 everywhere, momentum 0: branch 2's pseudo-labels are all class 2, so its
    weight is 1 and net 1's loss is the official CE; net 2's loss weights each pixel by net 1's argmax class,
    w_c = min(p_c / f_c, 10) / sum_k f_k min(p_k / f_k, 10), p the labelled shares, f those of net 1's argmax."""
    m = _method(cutmix=False, class_balance=True, class_balance_momentum=0.0)
    assert _method().class_balance1 is None  # off by default: the official loss
    bias = _constant_class(m.model2, c=2)
    x, u = random_batch(seed=1), random_batch(seed=2, unlabelled=True)
    out = m.training_step(x, u, step=0)
    with torch.no_grad():
        pred1 = torch.cat([m.model(_image(x)), m.model(_image(u))])
    label1 = pred1.argmax(1)
    p = torch.bincount(x["mask"].flatten(), minlength=4).float() / x["mask"].numel()
    f = torch.bincount(label1.flatten(), minlength=4).float() / label1.numel()
    w = torch.where(f > 0, p / f.clamp(min=1e-12), torch.full_like(p, 10.0)).clamp(max=10.0)
    w = w / (f * w).sum()
    expected1 = F.cross_entropy(pred1, torch.full_like(label1, 2))
    ce2 = F.cross_entropy(bias.view(1, 4, 1, 1).expand_as(pred1), label1, reduction="none")
    expected2 = (ce2 * w[label1]).mean()
    assert out["unsup"].item() == pytest.approx((expected1 + expected2).item(), rel=1e-4)
    assert torch.allclose(m.class_balance1.prior, p) and torch.allclose(m.class_balance1.share, f)
    assert "class_balance2.share" in m.state_dict()  # saved with the method: --resume continues it


def test_cutmix_pseudo_label_is_the_mix_of_the_unmixed_predictions(monkeypatch):
    m = _method()
    for net in (m.model, m.model2):  # sharper classifiers: label maps that vary over the image (random init is flat)
        with torch.no_grad():
            net.classifier.weight.mul_(1000)
            net.classifier.bias.zero_()
    u = random_batch(seed=2, unlabelled=True)
    box = torch.zeros(2, 32, 32, dtype=torch.bool)
    box[:, 4:20, 8:30] = True
    monkeypatch.setattr(m, "mix_mask", lambda *a, **k: box)
    seen = {}

    def record(pred1, pred2, target1, target2):
        seen.update(pred1=pred1, target1=target1, target2=target2)
        return pred1.sum() * 0 + 1.0

    monkeypatch.setattr(m, "cps_loss", record)
    m.training_step(random_batch(seed=1), u, step=0)
    img = _image(u)
    with torch.no_grad():
        lab1, lab2 = m.model(img).argmax(1), m.model2(img).argmax(1)
        img_mix = mix(img, img.roll(1, 0), box)
        assert torch.allclose(seen["pred1"], m.model(img_mix), atol=1e-5)  # the students see the mixed image
    assert all(len(lab.unique()) > 1 for lab in (lab1[0], lab1[1], lab2[0], lab2[1]))
    assert torch.equal(seen["target1"], mix(lab1, lab1.roll(1, 0), box))
    assert torch.equal(seen["target2"], mix(lab2, lab2.roll(1, 0), box))
    with torch.no_grad():
        assert not torch.equal(seen["target2"], m.model2(img_mix).argmax(1))  # not a prediction on the mixed image


def test_padding_is_ignored_in_cps_targets(monkeypatch):
    m = _method(cutmix=False)
    with torch.no_grad():
        m.model.classifier.weight.mul_(1000)  # per-pixel losses that vary over the image
    _constant_class(m.model2, c=1)
    x, u = random_batch(seed=1), random_batch(seed=2, unlabelled=True)
    for b in (x, u):
        b["valid"][:, :, 16:] = False
    x["mask"][:, :, 16:] = 255
    made, weak = [], m.views.weak
    monkeypatch.setattr(m.views, "weak", lambda batch: made.append(weak(batch)) or made[-1])
    got = m.training_step(x, u, step=0)["unsup"].item()
    valid = torch.cat([v.valid for v in made])
    assert 0 < valid.float().mean() < 1  # the views do hold padding
    with torch.no_grad():
        pred1 = torch.cat([m.model(v.image) for v in made])
    pred2 = m.model2.classifier.bias.view(1, 4, 1, 1).expand_as(pred1)

    def expected(keep):
        t1 = torch.where(keep, pred1.argmax(1), 255)
        t2 = torch.where(keep, torch.ones_like(t1), 255)
        return (F.cross_entropy(pred1, t2, ignore_index=255) + F.cross_entropy(pred2, t1, ignore_index=255)).item()

    assert got == pytest.approx(expected(valid), rel=1e-4)
    assert abs(expected(torch.ones_like(valid)) - expected(valid)) > 1e-2  # counting the padding would show


def test_second_branch_init_optimizer_groups_and_inference_model():
    torch.manual_seed(0)
    model = build_model("deeplabv3plus", encoder="tiny", num_classes=4)
    rng = torch.get_rng_state()
    views = ViewMaker(ViewConfig(crop_size=(32, 32)))
    m = CPS(model, 4, views, CPS.make_config({}), total_steps=10)
    assert torch.equal(torch.get_rng_state(), rng)  # building branch 2 leaves the global RNG stream alone
    assert m.cps_weight == 1.0  # the CutMix variant's VOC weight; plain CPS gets 1.5
    enc1, enc2 = m.model.encoder.state_dict(), m.model2.encoder.state_dict()
    assert all(torch.equal(enc1[k], enc2[k]) for k in enc1)  # shared (pretrained) encoder init
    assert not torch.equal(m.model.classifier.weight, m.model2.classifier.weight)  # heads differ
    m_indep = CPS(build_model("deeplabv3plus", encoder="tiny", num_classes=4), 4, views,
                  CPS.make_config({"share_encoder_init": False}), total_steps=10)
    e1, e2 = m_indep.model.encoder.state_dict(), m_indep.model2.encoder.state_dict()
    assert any(v.is_floating_point() and not torch.equal(v, e2[k]) for k, v in e1.items())  # own random encoder
    groups = {g["name"]: g for g in m.param_groups(0.01, 10.0)}
    ids = {n: {id(p) for p in g["params"]} for n, g in groups.items()}
    assert {id(p) for p in m.model2.encoder.parameters()} <= ids["backbone"] and groups["backbone"]["lr"] == 0.01
    assert {id(p) for p in m.model2.classifier.parameters()} <= ids["head"] and groups["head"]["lr"] == pytest.approx(0.1)
    assert sum(len(v) for v in ids.values()) == sum(1 for p in m.parameters())  # every parameter, once
    assert m.inference_model() is m.model


@pytest.mark.parametrize("target_dropout", [False, True])
def test_cutmix_targets_are_predicted_without_dropout_on_batch_statistics(monkeypatch, target_dropout):
    # TorchSemiSeg predicts its CutMix targets with model.train() and a DeepLab-v3+ without dropout. With the
    # classifier's dropout at p=1, a target predicted with dropout on would be the bias's argmax (class 3) everywhere.
    m = _method(target_dropout=target_dropout)
    m.train()
    for net in (m.model, m.model2):
        with torch.no_grad():
            net.classifier.weight.mul_(1000)
            net.classifier.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 1.0]))
        net.dropout.p = 1.0
    monkeypatch.setattr(m, "mix_mask", lambda b, size, device: torch.zeros(b, *size, dtype=torch.bool))  # no mixing
    seen = {}
    monkeypatch.setattr(m, "cps_loss", lambda p1, p2, t1, t2: seen.update(target1=t1) or p1.sum() * 0)
    made, weak = [], m.views.weak
    monkeypatch.setattr(m.views, "weak", lambda batch: made.append(weak(batch)) or made[-1])
    m.training_step(random_batch(seed=1), random_batch(seed=2, unlabelled=True), step=0)
    img_u = made[1].image  # the unlabelled weak view
    drops = [mod for mod in m.modules() if isinstance(mod, torch.nn.modules.dropout._DropoutNd)]
    assert len(drops) >= 4 and all(mod.training for mod in drops)  # dropout modes restored after the step
    if target_dropout:
        assert torch.equal(seen["target1"], torch.full_like(seen["target1"], 3))
        return
    for mod in drops:
        mod.eval()
    with torch.no_grad():
        expected = m.model(img_u).argmax(1)  # dropout off, BatchNorm on the batch's statistics
        m.model.eval()
        running = m.model(img_u).argmax(1)  # BatchNorm on running statistics (eval mode)
    assert len(expected.unique()) > 1
    assert torch.equal(seen["target1"], expected)
    assert not torch.equal(seen["target1"], running)
