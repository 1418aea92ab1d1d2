"""AdvSemiSeg: the discriminator is trained only in its own step, and the self-taught term follows the recipe."""
import pytest
import torch
import torch.nn.functional as F

from semiseg_sdk.augment import ViewConfig, ViewMaker
from semiseg_sdk.methods import get_method
from semiseg_sdk.methods.advsemiseg import masked_bce, self_taught_loss
from semiseg_sdk.models import build_model


def _batches(b=2, h=40, w=40, classes=4):
    g = torch.Generator().manual_seed(0)
    x = {"image": torch.randint(0, 256, (b, 3, h, w), dtype=torch.uint8, generator=g),
         "mask": torch.randint(0, classes, (b, h, w), generator=g), "valid": torch.ones(b, h, w, dtype=torch.bool)}
    x["mask"][:, :5] = 255
    u = {"image": torch.randint(0, 256, (b, 3, h, w), dtype=torch.uint8, generator=g),
         "mask": torch.full((b, h, w), 255), "valid": torch.ones(b, h, w, dtype=torch.bool)}
    return x, u


def _method(total_steps=4, **overrides):
    torch.manual_seed(0)
    cls = get_method("advsemiseg")
    model = build_model("deeplabv3plus", encoder="tiny", num_classes=4)
    return cls(model, 4, ViewMaker(ViewConfig(crop_size=(32, 32))), cls.make_config(overrides), total_steps=total_steps)


def _optimizer(method):
    return torch.optim.SGD([p for g in method.param_groups(0.01, 10.0) for p in g["params"]], lr=0.01)


def test_discriminator_changes_only_in_its_own_step():
    method = _method()
    opt = _optimizer(method)
    d_ids = {id(p) for p in method.discriminator.parameters()}
    assert not any(id(p) in d_ids for g in opt.param_groups for p in g["params"])
    x, u = _batches()
    out = method.training_step(x, u, 0)
    out["loss"].backward()
    assert all(p.grad is None for p in method.discriminator.parameters())  # the G step gives D no gradient
    d_before = [p.detach().clone() for p in method.discriminator.parameters()]
    opt.step()
    assert all(torch.equal(a, p) for a, p in zip(d_before, method.discriminator.parameters()))
    seg_grads = [p.grad.clone() for p in method.model.parameters() if p.grad is not None]
    assert seg_grads
    method.after_optimizer_step(0)  # the D step
    assert any(not torch.equal(a, p) for a, p in zip(d_before, method.discriminator.parameters()))
    after = [p.grad for p in method.model.parameters() if p.grad is not None]
    assert all(torch.equal(a, b) for a, b in zip(seg_grads, after))  # ... and gives the segmentor none
    assert float(out["loss_d"]) > 0


def test_self_taught_term_is_zero_before_semi_start():
    method = _method(total_steps=8, mask_t=0.0)  # semi_start 0.25 of 8 steps -> step 2
    x, u = _batches()
    before = method.training_step(x, u, 1)
    assert float(before["semi"].detach()) == 0.0 and float(before["semi_ratio"]) == 0.0
    after = method.training_step(x, u, 2)
    assert float(after["semi"].detach()) > 0.0 and float(after["semi_ratio"]) == pytest.approx(1.0)
    expected = (0.1 * after["semi"] + 0.001 * after["semi_adv"]).detach()
    assert float(after["unsup"].detach()) == pytest.approx(float(expected), rel=1e-5)


def test_pixels_below_mask_t_contribute_nothing():
    torch.manual_seed(0)
    pred = torch.randn(1, 4, 4, 6, requires_grad=True)
    d_logits = torch.full((1, 4, 6), 5.0)
    d_logits[..., 3:] = -5.0  # sigmoid(-5) = 0.0067 < 0.2
    valid = torch.ones(1, 4, 6, dtype=torch.bool)
    valid[0, 0, 0] = False  # padding never counts
    out = self_taught_loss(pred, d_logits, valid, mask_t=0.2)
    logp = F.log_softmax(pred.detach(), dim=1).max(dim=1).values[0]
    keep = torch.zeros(4, 6, dtype=torch.bool)
    keep[:, :3] = True
    keep[0, 0] = False
    assert float(out["semi"].detach()) == pytest.approx(float(-logp[keep].mean()), rel=1e-6)
    assert float(out["semi_ratio"]) == pytest.approx(11 / 23)
    out["semi"].backward()
    assert torch.all(pred.grad[0][:, :, 3:] == 0) and torch.all(pred.grad[0][:, 0, 0] == 0)
    assert pred.grad[0][:, :, :3].abs().sum() > 0
    none = self_taught_loss(pred, torch.full((1, 4, 6), -5.0), valid, mask_t=0.2)
    assert float(none["semi"].detach()) == 0.0 and float(none["semi_ratio"]) == 0.0


def test_masked_bce_ignores_masked_pixels():
    logits = torch.tensor([[[2.0, -1.0, 100.0]]])
    keep = torch.tensor([[[True, True, False]]])
    expected = (F.softplus(-torch.tensor(2.0)) + F.softplus(torch.tensor(1.0))) / 2  # BCE to 1 = softplus(-z)
    assert float(masked_bce(logits, 1.0, keep)) == pytest.approx(float(expected), rel=1e-6)


def test_discriminator_optimizer_state_survives_resume():
    method = _method()
    x, u = _batches()
    method.training_step(x, u, 0)["loss"].backward()
    method.after_optimizer_step(0)
    state = method.state_dict()
    fresh = _method()
    fresh.load_state_dict(state)
    a, b = method.optimizer_d.state_dict(), fresh.optimizer_d.state_dict()
    assert a["state"] and a["state"].keys() == b["state"].keys()
    for k in a["state"]:
        assert torch.equal(a["state"][k]["exp_avg"], b["state"][k]["exp_avg"])
    assert all(torch.equal(p, q) for p, q in zip(method.discriminator.parameters(), fresh.discriminator.parameters()))
