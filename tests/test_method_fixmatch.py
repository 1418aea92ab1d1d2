"""FixMatch: thresholded weak-to-strong pseudo-labels, CutMix target from the rolled partner, valid-pixel normalisation.

A per-pixel model (logits = a * RGB) makes every loss computable by hand: a red pixel is class 0 with confidence
``1 / (1 + 2 e^-a)``, green is class 1 alike, a grey pixel has confidence 1/3.
"""
import math

import pytest
import torch

from method_helpers import (CE0, GREEN, RED, IdentityViews, PixelModel, colour_batch, same_images_batches, scalar,
                            undropped_mean_neg_log_conf, unlabelled_batch)
from semiseg_sdk.augment import box_masks, unimatch_box_masks
from semiseg_sdk.methods import fixmatch as fixmatch_module
from semiseg_sdk.errors import ConfigError
from semiseg_sdk.methods import get_method
from semiseg_sdk.methods.pseudo_labels import Target, masked_cross_entropy


def _method(**cfg):
    cls = get_method("fixmatch")
    m = cls(PixelModel(), 3, IdentityViews(), cls.make_config(cfg))
    return m.train()


def test_cutmix_target_comes_from_the_rolled_partner_and_unconfident_pixels_count_only_in_the_denominator(monkeypatch):
    box = torch.zeros(2, 8, 8, dtype=torch.bool)
    box[0, :, :4] = True  # sample 0 receives the left half of sample 1 (roll by one); sample 1 gets no box
    monkeypatch.setattr(fixmatch_module, "unimatch_box_masks", lambda b, size, p, device: box)
    out = _method().training_step(colour_batch([RED, RED], [0, 0]), unlabelled_batch(), 0)
    # valid after mixing: 64 (sample 0, its left half from sample 1's valid columns) + 48 (sample 1) = 112;
    # confident: all but sample 0's 4 grey top-row pixels outside the box -> 108
    assert scalar(out["unsup"]) == pytest.approx(108 * CE0 / 112, rel=1e-5)
    assert scalar(out["sup"]) == pytest.approx(CE0, rel=1e-5)
    assert scalar(out["loss"]) == pytest.approx((CE0 + 108 * CE0 / 112) / 2, rel=1e-5)
    # weak-view confident ratio: (56 + 48) / 112 valid pixels
    assert scalar(out["mask_ratio"]) == pytest.approx(104 / 112)


def test_partner_image_and_partner_target_are_the_same_sample(monkeypatch):
    # three samples so that rolling forwards and backwards differ; every pixel confident
    monkeypatch.setattr(fixmatch_module, "unimatch_box_masks", lambda b, size, p, device: torch.ones(b, *size, dtype=torch.bool).tril())
    out = _method().training_step(colour_batch([RED, RED], [0, 0]), colour_batch([RED, GREEN, (0, 0, 255)]), 0)
    assert scalar(out["unsup"]) == pytest.approx(CE0, rel=1e-5)


def test_without_cutmix_the_target_is_the_own_weak_prediction(monkeypatch):
    monkeypatch.setattr(fixmatch_module, "unimatch_box_masks", lambda b, size, p, device: torch.zeros(b, *size, dtype=torch.bool))
    out = _method().training_step(colour_batch([RED, RED], [0, 0]), unlabelled_batch(), 0)
    assert scalar(out["unsup"]) == pytest.approx(104 * CE0 / 112, rel=1e-5)


def test_threshold_one_gives_exactly_zero_unsupervised_loss():
    out = _method(conf_thresh=1.0).training_step(colour_batch([RED, RED], [0, 0]), unlabelled_batch(), 0)
    assert scalar(out["unsup"]) == 0.0
    assert scalar(out["loss"]) == pytest.approx(scalar(out["sup"]) / 2)


