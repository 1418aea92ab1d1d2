"""PS-MT: alternating EMA teachers, ensemble target, strict confidence-weighted CE, warm-up and ramp."""
import math

import pytest
import torch
import torch.nn.functional as F

from method_helpers import corrupt_running_stats, fit_running_stats, random_batch
from semiseg_sdk.augment import ViewConfig, ViewMaker
from semiseg_sdk.methods import get_method
from semiseg_sdk.methods.pseudo_labels import Target
from semiseg_sdk.methods.psmt import assist, strict_loss
from semiseg_sdk.models import build_model

PSMT = get_method("psmt")


def _method(total_steps=80, **cfg):
    torch.manual_seed(0)
    model = build_model("deeplabv3plus", encoder="tiny", num_classes=4)
    return PSMT(model, 4, ViewMaker(ViewConfig(crop_size=(32, 32))), PSMT.make_config(cfg), total_steps=total_steps)


def _nudge(net, value=1.0):
    with torch.no_grad():
        for p in net.parameters():
            p.add_(value)


def _params(t):
    return [p.detach().clone() for p in t.net.parameters()]


def test_teachers_alternate_and_only_the_current_one_moves_by_ema():
    m = _method(total_steps=80, warm_up=0.0, alternate_every=2)
    assert [m.current_teacher(s) for s in range(6)] == [1, 1, 2, 2, 1, 1]
    for step in range(6):
        _nudge(m.model)
        t1, t2, s = _params(m.teacher1), _params(m.teacher2), [p.detach() for p in m.model.parameters()]
        m.after_optimizer_step(step)
        moved, still = (m.teacher1, m.teacher2) if m.current_teacher(step) == 1 else (m.teacher2, m.teacher1)
        before_moved, before_still = (t1, t2) if moved is m.teacher1 else (t2, t1)
        for new, old, stu in zip(moved.net.parameters(), before_moved, s):
            assert torch.allclose(new, 0.996 * old + 0.004 * stu, atol=1e-6)
        assert all(torch.equal(new, old) for new, old in zip(still.net.parameters(), before_still))


def test_default_alternation_is_one_psmt_epoch_of_80():
    assert _method(total_steps=800).alternate_every == 10
    assert _method(total_steps=4).alternate_every == 1


def test_target_is_the_softmax_of_the_teachers_mean_logits():
    m = _method(warm_up=0.0, teacher_batch_stats=False)  # eval-mode teachers: the formula alone
    _nudge(m.teacher2.net, 0.01)  # two different teachers
    img = torch.rand(2, 3, 32, 32)
    valid = torch.ones(2, 32, 32, dtype=torch.bool)
    target = m.teacher_target(img, valid, step=0)
    with torch.no_grad():
        l1, l2 = m.teacher1.net(img), m.teacher2.net(img)  # eval mode, as EMATeacher predicts
        prob = F.softmax(0.5 * l1 + 0.5 * l2, dim=1)
    assert not torch.allclose(l1, l2)
    assert torch.allclose(target.conf, prob.max(1).values, atol=1e-6)
    assert torch.equal(target.label, prob.argmax(1))


@pytest.mark.parametrize("batch_stats", [True, False])
def test_teachers_normalise_the_weak_batch_with_its_own_statistics(batch_stats):
    """PS-MT predicts the target with the teachers in train mode: BatchNorm uses the batch's statistics, so the
    target ignores the running statistics (which hold the strong views the student trains on); dropout stays off."""
    m = _method(warm_up=0.0, teacher_batch_stats=batch_stats)
    img = torch.rand(4, 3, 32, 32)
    valid = torch.ones(4, 32, 32, dtype=torch.bool)
    for t in (m.teacher1, m.teacher2):  # running statistics = those of img, a confident classifier
        fit_running_stats(t.net, img)
        with torch.no_grad():
            t.net.classifier.weight.mul_(100.0)
    before = m.teacher_target(img, valid, step=0)
    assert before.conf.std() > 0.01
    for t in (m.teacher1, m.teacher2):
        corrupt_running_stats(t.net)
    after = m.teacher_target(img, valid, step=0)
    same = torch.allclose(after.conf, before.conf, atol=1e-5) and torch.equal(after.label, before.label)
    assert same == batch_stats
    assert all(not mod.training for t in (m.teacher1, m.teacher2) for mod in t.net.modules())  # eval mode again


