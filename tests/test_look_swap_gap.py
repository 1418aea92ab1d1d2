"""The look-swap diagnostic redraws each scene with its swaps recorded: same pixels as the dataset's item, and the
recorded swaps follow the rate."""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import look_swap_gap as lsg  # noqa: E402

from semiseg_sdk.data import build_dataset  # noqa: E402


def test_redrawn_scenes_match_items_and_record_their_swaps():
    ds = build_dataset("synthetic-driving", split="val", length=8, size=[32, 64])
    scenes = lsg.scenes_with_swaps(ds, [0, 3])
    for (image, mask, _), i in zip(scenes, (0, 3)):
        assert torch.equal(image, ds[i]["image"]) and torch.equal(mask, ds[i]["mask"])
    every = build_dataset("synthetic-driving", split="val", length=8, size=[32, 64], look_swaps=1.0)
    never = build_dataset("synthetic-driving", split="val", length=8, size=[32, 64], look_swaps=0.0)
    assert set(lsg.scenes_with_swaps(every, [1])[0][2]) == set(lsg.KINDS)
    assert lsg.scenes_with_swaps(never, [1])[0][2] == {}


def test_tally_splits_pixels_by_look():
    """A model that predicts road everywhere: road recall 100 % in both looks, building 0 %; counts add up."""
    ds = build_dataset("synthetic-driving", split="val", length=8, size=[32, 64], look_swaps=0.5)
    scenes = lsg.scenes_with_swaps(ds, list(range(8)))

    def all_road(x):
        out = torch.zeros(x.shape[0], 10, *x.shape[-2:])
        out[:, 0] = 10.0
        return out

    counts = lsg.tally(all_road, scenes, threshold=0.95)
    road_pixels = sum(float((m == 0).sum()) for _, m, _ in scenes)
    road = counts["road"]
    assert road["swapped"][0] + road["usual"][0] == road_pixels
    for look in ("swapped", "usual"):
        assert road[look][1] == road[look][0] == road[look][3]
        assert counts["building"][look][1] == 0
