"""The labelled-pixel loss: plain CE, OHEM's hard-pixel selection (by hand), and every method using the run's choice."""
import math

import pytest
import torch

from semiseg_sdk.config import TrainConfig
from semiseg_sdk.errors import ConfigError
from semiseg_sdk.methods.labelled_loss import CrossEntropy, OhemCrossEntropy, build_labelled_loss


def _logits_with_true_prob(probs):
    """(1, 2, 1, N) logits whose class-0 probability is ``probs[i]`` at pixel i; the target is class 0 everywhere."""
    p = torch.tensor(probs, dtype=torch.float64)
    logit0 = torch.log(p / (1 - p))  # two classes: softmax(l0, 0)[0] = sigmoid(l0)
    logits = torch.stack([logit0, torch.zeros_like(logit0)])[None, :, None, :].float()
    return logits, torch.zeros(1, 1, len(probs), dtype=torch.long)


def test_ohem_keeps_pixels_below_thresh_when_enough_are_hard():
    probs = [0.1, 0.2, 0.5, 0.8, 0.9, 0.95]
    logits, target = _logits_with_true_prob(probs)
    loss = OhemCrossEntropy(thresh=0.7, min_kept=2)(logits, target)
    # 2nd smallest prob 0.2 < 0.7, so the threshold stays 0.7: pixels 0.1, 0.2, 0.5 count
    assert loss.item() == pytest.approx(-(math.log(0.1) + math.log(0.2) + math.log(0.5)) / 3, rel=1e-4)


def test_ohem_raises_the_threshold_to_keep_min_kept_pixels():
    probs = [0.1, 0.8, 0.9, 0.95]
    logits, target = _logits_with_true_prob(probs)
    loss = OhemCrossEntropy(thresh=0.7, min_kept=3)(logits, target)
    # the 3rd smallest prob is 0.9 > 0.7: pixels up to 0.9 count
    assert loss.item() == pytest.approx(-(math.log(0.1) + math.log(0.8) + math.log(0.9)) / 3, rel=1e-4)


def test_ohem_is_plain_ce_with_fewer_labelled_pixels_than_min_kept_and_ignores_255():
    logits, target = _logits_with_true_prob([0.1, 0.8, 0.9, 0.95])
    target[0, 0, 0] = 255
    ohem = OhemCrossEntropy(thresh=0.7, min_kept=10)(logits, target)
    ce = CrossEntropy()(logits, target)
    assert ohem.item() == pytest.approx(ce.item()) == pytest.approx(-(math.log(0.8) + math.log(0.9) + math.log(0.95)) / 3, rel=1e-4)
    # and 255 pixels never count when OHEM selects: the ignored 0.1 pixel would be the hardest
    assert OhemCrossEntropy(0.7, 1)(logits, target).item() == pytest.approx(-math.log(0.8), rel=1e-4)


def test_ohem_gradient_reaches_only_kept_pixels():
    logits, target = _logits_with_true_prob([0.1, 0.9])
    logits.requires_grad_(True)
    OhemCrossEntropy(0.7, 1)(logits, target).backward()
    assert logits.grad[..., 0].abs().sum() > 0 and logits.grad[..., 1].abs().sum() == 0


def test_bad_labelled_loss_options_raise():
    with pytest.raises(ConfigError, match="sup_loss"):
        TrainConfig(sup_loss="dice")
    with pytest.raises(ConfigError, match="sup_loss"):
        build_labelled_loss("focal")
    with pytest.raises(ConfigError, match="ohem_min_kept"):
        build_labelled_loss("ohem", ohem_min_kept=0)


@pytest.mark.parametrize("method", ["supervised", "fixmatch", "unimatch", "cps", "psmt", "reco", "advsemiseg",
                                    "mean-teacher", "cct", "cac"])
def test_every_method_uses_the_runs_labelled_loss(method):
    from semiseg_sdk.augment import ViewConfig, ViewMaker
    from semiseg_sdk.methods import get_method
    from semiseg_sdk.models import build_model

    torch.manual_seed(0)
    model = build_model("deeplabv3plus", encoder="tiny", num_classes=3)
    cls = get_method(method)
    m = cls(model, 3, ViewMaker(ViewConfig(crop_size=(32, 32))), cls.make_config({}), total_steps=10).train()
    calls = []

    class Spy(CrossEntropy):
        def forward(self, logits, target):
            calls.append(tuple(target.shape))
            return super().forward(logits, target)

    m.set_labelled_loss(Spy())
    g = torch.Generator().manual_seed(0)
    batch = lambda: {"image": torch.rand(2, 3, 32, 32, generator=g), "mask": torch.randint(0, 3, (2, 32, 32), generator=g),
                     "valid": torch.ones(2, 32, 32, dtype=torch.bool)}
    out = m.training_step(batch(), batch(), 5)
    assert torch.isfinite(out["loss"]) and calls and all(s[0] == 2 for s in calls)
