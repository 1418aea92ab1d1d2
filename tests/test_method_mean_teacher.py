"""Mean teacher with CutMix / CutOut / ClassMix / ComplexMix: the mixed target is the mix of the unmixed teacher
predictions under the same mask, confidence weighting as in the official code, ComplexMix's per-box class masks.

A per-pixel model (logits = a * RGB) makes the losses computable by hand: a red pixel is class 0 with confidence
``1 / (1 + 2 e^-a)``, green is class 1 alike, a grey pixel has confidence 1/3.
"""
import dataclasses
import math

import pytest
import torch

from method_helpers import (CE0, GREEN, GREY, RED, A, IdentityViews, PixelModel, colour_batch, random_batch, scalar,
                            teacher_targets)
from semiseg_sdk.augment import mix
from semiseg_sdk.errors import ConfigError
from semiseg_sdk.methods import get_method
from semiseg_sdk.methods import mean_teacher as mt_module
from semiseg_sdk.methods.mean_teacher import complexmix_masks
from semiseg_sdk.models import build_model


def _method(name="mean-teacher", model=None, num_classes=3, **cfg):
    cls = get_method(name)
    return cls(model or PixelModel(), num_classes, IdentityViews(), cls.make_config(cfg)).train()


def _left_half_box(monkeypatch):
    box = torch.zeros(2, 8, 8, dtype=torch.bool)
    box[:, :, :4] = True
    monkeypatch.setattr(mt_module, "box_masks", lambda *args, **kwargs: box)
    return box


@pytest.mark.parametrize("mix_name", ["cutmix", "classmix", "complexmix"])
def test_mixed_target_is_the_mix_of_separately_predicted_teacher_outputs(mix_name):
    torch.manual_seed(0)
    m = _method(mix=mix_name, complexity=2)
    image = torch.rand(3, 3, 16, 16)
    valid = torch.ones(3, 16, 16, dtype=torch.bool)
    valid[2, :, 12:] = False
    with torch.no_grad():
        prob = m.teacher(image).softmax(dim=1)
        out = m.mix_unlabelled(image, prob, valid)
        for i in range(3):
            j = (i - 1) % 3  # the partner: batch rolled by one
            own, partner = m.teacher(image[i:i + 1]).softmax(dim=1), m.teacher(image[j:j + 1]).softmax(dim=1)
            mi = out.mask[i:i + 1]
            assert torch.allclose(out.prob[i:i + 1], mix(partner, own, mi), atol=1e-6)
            assert torch.equal(out.image[i:i + 1], mix(image[j:j + 1], image[i:i + 1], mi))
            assert torch.equal(out.valid[i], torch.where(mi[0], valid[i], valid[j]))
    assert 0 < out.mask.float().mean() < 1
    if mix_name != "cutmix":  # semantic masks follow the teacher's classes on the image itself, never padding
        label = prob.argmax(dim=1)
        assert not out.mask[~valid].any()
        for i in range(3):
            for c in label[i][valid[i]].unique():
                region = out.mask[i][(label[i] == c) & valid[i]]
                if mix_name == "classmix":
                    assert region.all() or not region.any()
    if mix_name == "complexmix":  # complexity 2: each 8x8 box keeps half of its own classes, chosen per box
        differs = False
        for i in range(3):
            per_box = []
            for r in (slice(0, 8), slice(8, 16)):
                for c in (slice(0, 8), slice(8, 16)):
                    lab, msk, ok = label[i][r, c], out.mask[i][r, c], valid[i][r, c]
                    present = lab[ok].unique()
                    chosen = [k for k in present if msk[(lab == k) & ok].all()]
                    assert all(msk[(lab == k) & ok].all() or not msk[(lab == k) & ok].any() for k in present)
                    assert len(chosen) == len(present) // 2
                    per_box.append(tuple(int(k) for k in chosen))
            differs |= len(set(per_box)) > 1
        assert differs  # whole-image ClassMix would choose the same classes in every box of an image


def test_student_learns_the_partner_prediction_inside_the_mixed_region(monkeypatch):
    _left_half_box(monkeypatch)
    m = _method(mix="cutmix", loss="ce")
    out = m.training_step(colour_batch([RED, RED], [0, 0]), colour_batch([RED, GREEN]), 0)
    # red and green halves, each with its own teacher label: every pixel costs CE0, every pixel is confident
    assert scalar(out["conf_ratio"]) == 1.0
    assert scalar(out["unsup"]) == pytest.approx(CE0, rel=1e-5)
    assert scalar(out["loss"]) == pytest.approx(2 * CE0, rel=1e-5)


