"""ReCo: negatives never share the query's class, prototypes are class means, the loss matches a hand computation."""
import math

import pytest
import torch
import torch.nn.functional as F

from method_helpers import IdentityViews, random_batch, teacher_targets
from semiseg_sdk.augment import ViewConfig, ViewMaker
from semiseg_sdk.methods import get_method
from semiseg_sdk.methods.reco import class_prototypes, reco_loss, sample_negative_indices
from semiseg_sdk.models import build_model


def test_sampled_negatives_never_share_the_query_class():
    counts = torch.tensor([5, 7, 4, 3])
    key_class = torch.repeat_interleave(torch.arange(4), counts)  # keys sorted by class
    protos = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    for k in range(4):
        idx = sample_negative_indices(k, protos, counts, 64, 32, temp=0.5, generator=g)
        assert idx.shape == (64, 32)
        assert idx.min() >= 0 and idx.max() < int(counts.sum())
        assert not (key_class[idx] == k).any()
        assert set(key_class[idx].unique().tolist()) == set(range(4)) - {k}


def test_negative_classes_follow_the_class_relation_graph():
    e = torch.eye(3)
    protos = torch.stack([e[0], e[0] + 0.001 * e[1], -e[0]])  # class 1 ~ class 0, class 2 opposite
    counts = torch.tensor([2, 6, 3])
    g = torch.Generator().manual_seed(0)
    idx = sample_negative_indices(0, protos, counts, 256, 128, temp=0.5, generator=g)
    cls = torch.repeat_interleave(torch.arange(3), counts)[idx]
    expected = math.exp(2.0) / (math.exp(2.0) + math.exp(-2.0))  # softmax([cos 1, cos -1] / 0.5)
    assert (cls == 1).float().mean().item() == pytest.approx(expected, abs=0.005)
    # keys are uniform inside the chosen class: all six keys of class 1 appear, about equally often
    hits = torch.bincount(idx[cls == 1] - 2, minlength=6).float()
    assert hits.min() > 0.9 * hits.mean()


def test_prototypes_are_class_means():
    feats = torch.arange(12, dtype=torch.float32).view(6, 2)
    labels = torch.tensor([3, 1, 3, 3, 1, 0])
    protos, classes, counts = class_prototypes(feats, labels)
    assert classes.tolist() == [0, 1, 3] and counts.tolist() == [1, 2, 3]
    expected = torch.stack([feats[5], (feats[1] + feats[4]) / 2, (feats[0] + feats[2] + feats[3]) / 3])
    assert torch.allclose(protos, expected)


def test_reco_loss_equals_hand_computation():
    # three valid pixels: class 0 "a" (hard) and "b" (easy), class 1 "c" (easy); one invalid pixel
    a, b, c, junk = torch.tensor([1.0, 0.0]), torch.tensor([0.6, 0.8]), torch.tensor([0.0, 1.0]), torch.tensor([9.0, 9.0])
    rep = torch.stack([a, b, c, junk], dim=1).view(1, 2, 1, 4)
    labels = torch.tensor([[[0, 0, 1, 0]]])
    valid = torch.tensor([[[True, True, True, False]]])
    prob = torch.zeros(1, 2, 1, 4)
    prob[0, :, 0, 0] = torch.tensor([0.6, 0.4])   # hard: p(class 0) < 0.97
    prob[0, :, 0, 1] = torch.tensor([0.99, 0.01])
    prob[0, :, 0, 2] = torch.tensor([0.01, 0.99])  # class 1 has no hard query: skipped, still counted
    temp, n_neg = 0.5, 5
    loss = reco_loss(rep, labels, valid, prob, strong_threshold=0.97, temp=temp, num_queries=3, num_negatives=n_neg)
    proto0 = (a + b) / 2
    s_pos = F.cosine_similarity(a, proto0, dim=0) / temp
    s_neg = F.cosine_similarity(a, c, dim=0) / temp  # the only key of the only other class
    expected = (-s_pos + torch.log(torch.exp(s_pos) + n_neg * torch.exp(s_neg))) / 2
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-5)


def test_reco_loss_is_zero_with_a_single_class():
    rep = torch.randn(1, 4, 2, 2, requires_grad=True)
    labels, valid = torch.zeros(1, 2, 2, dtype=torch.long), torch.ones(1, 2, 2, dtype=torch.bool)
    loss = reco_loss(rep, labels, valid, torch.full((1, 2, 2, 2), 0.5))
    assert float(loss.detach()) == 0.0


def test_inference_model_is_the_ema_teacher():
    torch.manual_seed(0)
    cls = get_method("reco")
    model = build_model("unet", encoder="tiny", num_classes=4)
    cfg = cls.make_config({"num_queries": 16, "num_negatives": 8})
    method = cls(model, 4, ViewMaker(ViewConfig(crop_size=(32, 32))), cfg, total_steps=4)
    g = torch.Generator().manual_seed(0)
    x = {"image": torch.randint(0, 256, (2, 3, 40, 40), dtype=torch.uint8, generator=g),
         "mask": torch.randint(0, 4, (2, 40, 40), generator=g), "valid": torch.ones(2, 40, 40, dtype=torch.bool)}
    u = {"image": torch.randint(0, 256, (2, 3, 40, 40), dtype=torch.uint8, generator=g),
         "mask": torch.full((2, 40, 40), 255), "valid": torch.ones(2, 40, 40, dtype=torch.bool)}
    out = method.training_step(x, u, 0)
    assert set(out) >= {"loss", "sup", "unsup", "reco"} and torch.isfinite(out["loss"])
    assert method.inference_model() is method.teacher.net  # ReCo evaluates and saves ema.model


@pytest.mark.parametrize("batch_stats", [True, False])
def test_teacher_pseudo_labels_use_the_batch_statistics(batch_stats):
    """ReCo's train_semisup.py calls ``ema.model.train()`` before the pseudo-labels: BatchNorm normalises the weak
    batch with its own statistics, so corrupting the teacher's running statistics leaves the target unchanged (with
    ``teacher_batch_stats=False``, eval mode, it does not); the teacher is in eval mode again after the step."""
    torch.manual_seed(0)
    cls = get_method("reco")
    assert cls.make_config({}).teacher_batch_stats  # the official default
    cfg = cls.make_config({"num_queries": 16, "num_negatives": 8, "teacher_batch_stats": batch_stats})
    method = cls(build_model("unet", encoder="tiny", num_classes=4), 4, IdentityViews(), cfg, total_steps=4)
    before, after = teacher_targets(method, random_batch(seed=1), random_batch(seed=2, unlabelled=True))
    assert torch.allclose(before, after, atol=1e-5) == batch_stats
    assert not any(mod.training for mod in method.teacher.net.modules())
