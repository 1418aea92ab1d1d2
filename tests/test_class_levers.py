"""The class levers (class-wise thresholds, class-balanced pixel weights): their EMAs by hand, and what they change
in the losses of FixMatch/UniMatch and of the mean teacher.

The mean-teacher cases use the per-pixel model of ``method_helpers`` (logits = a * RGB): a red pixel is class 0 with
confidence ``1 / (1 + 2 e^-a)``; a dim green pixel (0, 128, 0) is class 1 with the lower confidence
``1 / (1 + 2 e^-x)``, ``x = a * 128 / 255``, and its CE against its own class is ``log(1 + 2 e^-x)``.
"""
import math

import pytest
import torch

from method_helpers import A, CE0, GREEN, RED, IdentityViews, PixelModel, colour_batch, scalar
from semiseg_sdk.augment import ViewConfig, ViewMaker
from semiseg_sdk.engine import Trainer
from semiseg_sdk.errors import ConfigError
from semiseg_sdk.methods import get_method
from semiseg_sdk.methods import mean_teacher as mt_module
from semiseg_sdk.methods.class_levers import ClassBalance, ClassThresholds
from semiseg_sdk.methods.pseudo_labels import Target
from semiseg_sdk.models import build_model
from test_trainer import _val_small, tiny_cfg

DIM_GREEN = (0, 128, 0)
X = A * 128 / 255
CONF1, CE1 = 1 / (1 + 2 * math.exp(-X)), math.log(1 + 2 * math.exp(-X))


def test_class_thresholds_by_hand():
    """m_c: EMA (momentum 0.5, start 1) of the mean weak confidence of the pixels labelled c; threshold
    0.95 * m_c / max m. Class 0: confidences 0.9, 0.7 -> m 0.9; class 1: 0.6 -> 0.8; class 2 absent -> 1."""
    ct = ClassThresholds(3, 0.95, momentum=0.5)
    conf = torch.tensor([[[0.9, 0.7], [0.6, 0.99]]])
    label = torch.tensor([[[0, 0], [1, 2]]])
    valid = torch.tensor([[[True, True], [True, False]]])  # the class-2 pixel is padding: not counted
    ct.update(conf, label, valid)
    assert torch.allclose(ct.mean_conf, torch.tensor([0.9, 0.8, 1.0]))
    assert torch.allclose(ct.thresholds(), torch.tensor([0.855, 0.76, 0.95]))
    assert torch.allclose(ct.per_pixel(label), torch.tensor([[[0.855, 0.855], [0.76, 0.95]]]))
    ct.update(torch.tensor([[[0.5]]]), torch.tensor([[[2]]]), torch.tensor([[[True]]]))  # class 2 now 0.75
    assert torch.allclose(ct.mean_conf, torch.tensor([0.9, 0.8, 0.75]))
    assert torch.allclose(ct.thresholds(), torch.tensor([0.95, 0.95 * 0.8 / 0.9, 0.95 * 0.75 / 0.9]))


def test_class_thresholds_admit_pixels_of_less_certain_classes_and_resume(tmp_path):
    """With the lever, FixMatch counts pixels of a class whose typical confidence is low; the EMA is saved with the
    method's state."""
    torch.manual_seed(0)
    views = ViewMaker(ViewConfig(crop_size=(32, 32), scale_range=(1.0, 1.0), flip_p=0.0))
    cls = get_method("fixmatch")
    method = cls(build_model("fcn", encoder="tiny", num_classes=3), 3, views,
                 cls.make_config({"class_thresholds": True, "class_threshold_momentum": 0.0}))
    method.class_thresholds.mean_conf.copy_(torch.tensor([0.99, 0.5, 0.99]))
    label = torch.tensor([[[0, 1, 1, 2]]])
    thr = method.threshold(Target(label, torch.full((1, 1, 4), 0.6), torch.ones(1, 1, 4, dtype=torch.bool)))
    assert torch.allclose(thr, torch.tensor([[[0.95, 0.95 * 0.5 / 0.99, 0.95 * 0.5 / 0.99, 0.95]]]))
    assert (torch.full((1, 1, 4), 0.6) >= thr).tolist() == [[[False, True, True, False]]]  # class 1 gets its pixels
    assert "class_thresholds.mean_conf" in method.state_dict()