def test_masked_cross_entropy_by_hand():
    logits = torch.zeros(1, 2, 1, 4)
    logits[0, 0] = torch.tensor([2.0, 2.0, 0.0, 0.0])
    target = Target(torch.zeros(1, 1, 4, dtype=torch.long), torch.tensor([[[0.99, 0.5, 0.99, 0.99]]]),
                    torch.tensor([[[True, True, True, False]]]))
    ce_conf = math.log(1 + math.exp(-2.0))  # pixel 0; pixel 1 below threshold; pixel 2 CE log 2; pixel 3 padding
    expected = (ce_conf + math.log(2.0)) / 3  # divided by the 3 valid pixels
    assert scalar(masked_cross_entropy(logits, target.label, target.conf, 0.95, target.valid)) == pytest.approx(expected, rel=1e-6)


def test_real_model_step_runs_and_restores_train_mode():
    from semiseg_sdk.augment import ViewConfig, ViewMaker
    from semiseg_sdk.models import build_model

    torch.manual_seed(0)
    model = build_model("deeplabv3plus", encoder="tiny", num_classes=4)
    cls = get_method("fixmatch")
    m = cls(model, 4, ViewMaker(ViewConfig(crop_size=(32, 32))), cls.make_config({"conf_thresh": 0.0})).train()
    x = {"image": torch.randint(0, 256, (2, 3, 40, 40), dtype=torch.uint8), "mask": torch.randint(0, 4, (2, 40, 40)),
         "valid": torch.ones(2, 40, 40, dtype=torch.bool)}
    u = {**x, "mask": torch.full((2, 40, 40), 255)}
    out = m.training_step(x, u, 0)
    out["loss"].backward()
    assert model.training  # the eval-mode partner prediction put the model back in train mode
    assert scalar(out["unsup"]) > 0  # threshold 0: every valid pixel is supervised
    assert all(p.grad is not None for p in model.classifier.parameters())


def test_cutmix_box_follows_obtain_cutmix_box():
    # LiheYoung/UniMatch dataset/transform.py: w = int(sqrt(a / r)), h = int(sqrt(a * r)), r = h / w ~ U(0.3, 1 / 0.3)
    g = torch.Generator().manual_seed(0)
    fixed = unimatch_box_masks(8, (16, 16), p=1.0, area=(0.25, 0.25), ratio=(2.0, 2.0), generator=g)
    assert torch.equal(fixed.any(dim=2).sum(dim=1), torch.full((8,), 11))  # a = 64 px: h = int(sqrt(128)) = 11 rows
    assert torch.equal(fixed.any(dim=1).sum(dim=1), torch.full((8,), 5))   # w = int(sqrt(32)) = 5 columns
    m = unimatch_box_masks(4000, (96, 96), p=1.0, generator=g)
    rows, cols = m.any(dim=2).sum(dim=1), m.any(dim=1).sum(dim=1)
    assert torch.equal(rows * cols, m.flatten(1).sum(dim=1))  # one whole box, never clipped at the border
    # r uniform: P(r > 1) = (1/0.3 - 1) / (1/0.3 - 0.3) = 0.77 before the fit test (0.73 after); a log-uniform r gives 0.5
    assert 0.68 < float((rows > cols).float().mean()) < 0.78
    assert 0.19 < float(m.float().mean()) < 0.22  # mean area ~ (0.02 + 0.4) / 2 less the int() truncation
    old = box_masks(4000, (96, 96), p=1.0, generator=g)
    assert abs(float((old.any(dim=2).sum(1) > old.any(dim=1).sum(1)).float().mean()) - 0.5) < 0.05
    half = unimatch_box_masks(4000, (16, 16), generator=g).flatten(1).any(dim=1).float().mean()  # p = 0.5
    assert abs(float(half) - 0.5) < 0.05


