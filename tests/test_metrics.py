"""Metrics against hand-computed confusion matrices."""
import math

import numpy as np
import pytest
import torch

from semiseg_sdk.engine.metrics import ConfusionMatrix, format_table, metrics_from_confusion


def test_confusion_matrix_by_hand():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 1]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 0, 1]])
    cm = ConfusionMatrix(3)
    cm.update(pred, target)
    expected = np.array([[1, 1, 0], [0, 3, 0], [1, 0, 1]])
    assert (cm.mat.numpy() == expected).all()
    m = cm.compute(["a", "b", "c"])
    # IoU a: 1/(2+2-1)=1/3, b: 3/(3+4-3)=3/4, c: 1/(2+1-1)=1/2
    assert m["iou"]["a"] == pytest.approx(1 / 3)
    assert m["iou"]["b"] == pytest.approx(3 / 4)
    assert m["iou"]["c"] == pytest.approx(1 / 2)
    assert m["miou"] == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3)
    assert m["aacc"] == pytest.approx(5 / 7)
    assert m["acc"]["c"] == pytest.approx(0.5)
    assert m["pixels"] == 7


def test_absent_class_is_nan_and_left_out_of_mean():
    mat = np.array([[4, 0, 0], [0, 2, 0], [0, 0, 0]])
    m = metrics_from_confusion(mat)
    assert math.isnan(m["iou"]["class_2"])
    assert m["miou"] == pytest.approx(1.0)
    assert "n/a" in format_table(m)


def test_update_rejects_shape_mismatch_and_out_of_range():
    cm = ConfusionMatrix(2)
    with pytest.raises(ValueError, match="shape"):
        cm.update(torch.zeros(2, 2), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="class 5"):
        cm.update(torch.zeros(1, 2, dtype=torch.long), torch.tensor([[0, 5]]))