def test_class_balance_by_hand():
    """Momentum 0.5, both EMAs start at 1/3. Labelled pixels 0, 0, 1 (and one 255) -> prior [1/2, 1/3, 1/6]; kept
    pseudo-labels 0, 0, 0 (a class-2 pixel not kept) -> share [2/3, 1/6, 1/6]; prior / share = [0.75, 2, 1], whose
    mean over the kept pixels sum_k share_k w_k is 1, so the weights are [0.75, 2, 1]. With cap 1.5: [0.75, 1.5, 1]
    divided by 11/12."""
    for cap, expected in ((10.0, [0.75, 2.0, 1.0]), (1.5, [0.75 * 12 / 11, 1.5 * 12 / 11, 12 / 11])):
        cb = ClassBalance(3, momentum=0.5, cap=cap)
        assert torch.allclose(cb.weights(), torch.ones(3))  # no evidence yet: every class weighs 1
        cb.update(torch.tensor([[[0, 0], [1, 255]]]), torch.tensor([[[0, 0], [0, 2]]]),
                  torch.tensor([[[True, True], [True, False]]]))
        assert torch.allclose(cb.prior, torch.tensor([1 / 2, 1 / 3, 1 / 6]))
        assert torch.allclose(cb.share, torch.tensor([2 / 3, 1 / 6, 1 / 6]))
        assert torch.allclose(cb.weights(), torch.tensor(expected))
        assert torch.allclose(cb.per_pixel(torch.tensor([[2, 1]])), torch.tensor([[expected[2], expected[1]]]))
    cb.update(torch.full((1, 2, 2), 255), torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.bool))
    assert torch.allclose(cb.prior, torch.tensor([1 / 2, 1 / 3, 1 / 6]))  # nothing labelled, nothing kept: unchanged
    with pytest.raises(ConfigError, match="class_balance_cap"):
        ClassBalance(3, cap=0.5)