def test_french_default_is_squared_probability_difference(monkeypatch):
    _left_half_box(monkeypatch)
    m = _method()  # mix="cutmix" -> French et al.: "mse", 0.97, fixed EMA
    with torch.no_grad():
        m.model.a.fill_(3.0)  # the student now disagrees with the teacher (a = 5) by a known amount
    out = m.training_step(colour_batch([RED, RED], [0, 0]), colour_batch([RED, GREEN]), 0)
    p_s = torch.tensor([3.0, 0.0, 0.0]).softmax(0)
    p_t = torch.tensor([A, 0.0, 0.0]).softmax(0)
    assert scalar(out["unsup"]) == pytest.approx(float((p_s - p_t).pow(2).sum()), rel=1e-5)


@pytest.mark.parametrize("per_pixel", [False, True])
def test_confidence_weighting(monkeypatch, per_pixel):
    _left_half_box(monkeypatch)
    m = _method(mix="cutmix", loss="ce", conf_per_pixel=per_pixel)
    out = m.training_step(colour_batch([RED, RED], [0, 0]), colour_batch([RED, GREY]), 0)
    # each mixed sample: 32 red (confident, CE0) and 32 grey pixels (confidence 1/3, CE log 3)
    assert scalar(out["conf_ratio"]) == pytest.approx(0.5)
    if per_pixel:  # only confident pixels contribute, divided by all valid pixels
        expected = 0.5 * CE0
    else:  # official scalar weighting: mean loss scaled by the confident fraction
        expected = 0.5 * (0.5 * CE0 + 0.5 * math.log(3))
    assert scalar(out["unsup"]) == pytest.approx(expected, rel=1e-4)
    m1 = _method(mix="cutmix", loss="ce", conf_per_pixel=per_pixel, conf_thresh=1.0)
    assert scalar(m1.training_step(colour_batch([RED, RED], [0, 0]), colour_batch([RED, GREY]), 0)["unsup"]) == 0.0


def test_cutout_zeroes_outside_the_box_and_ignores_its_target(monkeypatch):
    box = _left_half_box(monkeypatch)
    m = _method("cutout", loss="ce")
    u = colour_batch([RED, GREEN])
    v = m.views.weak(u)
    with torch.no_grad():
        out = m.mix_unlabelled(v.image, m.teacher(v.image).softmax(dim=1), v.valid)
    assert torch.equal(out.mask, ~box)
    assert float(out.image.permute(1, 0, 2, 3)[:, ~box].abs().max()) == 0.0
    assert torch.equal(out.image.permute(1, 0, 2, 3)[:, box], v.image.permute(1, 0, 2, 3)[:, box])
    assert torch.equal(out.keep, box)
    # 64 of 128 pixels keep a target (CE0 each); all 128 count in the denominator, all are confident
    assert scalar(m.training_step(colour_batch([RED, RED], [0, 0]), u, 0)["unsup"]) == pytest.approx(64 * CE0 / 128, rel=1e-5)


def test_complexmix_mask_is_a_union_of_per_box_class_regions():
    # 8x8 labels, complexity 2 -> four 4x4 boxes; each box holds two classes (left/right halves of the box)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]).repeat(8, 1)[None]
    labels[:, 4:] = labels[:, 4:] + 4  # bottom boxes use classes 4..7
    split_seen = False
    for seed in range(20):
        torch.manual_seed(seed)
        m = complexmix_masks(labels, 8, complexity=2)[0]
        for r in (slice(0, 4), slice(4, 8)):
            for c in (slice(0, 4), slice(4, 8)):
                cell, cell_mask = labels[0][r, c], m[r, c]
                chosen = cell[cell_mask].unique()
                assert len(chosen) == 1  # half of the 2 classes in the box
                assert torch.equal(cell_mask, cell == chosen)  # the whole region of the chosen class in this box
    # a class spanning two boxes can be chosen in one and not the other (impossible for whole-image ClassMix)
    wide = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]).repeat(8, 1)[None]
    wide[:, :, 2:6] = 2  # class 2 spans both column boxes; each box holds 2 classes
    for seed in range(20):
        torch.manual_seed(seed)
        m = complexmix_masks(wide, 3, complexity=2)[0]
        split_seen |= bool(m[0, 2]) != bool(m[0, 5])
    assert split_seen


