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
    before = {k: v.clone() for k, v in net.state_dict().items()}
    ev = plq.predict(net, x, "eval")
    assert torch.allclose(ev, net(x).softmax(1))
    nodrop = [plq.predict(net, x, "train-nodropout") for _ in range(2)]
    assert torch.allclose(nodrop[0], nodrop[1])  # batch statistics, no random dropout
    assert not torch.allclose(nodrop[0], ev, atol=1e-3)  # but not the running statistics
    drop = [plq.predict(net, x, "train") for _ in range(2)]
    assert not torch.allclose(drop[0], drop[1])  # dropout 0.9 is active
    assert not net.training and not net[2].training  # modes restored
    after = net.state_dict()  # running statistics too: a later eval prediction is the one before
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.allclose(plq.predict(net, x, "eval"), ev)


def test_distribution_alignment_by_hand():
    # two classes, labelled prior 50/50, the network predicts class 0 at 0.8 on average: class 0 is scaled by
    # 0.5 / 0.8, class 1 by 0.5 / 0.2; a pixel at (0.96, 0.04) becomes (0.6, 0.1) / 0.7, below a 0.95 threshold
    probs = torch.tensor([0.96, 0.04]).view(1, 2, 1, 1)
    out = plq.distribution_align(probs, torch.tensor([0.5, 0.5]), torch.tensor([0.8, 0.2]))
    assert torch.allclose(out.flatten(), torch.tensor([0.6 / 0.7, 0.1 / 0.7]))
    same = torch.softmax(torch.randn(2, 3, 4, 4), dim=1)
    mean = same.mean(dim=(0, 2, 3))
    assert torch.allclose(plq.distribution_align(same, mean, mean), same, atol=1e-6)  # prior = mean: unchanged


def test_class_frequencies_skip_ignored_pixels():
    masks = torch.tensor([[0, 0, 1, 255], [2, 255, 0, 1]])
    assert torch.allclose(plq.class_frequencies(masks, 3), torch.tensor([3, 2, 1]) / 6.0)


def test_tta_averages_the_mirrored_view_mapped_back_and_keeps_the_input_size():
    torch.manual_seed(0)
    net = nn.Conv2d(3, 4, (1, 3), padding=(0, 1)).eval()  # a horizontal kernel: mirroring changes its answer
    net.size_divisor = 1  # no padding to a stride, so the by-hand sum below is the whole computation
    x = torch.rand(2, 3, 9, 11)
    by_hand = (plq.predict(net, x, "eval") + plq.predict(net, x.flip(-1), "eval").flip(-1)) / 2
    assert not torch.allclose(by_hand, plq.predict(net, x, "eval"), atol=1e-3)
    assert torch.allclose(plq.predict_tta(net, x, "eval", [1.0]), by_hand, atol=1e-6)
    multi = plq.predict_tta(net, x, "eval", [0.5, 1.0, 1.5])
    assert multi.shape == (2, 4, 9, 11) and torch.allclose(multi.sum(1), torch.ones(2, 9, 11), atol=1e-5)


def test_confident_set_balance_by_hand():
    # four pixels: class 0 at 0.99 (truly 0), class 0 at 0.97 (truly 1), class 1 at 0.96 (truly 1), class 1 at 0.6
    # (not confident). Confident set: two of class 0, one of class 1, none of class 2 -> shares 2/3, 1/3, 0; labelled
    # prior 0.5, 0.25, 0.25 -> balance 4/3, 4/3, 0; of the pixels predicted 0 half are right, of those predicted 1 all
    probs = torch.tensor([[0.99, 0.005, 0.005], [0.97, 0.02, 0.01], [0.02, 0.96, 0.02], [0.2, 0.6, 0.2]]).T
    probs, truth = probs.reshape(1, 3, 2, 2), torch.tensor([[[0, 1], [1, 2]]])
    balance, right = plq.confident_set_balance([probs], [truth], 0.95, torch.tensor([0.5, 0.25, 0.25]))
    assert torch.allclose(balance, torch.tensor([4 / 3, 4 / 3, 0.0]))
    assert torch.allclose(right, torch.tensor([0.5, 1.0, 0.0]))
    no_prior, _ = plq.confident_set_balance([probs], [truth], 0.95, torch.tensor([1.0, 0.0, 0.0]))
    assert no_prior[1] == 0  # no prior: 0, not inf


def test_the_scored_images_are_a_fixed_draw_over_the_whole_split():
    """A patched split lists patches tile by tile: the scored sample must reach the last tiles, not only the first
    ones, and be the same draw for every run of the split."""
    names = [f"t{t:02d}@{p}" for t in range(40) for p in range(30)]  # 40 tiles of 30 patches, in tile order
    sample = plq.unlabelled_sample(names, 200)
    assert len(set(sample)) == 200 and set(sample) <= set(names)
    assert len({n.split("@")[0] for n in sample}) >= 35  # names[:200] would cover 7 tiles
    assert sample == plq.unlabelled_sample(list(names), 200)
    assert sorted(plq.unlabelled_sample(names[:5], 200)) == sorted(names[:5])  # fewer than asked: all of them


def test_fixed_crops_cut_the_image_and_its_mask_alike_and_repeat_per_image():
    """Each image's crop is drawn from its own seed: the same crop whatever batch it comes in, mask aligned with
    the image, and a side larger than the image keeps the image's."""
    images = torch.arange(2 * 3 * 10 * 12, dtype=torch.float32).view(2, 3, 10, 12)
    masks = images[:, 0].long()  # the mask carries the first channel's values: alignment is checkable
    x, y = plq.fixed_crops(images, masks, (4, 5), seeds=[7, 8])
    assert x.shape == (2, 3, 4, 5) and y.shape == (2, 4, 5) and torch.equal(x[:, 0].long(), y)
    alone, _ = plq.fixed_crops(images[1:], masks[1:], (4, 5), seeds=[8])
    assert torch.equal(alone[0], x[1])
    start = int(y[1, 0, 0]) - 3 * 10 * 12  # image 1's values start after image 0's: where its crop starts
    top, left = start // 12, start % 12
    assert torch.equal(x[1], images[1, :, top:top + 4, left:left + 5])
    tall, _ = plq.fixed_crops(images, masks, (99, 5), seeds=[1, 2])
    assert tall.shape == (2, 3, 10, 5)


def test_confident_errors_by_hand():
    # five pixels of three classes, threshold 0.9: confident are p0 (true 0 -> 0), p1 (true 1 -> 0), p2 (true 1 -> 0),
    # p3 (true 2 -> 1); p4 (0.5) is not. Confident set 4: 1 -> 0 holds 2/4, 2 -> 1 holds 1/4, right pixels none
    probs = torch.tensor([[0.95, 0.03, 0.02], [0.91, 0.05, 0.04], [0.93, 0.04, 0.03], [0.02, 0.96, 0.02],
                          [0.5, 0.3, 0.2]]).T.reshape(1, 3, 1, 5)
    truth = torch.tensor([[[0, 1, 1, 2, 2]]])
    assert plq.confident_errors([probs], [truth], 0.9, ["a", "b", "c"]) == [("b", "a", 0.5), ("c", "b", 0.25)]
