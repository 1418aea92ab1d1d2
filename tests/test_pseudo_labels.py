"""The CutMix partner target of FixMatch/UniMatch: reused weak prediction or an eval-mode forward."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from semiseg_sdk.errors import ConfigError
from semiseg_sdk.methods.pseudo_labels import Target, cutmix_partner


class ModeNet(nn.Module):
    """Predicts class 1 everywhere in eval mode and class 0 in train mode; counts its forwards."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        logits = torch.zeros(x.shape[0], 2, *x.shape[-2:])
        logits[:, 0 if self.training else 1] = 5.0
        return logits


def _weak(b: int = 3) -> Target:
    label = torch.arange(b).view(b, 1, 1).expand(b, 4, 4).clone()  # sample i labelled i: rolling is visible
    return Target(label, torch.full((b, 4, 4), 0.9), torch.ones(b, 4, 4, dtype=torch.bool))


def test_weak_partner_is_the_rolled_weak_target_without_a_forward():
    net, weak = ModeNet().train(), _weak()
    out = cutmix_partner(net, torch.rand(3, 3, 4, 4), weak, "weak")
    assert net.calls == 0
    assert out.label[:, 0, 0].tolist() == [2, 0, 1]  # sample i gets sample i-1's map
    assert torch.equal(out.conf, weak.conf.roll(1, 0))


def test_eval_partner_predicts_in_eval_mode_and_restores_train_mode():
    net, weak = ModeNet().train(), _weak()
    out = cutmix_partner(net, torch.rand(3, 3, 4, 4), weak, "eval")
    assert net.calls == 1 and net.training
    assert bool((out.label == 1).all()) and bool((out.conf > 0.99).all())


def test_unknown_partner_mode_is_a_config_error():
    with pytest.raises(ConfigError, match="partner_label"):
        cutmix_partner(ModeNet(), torch.rand(1, 3, 4, 4), _weak(1), "teacher")