@pytest.mark.parametrize("model_dropout", [False, True])
def test_model_dropout_is_off_in_every_forward_by_default(monkeypatch, model_dropout):
    # LiheYoung/UniMatch model/semseg/deeplabv3plus.py has no dropout; the SDK's has ASPP Dropout(0.5) + Dropout2d(0.1).
    # Identity strong view, no box, threshold 0: without dropout the strong forward reproduces the weak one, so
    # L_s = mean CE(p_w, argmax p_w) = mean(-log conf_w) exactly; with dropout the two forwards differ.
    from semiseg_sdk.models import build_model

    monkeypatch.setattr(fixmatch_module, "unimatch_box_masks", lambda b, size, p, device: torch.zeros(b, *size, dtype=torch.bool))
    torch.manual_seed(0)
    model = build_model("deeplabv3plus", encoder="tiny", num_classes=4)
    cls = get_method("fixmatch")
    m = cls(model, 4, IdentityViews(), cls.make_config({"conf_thresh": 0.0, "model_dropout": model_dropout})).train()
    x, u = same_images_batches()
    expected = undropped_mean_neg_log_conf(model, u["image"])
    out = m.training_step(x, u, 0)
    assert (scalar(out["unsup"]) == pytest.approx(expected, rel=1e-4)) != model_dropout
    drops = [d for d in model.modules() if isinstance(d, torch.nn.modules.dropout._DropoutNd)]
    assert drops and all(d.training for d in drops)  # back in train mode after the step


@pytest.mark.parametrize("name", ["fixmatch", "unimatch"])
def test_ema_teacher_lever_takes_the_pseudo_labels_from_the_teacher_and_follows_the_student(name):
    cls = get_method(name)
    method = cls(PixelModel(), 3, IdentityViews(), cls.make_config({"ema_teacher": True})).train()
    assert get_method(name)(PixelModel(), 3, IdentityViews()).teacher is None  # off by default: the official recipe
    x, u = colour_batch([RED, RED], [0, 0]), colour_batch([RED, GREEN])
    assert scalar(method.training_step(x, u, 0)["unsup"]) > 0  # teacher = copy of the confident student
    with torch.no_grad():
        method.teacher.net.a.fill_(0.0)  # a teacher that is never confident (every class 1/3)...
    assert scalar(method.training_step(x, u, 0)["unsup"]) == 0.0  # ... gives no target, whatever the student says
    # EMA law of UniMatch-V2: a_t = min(1 - 1 / (t + 1), 0.996): step 0 copies the student, step 1 averages halfway
    with torch.no_grad():
        method.model.a.fill_(4.0)
    method.after_optimizer_step(0)
    assert method.teacher.net.a.item() == pytest.approx(4.0)
    with torch.no_grad():
        method.model.a.fill_(2.0)
    method.after_optimizer_step(1)
    assert method.teacher.net.a.item() == pytest.approx(3.0)
    method.after_optimizer_step(10**6)
    assert method.teacher.net.a.item() == pytest.approx(0.996 * 3.0 + 0.004 * 2.0)
    assert "teacher.net.a" in method.state_dict()  # checkpointed with the method: --resume continues the teacher


def test_masked_cross_entropy_weights_each_kept_pixel():
    """Two-class zero logits: every pixel's CE is ln 2. Weights 2 and 0.5 on the two kept pixels, a third pixel below
    the threshold, all three valid: (2 + 0.5) ln 2 / 3."""
    logits, target = torch.zeros(1, 2, 1, 3), torch.tensor([[[0, 1, 1]]])
    conf, valid = torch.tensor([[[0.99, 0.99, 0.5]]]), torch.ones(1, 1, 3, dtype=torch.bool)
    loss = masked_cross_entropy(logits, target, conf, 0.95, valid, weight=torch.tensor([[[2.0, 0.5, 7.0]]]))
    assert loss.item() == pytest.approx(2.5 * math.log(2) / 3)
    assert masked_cross_entropy(logits, target, conf, 0.95, valid).item() == pytest.approx(2 * math.log(2) / 3)