def test_the_predicted_class_balance_prior_by_hand():
    """``prior="predicted"``, momentum 0: the prior is the class shares of the pseudo-labels over the valid pixels,
    whatever the labelled mask says. Pseudo-labels 0, 0, 0, 2 all valid -> prior [3/4, 0, 1/4]; kept 0, 0, 0 ->
    share [1, 0, 0]; prior / share = [0.75, 0, 10 (capped)], over sum_k share_k w_k = 0.75: [1, 0, 40 / 3]. A class the
    threshold removes (2) is weighted up; an absent one (1) gets nothing, however often the labels hold it."""
    cb = ClassBalance(3, momentum=0.0, prior="predicted")
    labels, valid = torch.tensor([[[0, 0], [0, 2]]]), torch.ones(1, 2, 2, dtype=torch.bool)
    cb.update(torch.tensor([[[1, 1], [1, 1]]]), labels, torch.tensor([[[True, True], [True, False]]]), valid)
    assert torch.allclose(cb.prior, torch.tensor([3 / 4, 0.0, 1 / 4]))
    assert torch.allclose(cb.share, torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(cb.weights(), torch.tensor([1.0, 0.0, 40 / 3]))
    cb.update(torch.tensor([[[1, 1], [1, 1]]]), labels, valid, valid)  # every valid pixel kept: all weights 1 on them
    assert torch.allclose(cb.weights()[[0, 2]], torch.ones(2))
    with pytest.raises(ValueError, match="valid mask"):
        cb.update(labels, labels, valid)
    with pytest.raises(ConfigError, match="class_balance_prior must be one of labelled, predicted"):
        ClassBalance(3, prior="labeled")


def test_fixmatch_with_the_predicted_prior_aims_at_its_own_pseudo_labels(tmp_path, monkeypatch):
    """With every pixel kept (threshold 0) the predicted prior and the share see the same pixels, so they are equal
    after training (the labelled prior would follow the labelled masks instead)."""
    _val_small(monkeypatch)
    trainer = Trainer(tiny_cfg(tmp_path, method="fixmatch", steps=2, eval_every=2, model="unet",
                               method_args={"class_balance": True, "class_balance_prior": "predicted",
                                            "class_balance_momentum": 0.5, "conf_thresh": 0.0}))
    trainer.fit()
    cb = trainer.method.class_balance
    assert not torch.allclose(cb.prior, torch.full_like(cb.prior, 1 / cb.prior.numel()))
    assert torch.allclose(cb.prior, cb.share)


@pytest.mark.parametrize("name", ["fixmatch", "unimatch", "unimatch-v2", "cutmix"])
def test_the_class_balance_lever_trains_and_resumes(tmp_path, monkeypatch, name):
    """Two steps move both EMAs off uniform; the loss weights are the weights of the pseudo-label classes; the EMAs are
    saved with the method's state (so ``--resume`` continues them)."""
    _val_small(monkeypatch)
    trainer = Trainer(tiny_cfg(tmp_path, method=name, steps=2, eval_every=2, model="unet",
                               method_args={"class_balance": True, "class_balance_momentum": 0.5,
                                            "conf_thresh": 0.0}))  # every pixel kept: the share moves at once
    trainer.fit()
    cb = trainer.method.class_balance
    uniform = torch.full_like(cb.prior, 1 / cb.prior.numel())
    assert not torch.allclose(cb.prior, uniform) and not torch.allclose(cb.share, uniform)
    label = torch.arange(cb.prior.numel()).view(1, 1, -1)
    target = Target(label, torch.ones(label.shape), torch.ones(label.shape, dtype=torch.bool))
    assert torch.equal(trainer.method.pixel_weight(target), cb.weights()[label])
    state = trainer.method.state_dict()
    assert torch.equal(state["class_balance.prior"], cb.prior) and torch.equal(state["class_balance.share"], cb.share)


@pytest.mark.parametrize("name", ["fixmatch", "unimatch", "unimatch-v2", "cutmix"])
def test_the_class_threshold_lever_trains(tmp_path, monkeypatch, name):
    _val_small(monkeypatch)
    trainer = Trainer(tiny_cfg(tmp_path, method=name, steps=2, eval_every=2, model="unet",
                               method_args={"class_thresholds": True, "class_threshold_momentum": 0.5}))
    trainer.fit()
    ema = trainer.method.class_thresholds.mean_conf
    assert torch.isfinite(ema).all() and not torch.equal(ema, torch.ones_like(ema))  # moved by the weak views


def _cutmix(monkeypatch, **cfg):
    """Mean teacher with CutMix whose box is the left half of every sample, CE loss, on the per-pixel model."""
    box = torch.zeros(2, 8, 8, dtype=torch.bool)
    box[:, :, :4] = True
    monkeypatch.setattr(mt_module, "box_masks", lambda *args, **kwargs: box)
    cls = get_method("cutmix")
    return cls(PixelModel(), 3, IdentityViews(), cls.make_config({"loss": "ce", **cfg})).train()


def test_mean_teacher_class_thresholds_admit_the_less_certain_class(monkeypatch):
    """Red (confidence ~0.987) and dim green (~0.86) halves. At French's 0.97 only red counts: the scalar weight is 1/2.
    With the lever (momentum 0: each class's mean confidence is this batch's; class 2 absent keeps 1), the thresholds
    are 0.97 * [0.987, 0.86, 1]: both classes count, the weight is 1."""
    labelled, unlabelled = colour_batch([RED, RED], [0, 0]), colour_batch([RED, DIM_GREEN])
    mean_loss = 0.5 * CE0 + 0.5 * CE1
    assert CONF1 < 0.97
    plain = _cutmix(monkeypatch).training_step(labelled, unlabelled, 0)
    assert scalar(plain["conf_ratio"]) == pytest.approx(0.5)
    assert scalar(plain["unsup"]) == pytest.approx(0.5 * mean_loss, rel=1e-5)
    m = _cutmix(monkeypatch, class_thresholds=True, class_threshold_momentum=0.0)
    out = m.training_step(labelled, unlabelled, 0)
    conf0 = 1 / (1 + 2 * math.exp(-A))
    assert torch.allclose(m.class_thresholds.thresholds(), torch.tensor([0.97 * conf0, 0.97 * CONF1, 0.97]))
    assert scalar(out["conf_ratio"]) == pytest.approx(1.0)
    assert scalar(out["unsup"]) == pytest.approx(mean_loss, rel=1e-5)


@pytest.mark.parametrize("per_pixel", [False, True])
def test_mean_teacher_class_balance_weights_each_target_class(monkeypatch, per_pixel):
    """Labels 0, 0, 0, 1 -> prior [3/4, 1/4, 0]; the teacher's weak view is half red, half dim green -> share [1/2, 1/2,
    0] over the pixels bearing the loss (all valid ones under the scalar weight; with ``conf_per_pixel`` and a
    threshold both classes pass, the same pixels). Weights prior / share = [3/2, 1/2, 0], already of mean 1 over those
    pixels. Every mixed sample is half red (class 0, CE0) and half dim green (class 1, CE1), all confident at 0.5."""
    labelled, unlabelled = colour_batch([RED] * 4, [0, 0, 0, 1]), colour_batch([RED, DIM_GREEN])
    cfg = {"conf_thresh": 0.5, "conf_per_pixel": per_pixel}
    plain = _cutmix(monkeypatch, **cfg).training_step(labelled, unlabelled, 0)
    assert scalar(plain["unsup"]) == pytest.approx(0.5 * CE0 + 0.5 * CE1, rel=1e-5)
    m = _cutmix(monkeypatch, class_balance=True, class_balance_momentum=0.0, **cfg)
    out = m.training_step(labelled, unlabelled, 0)
    assert torch.allclose(m.class_balance.prior, torch.tensor([0.75, 0.25, 0.0]))
    assert torch.allclose(m.class_balance.share, torch.tensor([0.5, 0.5, 0.0]))
    assert torch.allclose(m.class_balance.weights(), torch.tensor([1.5, 0.5, 0.0]))
    assert scalar(out["unsup"]) == pytest.approx(0.5 * 1.5 * CE0 + 0.5 * 0.5 * CE1, rel=1e-5)
    assert "class_balance.share" in m.state_dict()


def test_mean_teacher_class_balance_share_counts_only_the_confident_pixels_with_conf_per_pixel(monkeypatch):
    """At 0.97 only the red half is confident: with ``conf_per_pixel`` the share is [1, 0, 0] (the green pixels bear no
    loss), under the scalar weight it is [1/2, 1/2, 0] (every valid pixel bears the weighted mean)."""
    labelled, unlabelled = colour_batch([RED, RED], [0, 0]), colour_batch([RED, DIM_GREEN])
    for per_pixel, share in ((True, [1.0, 0.0, 0.0]), (False, [0.5, 0.5, 0.0])):
        m = _cutmix(monkeypatch, class_balance=True, class_balance_momentum=0.0, conf_per_pixel=per_pixel)
        m.training_step(labelled, unlabelled, 0)
        assert torch.allclose(m.class_balance.share, torch.tensor(share))


def test_a_misspelt_lever_names_the_closest_option():
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['class_balanc'\]; did you mean 'class_balance'\? "
                                          r"\(`semiseg methods cutmix` lists them"):
        get_method("cutmix").make_config({"class_balanc": True})


def test_unimatch_v2_class_thresholds_admit_a_teacher_below_the_one_threshold():
    """The EMA teacher is 0.9-sure of red (class 0) and green (class 1): under 0.95 nothing counts. With the lever
    (momentum 0; class 2, absent, keeps its mean confidence 1) both classes' thresholds are 0.95 * 0.9 = 0.855, every
    pixel counts and the confident, correct student (a = 5) pays CE0 on each."""
    cls = get_method("unimatch-v2")
    x, u = colour_batch([RED, GREEN], [0, 1]), colour_batch([RED, GREEN])
    for levers, ratio, unsup in (({}, 0.0, 0.0), ({"class_thresholds": True, "class_threshold_momentum": 0.0}, 1.0, CE0)):
        m = cls(PixelModel(a=5.0), 3, IdentityViews(), cls.make_config({"kept_fraction": 1.0, **levers})).train()
        with torch.no_grad():
            m.teacher.net.a.fill_(math.log(18.0))  # confidence 1 / (1 + 2 / 18) = 0.9
        out = m.training_step(x, u, 0)
        assert scalar(out["mask_ratio"]) == pytest.approx(ratio)
        assert scalar(out["unsup"]) == pytest.approx(unsup, rel=1e-3, abs=1e-7)
