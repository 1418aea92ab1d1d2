"""In-memory item cache: same items as the dataset, generated once, bounded by its byte budget."""
import torch

from semiseg_sdk.data import build_dataset
from semiseg_sdk.data.item_cache import CachedDataset, item_bytes


class CountingDataset(torch.utils.data.Dataset):
    def __init__(self, base):
        self.base, self.calls = base, 0

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        self.calls += 1
        return self.base[i]


def test_cached_items_equal_generated_ones_and_are_made_once():
    base = CountingDataset(build_dataset("synthetic-driving", split="train", length=6, size=(32, 64)))
    cached = CachedDataset(base, max_bytes=2**20)
    first = [cached[i] for i in range(6)]
    again = [cached[i] for i in range(6)]
    assert base.calls == 6
    for a, b, i in zip(first, again, range(6)):
        ref = base.base[i]
        assert torch.equal(a["image"], ref["image"]) and torch.equal(b["mask"], ref["mask"]) and b["name"] == ref["name"]
    again[0]["image"] = None  # a caller replacing an entry does not touch the cache
    assert cached[0]["image"] is not None
    direct = CachedDataset(base.base, max_bytes=2**20)  # the wrapped dataset's info and names show through
    assert direct.info.name == "synthetic-driving" and direct.names() == base.base.names()


def test_cache_stops_at_its_byte_budget():
    base = CountingDataset(build_dataset("synthetic-driving", split="train", length=5, size=(32, 64)))
    one = item_bytes(base.base[0])
    cached = CachedDataset(base, max_bytes=2 * one)
    for _ in range(2):
        for i in range(5):
            cached[i]
    assert len(cached.items) == 2 and cached.bytes_held == 2 * one
    assert base.calls == 2 + 3 * 2  # two cached items made once, the other three on every read