def test_complexmix_box_with_one_class_comes_wholly_from_the_partner():
    # ClassMix's floor rule per box ((n - n % 2) / 2 in trainSSL.py): 1 class -> 0 kept, 3 classes -> 1 kept.
    # 8x8, complexity 2: top-left box is all class 0; top-right holds 1, 2, 3; the bottom boxes are all class 4.
    labels = torch.full((1, 8, 8), 4)
    labels[0, :4, :4] = 0
    labels[0, :4, 4:] = torch.tensor([1, 1, 2, 2]).repeat(4, 1)
    labels[0, :2, 4:] = 3
    for seed in range(10):
        torch.manual_seed(seed)
        m = complexmix_masks(labels, 5, complexity=2)[0]
        assert not m[:4, :4].any() and not m[4:].any()  # one-class boxes: nothing of the image itself
        chosen = labels[0, :4, 4:][m[:4, 4:]].unique()
        assert len(chosen) == 1 and torch.equal(m[:4, 4:], labels[0, :4, 4:] == chosen)
        assert int(m.sum()) in (4, 8)  # class 3 covers 8 pixels of the box, classes 1 and 2 cover 4 each


def test_complexmix_mask_on_sizes_not_divisible_by_the_complexity():
    labels = torch.randint(0, 4, (2, 10, 9))
    labels[1, :, 7:] = 255
    m = complexmix_masks(labels, 4, complexity=4)
    assert m.shape == labels.shape and m.dtype == torch.bool
    assert not m[labels == 255].any()
    assert complexmix_masks(labels, 4, complexity=1).float().mean() > 0  # complexity 1 = ClassMix on the image


def test_aliases_resolve_each_papers_recipe_and_teacher_is_the_inference_model():
    cutmix, classmix = _method("cutmix"), _method("classmix")
    assert (cutmix.cfg.mix, cutmix.cfg.loss, cutmix.cfg.conf_thresh, cutmix.teacher.warmup) == ("cutmix", "mse", 0.97, False)
    assert (classmix.cfg.mix, classmix.cfg.loss, classmix.cfg.conf_thresh, classmix.teacher.warmup) == ("classmix", "ce", 0.968, True)
    assert dataclasses.asdict(_method(mix="classmix").cfg) == dataclasses.asdict(classmix.cfg)
    assert _method("complexmix").cfg.mix == "complexmix"
    assert cutmix.inference_model() is cutmix.teacher.net
    # EMA after step 0: French's fixed 0.99 vs ClassMix's warm-up (alpha_0 = 0 -> copy of the student)
    for m in (cutmix, classmix):
        with torch.no_grad():
            m.model.a.fill_(3.0)
        m.after_optimizer_step(0)
    assert float(cutmix.teacher.net.a) == pytest.approx(0.99 * A + 0.01 * 3.0)
    assert float(classmix.teacher.net.a) == pytest.approx(3.0)


@pytest.mark.parametrize("mix_name", mt_module.MIXES)
def test_teacher_batchnorm_follows_each_official_code(mix_name):
    """French et al. freeze BatchNorm (``--freeze_bn``: the teacher uses running statistics); ClassMix's EMA model stays
    in train mode (the weak batch's own statistics), and ComplexMix follows ClassMix. So corrupting the teacher's
    running statistics changes its target for CutMix/CutOut only; the teacher is in eval mode again after each step."""
    batch_stats = mix_name in ("classmix", "complexmix")
    torch.manual_seed(0)
    m = _method(mix_name, model=build_model("deeplabv3plus", encoder="tiny", num_classes=4), num_classes=4)
    assert m.cfg.teacher_batch_stats == batch_stats and m.teacher.batch_stats == batch_stats
    before, after = teacher_targets(m, random_batch(seed=1), random_batch(seed=2, unlabelled=True))
    assert torch.allclose(before, after, atol=1e-5) == batch_stats
    assert not any(mod.training for mod in m.teacher.net.modules())


def test_bad_mix_or_loss_is_refused_with_the_field_name():
    with pytest.raises(ConfigError, match="mix"):
        _method(mix="mixup")
    with pytest.raises(ConfigError, match="loss"):
        _method(loss="kl")
