"""Evaluation: every image at its own size (the score does not depend on the batch size), "auto" chooses per image,
and the sliding window runs one row of windows at a time with the same labels as the whole-probability version."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from semiseg_sdk.engine import evaluate, evaluator
from semiseg_sdk.engine.sliding_window import predict_sliding, sliding_label_bands
from semiseg_sdk.errors import ConfigError
from semiseg_sdk.models import build_model


class Items(torch.utils.data.Dataset):
    """Random images and masks of the given sizes."""

    def __init__(self, sizes, seed=0):
        gen = torch.Generator().manual_seed(seed)
        self.items = [{"image": torch.randint(0, 256, (3, h, w), generator=gen, dtype=torch.uint8),
                       "mask": torch.randint(0, 3, (h, w), generator=gen).to(torch.uint8)} for h, w in sizes]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = build_model("unet", encoder="tiny", num_classes=3).eval()
    with torch.no_grad():
        net.classifier.weight.mul_(30.0)  # logits far apart: every class is predicted somewhere
    return net


def test_banded_sliding_labels_equal_the_whole_probability_version(model):
    image = torch.randint(0, 256, (2, 3, 100, 70), dtype=torch.uint8)
    expected = predict_sliding(model, image.float() / 255, 3, (32, 32), (21, 21), 32).argmax(1)
    got = torch.zeros_like(expected)
    rows = []
    for row, labels in sliding_label_bands(model, image, 3, (32, 32), (21, 21), 32):
        got[:, row: row + labels.shape[1]] = labels
        rows.append((row, labels.shape[1]))
    assert torch.equal(got, expected)
    assert len(rows) > 2 and sum(n for _, n in rows) == 100  # several bands that tile the image exactly


def test_the_score_does_not_depend_on_the_batch_size(model):
    data = Items([(32, 32), (40, 56), (32, 32), (64, 40), (40, 56)])
    scores = [evaluate(model, data, 3, mode="whole", batch_size=b)["confusion"] for b in (1, 2, 5)]
    assert all(np.array_equal(scores[0], s) for s in scores[1:])


def test_auto_slides_over_the_images_larger_than_the_window_only(model):
    small, large = [(32, 32), (24, 32)], [(64, 96)]
    mixed = Items(small + large)
    auto = evaluate(model, mixed, 3, mode="auto", window=(32, 32), batch_size=3)["confusion"]
    whole_small = evaluate(model, torch.utils.data.Subset(mixed, [0, 1]), 3, mode="whole")["confusion"]
    slide_large = evaluate(model, torch.utils.data.Subset(mixed, [2]), 3, mode="slide", window=(32, 32))["confusion"]
    whole_large = evaluate(model, torch.utils.data.Subset(mixed, [2]), 3, mode="whole")["confusion"]
    assert np.array_equal(auto, whole_small + slide_large)
    assert not np.array_equal(slide_large, whole_large)  # the choice is visible in the result
    assert evaluator.image_mode("auto", 32, 33, (32, 32)) == "slide" and evaluator.image_mode("auto", 32, 32, (32, 32)) == "whole"


def test_a_misspelt_mode_fails_before_anything_loads(tmp_path):
    from semiseg_sdk.engine import evaluate_checkpoint

    with pytest.raises(ConfigError, match="--mode 'sliding': choose whole, slide or auto"):
        evaluate_checkpoint(str(tmp_path / "missing.pt"), mode="sliding")
