"""On-device augmentation: geometry shared by image and mask, ids preserved, mixing masks correct."""
import math

import kornia
import pytest
import torch

from semiseg_sdk.augment import (StrongAugment, StrongConfig, ViewConfig, ViewMaker, box_masks, classmix_masks, cutout, mix,
                                 sample_scale_crop_flip, strong_config, warp_view)
from semiseg_sdk.errors import ConfigError


def _coded_batch(b=3, h=40, w=56, classes=5):
    """Image whose pixel values encode the mask: red = 40 * class id, so alignment is checkable after warping."""
    torch.manual_seed(0)
    # blocky labels so that bilinear image sampling inside a block stays exact
    coarse = torch.randint(0, classes, (b, h // 8, w // 8))
    mask = coarse.repeat_interleave(8, 1).repeat_interleave(8, 2)
    image = torch.zeros(b, 3, h, w, dtype=torch.uint8)
    image[:, 0] = (mask * 40).to(torch.uint8)
    image[:, 1] = 200
    valid = torch.ones(b, h, w, dtype=torch.bool)
    return {"image": image, "mask": mask, "valid": valid}


def test_weak_view_keeps_image_and_mask_aligned():
    torch.manual_seed(1)
    vm = ViewMaker(ViewConfig(crop_size=(32, 48), scale_range=(0.5, 2.0)))
    batch = _coded_batch()
    for _ in range(5):
        v = vm.weak(batch)
        inside = v.mask != 255
        assert inside.any()
        # away from block borders the bilinear red channel equals 40 * class id of the nearest-warped mask
        red = v.image[:, 0] * 255
        expected = v.mask.float() * 40
        # interior pixels: the 3x3 neighbourhood in the mask is constant (crop border rows/cols excluded)
        m = torch.nn.functional.pad(v.mask.float()[:, None], (1, 1, 1, 1), value=255.0)
        same = (torch.nn.functional.max_pool2d(m, 3, 1) == -torch.nn.functional.max_pool2d(-m, 3, 1))[:, 0]
        sel = inside & same
        assert sel.sum() > 100
        assert torch.allclose(red[sel], expected[sel], atol=1.0)


def test_mask_values_stay_ids_or_ignore():
    torch.manual_seed(2)
    vm = ViewMaker(ViewConfig(crop_size=(64, 64), scale_range=(0.3, 0.6)))  # small scale forces padding
    batch = _coded_batch(classes=7)
    v = vm.weak(batch)
    values = set(v.mask.unique().tolist())
    assert values <= set(range(7)) | {255}
    assert 255 in values  # padding became ignore
    assert v.mask.dtype == torch.long
    # padded pixels are invalid and black
    assert not v.valid[v.mask == 255].any()
    # pixels deep inside the padding (3x3 neighbourhood all invalid) are black
    deep = ~torch.nn.functional.max_pool2d(v.valid.float()[:, None], 3, 1, 1)[:, 0].bool()
    assert deep.any()
    assert float(v.image.permute(1, 0, 2, 3)[:, deep].abs().max()) == 0.0


def test_flip_and_scale_matrix_geometry():
    sizes = torch.tensor([[10, 20]])
    torch.manual_seed(0)
    m = sample_scale_crop_flip(sizes, (10, 20), scale_range=(1.0, 1.0), flip_p=1.0)
    # identity scale, full crop, flipped: x -> 19 - x, y -> y
    assert torch.allclose(m[0], torch.tensor([[-1.0, 0.0, 19.0], [0.0, 1.0, 0.0]]), atol=1e-5)
    mask = torch.arange(20).repeat(10, 1)[None]
    v = warp_view(torch.zeros(1, 3, 10, 20), mask, torch.ones(1, 10, 20, dtype=torch.bool), m, (10, 20))
    assert torch.equal(v.mask[0, 0], torch.arange(19, -1, -1))


def test_padding_region_of_collated_batch_is_ignored():
    batch = _coded_batch(b=1, h=32, w=32)
    batch["valid"][:, 16:] = False
    batch["mask"][:, 16:] = 255
    vm = ViewMaker(ViewConfig(crop_size=(32, 32), scale_range=(1.0, 1.0), flip_p=0.0))
    v = vm.weak(batch)
    # the valid region (16 rows) is smaller than the crop: at least 16 rows must be ignore
    assert (v.mask == 255).sum() >= 16 * 32
    assert torch.equal(v.valid, v.mask != 255)


def test_strong_view_changes_pixels_not_shape():
    torch.manual_seed(0)
    vm = ViewMaker()
    x = torch.rand(4, 3, 32, 32)
    s = vm.strong(x)
    assert s.shape == x.shape and s.min() >= 0 and s.max() <= 1
    assert not torch.allclose(s, x)


def test_strong_config_overrides_reach_the_ops_and_bad_ones_name_themselves():
    torch.manual_seed(0)
    x = torch.rand(4, 3, 32, 32)
    off = strong_config({"jitter_p": 0.0, "grayscale_p": 0.0, "blur_p": 0.0})
    assert torch.equal(StrongAugment(off)(x), x)  # every op switched off: the image passes unchanged
    # blur only, always on, with a fixed sigma: equals kornia's 5x5 Gaussian of that sigma (reflect border)
    blur = strong_config({"jitter_p": 0.0, "grayscale_p": 0.0, "blur_p": 1.0, "blur_sigma": [0.6, 0.6], "blur_kernel": 5})
    expected = kornia.filters.gaussian_blur2d(x, (5, 5), (0.6, 0.6), border_type="reflect")
    assert torch.allclose(StrongAugment(blur)(x), expected, atol=1e-5)
    assert blur.blur_sigma == (0.6, 0.6) and StrongConfig().blur_kernel == 9  # the default is untouched
    for bad, field in (({"blurr_p": 0.1}, "blurr_p"), ({"blur_kernel": 4}, "blur_kernel"), ({"blur_p": 1.5}, "blur_p"),
                       ({"blur_sigma": [2.0, 1.0]}, "blur_sigma"), ({"blur_sigma": ["a", 1]}, "blur_sigma"),
                       ({"hue": 0.7}, "hue"), ({"contrast": "x"}, "contrast")):
        with pytest.raises(ConfigError, match=field):
            strong_config(bad)


def test_box_masks_area_and_probability():
    torch.manual_seed(0)
    m = box_masks(2000, (32, 32), area=(0.1, 0.3), p=1.0)
    frac = m.float().mean(dim=(1, 2))
    # pixel discretisation of fractional box edges adds at most one row and one column
    assert frac.min() > 0.05 and frac.max() <= 0.3 + 2 * 32 / 1024
    none = box_masks(500, (16, 16), p=0.0)
    assert not none.any()
    half = box_masks(4000, (16, 16), p=0.5).flatten(1).any(1).float().mean()
    assert abs(float(half) - 0.5) < 0.05


def test_classmix_takes_half_of_present_classes():
    torch.manual_seed(0)
    labels = torch.tensor([[0, 1, 2, 3], [4, 4, 5, 255]]).view(2, 1, 4).expand(2, 4, 4).clone()
    m = classmix_masks(labels, num_classes=6)
    # image 0 has 4 classes -> exactly 2 chosen; image 1 has 2 classes -> 1 chosen; ignore never chosen
    chosen0 = labels[0][m[0]].unique()
    chosen1 = labels[1][m[1]].unique()
    assert len(chosen0) == 2 and len(chosen1) == 1
    assert not m[1][labels[1] == 255].any()
    # a class is either fully chosen or not at all
    for b in range(2):
        for c in labels[b].unique().tolist():
            sel = m[b][labels[b] == c]
            assert sel.all() or not sel.any()


def test_mix_and_cutout():
    a = torch.zeros(1, 3, 4, 4)
    b = torch.ones(1, 3, 4, 4)
    m = torch.zeros(1, 4, 4, dtype=torch.bool)
    m[:, :2] = True
    out = mix(a, b, m)
    assert out[:, :, :2].eq(1).all() and out[:, :, 2:].eq(0).all()
    lab = mix(torch.zeros(1, 4, 4, dtype=torch.long), torch.full((1, 4, 4), 3), m)
    assert lab[:, :2].eq(3).all() and lab[:, 2:].eq(0).all()
    img, labels = cutout(b, torch.ones(1, 4, 4, dtype=torch.long), m)
    assert img[:, :, :2].eq(0).all() and labels[:, :2].eq(255).all() and labels[:, 2:].eq(1).all()
