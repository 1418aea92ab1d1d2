"""benchmarks/pseudo_label_quality.py: the three ways a network predicts pseudo-labels."""
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import pseudo_label_quality as plq  # noqa: E402


def _net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 1), nn.BatchNorm2d(8), nn.Dropout2d(0.9), nn.Conv2d(8, 4, 1))
    with torch.no_grad():
        net[1].running_mean.fill_(5.0)  # far from the batch's statistics: eval and train modes must differ
    return net


def test_modes_differ_as_their_layers_say_and_restore_the_model():
    net, x = _net(), torch.rand(4, 3, 8, 8)
    net.eval()
    ev = plq.predict(net, x, "eval")
    assert torch.allclose(ev, net(x).softmax(1))
    nodrop = [plq.predict(net, x, "train-nodropout") for _ in range(2)]
    assert torch.allclose(nodrop[0], nodrop[1])  # batch statistics, no random dropout
    assert not torch.allclose(nodrop[0], ev, atol=1e-3)  # but not the running statistics
    drop = [plq.predict(net, x, "train") for _ in range(2)]
    assert not torch.allclose(drop[0], drop[1])  # dropout 0.9 is active
    assert not net.training and not net[2].training  # modes restored