def test_assist_keeps_the_topk_of_the_other_teacher():
    core = torch.tensor([10.0, 20.0, 30.0, 40.0]).view(1, 4, 1, 1)
    other = torch.tensor([4.0, 1.0, 3.0, 2.0]).view(1, 4, 1, 1)
    assert assist(core, other, 2).flatten().tolist() == [4.0, 20.0, 3.0, 40.0]
    assert torch.equal(assist(core, other, 7), other)  # 7 >= 4 classes: unchanged


def test_strict_loss_drops_pixels_below_06_and_weights_by_confidence():
    logits = torch.randn(1, 4, 1, 5)
    label = torch.tensor([[[0, 1, 2, 3, 0]]])
    conf = torch.tensor([[[0.9, 0.5, 0.7, 0.6, 0.95]]])
    valid = torch.tensor([[[True, True, True, True, False]]])  # the last pixel is padding
    got = strict_loss(logits, Target(label, conf, valid), 0.6)
    ce = F.cross_entropy(logits, label, reduction="none")[0, 0]
    expected = (ce[0] * 0.9 + ce[2] * 0.7 + ce[3] * 0.6) / 3
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    changed = logits.clone()
    changed[..., 1] += torch.tensor([5.0, -5.0, 0.0, 3.0]).view(1, 4, 1)  # the conf-0.5 pixel: no effect
    changed[..., 4] -= 7.0                                                    # the padding pixel: no effect
    assert strict_loss(changed, Target(label, conf, valid), 0.6).item() == pytest.approx(got.item(), rel=1e-6)
    nothing = Target(label, torch.full_like(conf, 0.3), valid)
    assert strict_loss(logits, nothing, 0.6).item() == 0.0


def test_warm_up_is_supervised_then_teachers_restart_from_the_student():
    m = _method(total_steps=80)  # warm-up 5 steps, ramp 12 steps
    assert m.warm_steps == 5 and m.unsup_weight(4) == 0.0 and m.unsup_weight(5) == 0.0
    assert m.unsup_weight(11) == pytest.approx(1.5 * 0.5 * (1 - math.cos(math.pi * 6 / 12)))
    assert m.unsup_weight(17) == pytest.approx(1.5) and m.unsup_weight(79) == pytest.approx(1.5)
    x, u = random_batch(seed=1), random_batch(seed=2, unlabelled=True)
    out = m.training_step(x, u, step=0)
    assert out["unsup"].item() == 0.0 and out["loss"].item() == out["sup"].item()
    _nudge(m.model)
    t1 = _params(m.teacher1)
    m.after_optimizer_step(3)  # inside the warm-up: the teachers wait
    assert all(torch.equal(a, b) for a, b in zip(m.teacher1.net.parameters(), t1))
    m.after_optimizer_step(4)  # the last warm-up step: both teachers become the student
    for t in (m.teacher1, m.teacher2):
        assert all(torch.equal(a, b) for a, b in zip(t.net.state_dict().values(), m.model.state_dict().values()))
    out = m.training_step(x, u, step=10)
    assert out["unsup"].item() > 0 and out["w_unsup"].item() > 0
    out["loss"].backward()
    assert all(p.grad is None for t in (m.teacher1, m.teacher2) for p in t.parameters())  # T-VAT leaves teachers alone
    assert m.inference_model() is m.model


def test_tvat_perturbs_the_student_features_slightly():
    m = _method(warm_up=0.0)
    m.eval()  # deterministic student
    img = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        clean = m.model(img)
    noisy = m.student(img, tvat=True).detach()
    assert not torch.allclose(clean, noisy)
    assert torch.allclose(clean, m.student(img, tvat=False).detach(), atol=1e-6)
