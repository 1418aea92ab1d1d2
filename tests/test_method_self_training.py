"""Self-training and ST++: stability score, reliable selection, TTA pseudo-labels, the mixed training step, and the
staged run (every stage recorded, resume skips finished stages)."""
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from semiseg_sdk.augment import ViewConfig, ViewMaker
from semiseg_sdk.config import TrainConfig
from semiseg_sdk.engine import train
from semiseg_sdk.engine import stages
from semiseg_sdk.errors import ConfigError, DataError
from semiseg_sdk.methods import get_method
from semiseg_sdk.methods import self_training as st
from semiseg_sdk.methods.stability import image_stability, map_iou, split_reliable
from semiseg_sdk.models import build_model


def _cfg(tmp_path, method="st++", **kw):
    base = dict(data="synthetic-driving", data_args={"length": 8, "size": [32, 64]}, labelled="1/4", model="unet",
                encoder="tiny", method=method, steps=6, batch_size=2, crop_size=(32, 32), eval_every=2, eval_batch_size=4,
                log_every=1, num_workers=0, out=str(tmp_path), name="run", progress=False, lr=0.01)
    base.update(kw)
    return TrainConfig(**base)


# -- stability score and selection ----------------------------------------------------------------------------------
def test_stability_equals_hand_computed_mean_iou():
    ref = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1]])
    p1 = torch.tensor([[0, 0, 0, 1], [0, 0, 1, 1]])  # class 0: 4/5, class 1: 3/4 -> 0.775
    p2 = torch.tensor([[2, 2, 1, 1], [0, 0, 1, 1]])  # class 0: 2/4, class 1: 4/4, class 2: 0/2 -> 0.5
    assert map_iou(p1, ref, 4) == pytest.approx(0.775)
    assert map_iou(p2, ref, 4) == pytest.approx(0.5)  # class 3 is in neither map: left out, not counted as 0 or 1
    assert image_stability([p1, p2, ref], 4) == pytest.approx((0.775 + 0.5) / 2)
    assert image_stability([ref, ref], 4) == 1.0
    with pytest.raises(ValueError):
        image_stability([ref], 4)


def test_split_reliable_sorts_descending_and_keeps_the_top_half():
    rel, unrel = split_reliable([(10, 0.2), (11, 0.9), (12, 0.5), (13, 0.7), (14, 0.1)], 0.5)
    assert rel == [(11, 0.9), (13, 0.7)] and unrel == [(12, 0.5), (10, 0.2), (14, 0.1)]  # official [:len // 2]
    with pytest.raises(ConfigError, match="reliable_fraction"):
        split_reliable([], 1.0)


class FixedMaps(nn.Module):
    """A stub network: recognises each dataset image and returns a fixed label map for it (as large logits)."""

    size_divisor, num_classes = 32, 3

    def __init__(self, images, maps):
        super().__init__()
        self.images, self.maps = images, maps  # {index: float image}, {index: (H,W) long}

    def forward(self, x):
        out = []
        for img in x:
            idx = next(i for i, ref in self.images.items() if torch.allclose(img, ref))
            out.append(F.one_hot(self.maps[idx], 3).permute(2, 0, 1).float() * 10.0)
        return torch.stack(out)


def test_stpp_picks_the_images_with_the_highest_stability(tmp_path, monkeypatch):
    # whole images: the stub recognises a dataset image, not a window of it (a run's default is windows of its crop)
    run = stages.StagedRun(_cfg(tmp_path, eval_mode="whole"), {"stage1_sup": 1}, st.PSEUDO_TAG)
    assert len(run.unlabelled) == 6
    images = {i: run.data.train[i]["image"].float() / 255.0 for i in run.unlabelled}
    ref = torch.zeros(32, 64, dtype=torch.long)
    ref[:, 32:] = 1  # final snapshot: class 0 left, class 1 right, on every image

    def disagree(d):  # an earlier snapshot predicts class 2 on the first d columns
        m = ref.clone()
        m[:, :d] = 2
        return m

    d1 = dict(zip(run.unlabelled, [0, 16, 4, 24, 8, 2]))  # snapshot 1 columns of disagreement per image
    d2 = dict(zip(run.unlabelled, [0, 8, 12, 24, 0, 30]))  # snapshot 2
    models = {"k1.pt": FixedMaps(images, {i: disagree(d) for i, d in d1.items()}),
              "k2.pt": FixedMaps(images, {i: disagree(d) for i, d in d2.items()}),
              "k3.pt": FixedMaps(images, {i: ref for i in images})}
    monkeypatch.setattr(stages, "load_inference_model", lambda path, map_location: (models[Path(path).name], {}))
    rec = st.select_reliable(run, ["k1.pt", "k2.pt", "k3.pt"], 0.5)

    # by hand: d == 0 -> mIoU 1; else classes 0, 1, 2 have IoU (32 - d) / 32, 1 and 0
    hand = lambda d: 1.0 if d == 0 else ((32 - d) / 32 + 1.0) / 3  # noqa: E731
    expected = {i: (hand(d1[i]) + hand(d2[i])) / 2 for i in run.unlabelled}
    top = sorted(expected, key=lambda i: -expected[i])[:3]
    assert [e["index"] for e in rec["reliable"]] == top
    assert sorted(e["index"] for e in rec["unreliable"]) == sorted(set(run.unlabelled) - set(top))
    for e in rec["reliable"] + rec["unreliable"]:
        assert e["score"] == pytest.approx(expected[e["index"]])
    assert min(e["score"] for e in rec["reliable"]) >= max(e["score"] for e in rec["unreliable"])


# -- TTA pseudo-labels and their storage -----------------------------------------------------------------------------
def test_tta_of_an_equivariant_model_is_its_plain_argmax():
    model = nn.Conv2d(3, 3, 1, bias=False)  # per pixel: flip- and scale-equivariant
    with torch.no_grad():
        model.weight.copy_(torch.eye(3).view(3, 3, 1, 1) * 10.0)
    colours = torch.eye(3)
    cls = torch.tensor([0, 1, 2, 1, 0, 2, 2, 1])  # an asymmetric pattern of 16x8 blocks (so an unflipped bug shows)
    block = cls.view(2, 4).repeat_interleave(16, 0).repeat_interleave(16, 1)  # (32, 64)
    image = colours[block].permute(2, 0, 1)[None]
    plain = model(image).argmax(1)
    assert not torch.equal(plain, plain.flip(-1))
    probs = stages.tta_probs(model, image)
    assert torch.equal(probs.argmax(1), plain)
    assert torch.allclose(probs.sum(1), torch.full_like(probs.sum(1), 10.0), atol=1e-4)  # 5 scales x 2 flips, summed


def test_pseudo_label_files_are_served_as_masks_with_a_tag(tmp_path):
    from semiseg_sdk.data import build_dataset
    from semiseg_sdk.engine.data_setup import TrainData

    base = build_dataset("synthetic-driving", split="train", length=4, size=(32, 64))
    label = torch.randint(0, 10, (32, 64), dtype=torch.uint8)
    stages.write_mask_png(tmp_path / "m" / "000002.png", label.numpy())
    data = stages.with_pseudo_labels(TrainData(base, base, [0], [1, 2, 3]), {2: tmp_path / "m" / "000002.png"}, "tag:")
    assert data.labelled_idx == [0, 2] and data.unlabelled_idx == []  # ceil(1 / 1) copy of the labelled list
    item = data.train[2]
    assert torch.equal(item["mask"], label) and item["name"] == "tag:" + base.names()[2]
    assert torch.equal(data.train[0]["mask"], base[0]["mask"]) and not data.train[0]["name"].startswith("tag:")
    bad = stages.PseudoLabelledSet(base, {1: tmp_path / "missing.png"}, "tag:")
    with pytest.raises(DataError, match="missing.png"):
        bad[1]


# -- the training step ----------------------------------------------------------------------------------------------
def test_step_strong_view_and_cutout_only_on_pseudo_labelled_images(monkeypatch):
    torch.manual_seed(0)
    model = build_model("unet", encoder="tiny", num_classes=4)
    views = ViewMaker(ViewConfig(crop_size=(32, 32), scale_range=(1.0, 1.0), flip_p=0.0))  # weak view = identity
    method = get_method("self-training")(model, 4, views, get_method("self-training").make_config({"cutout_p": 1.0}))
    method.eval()  # BN running statistics, no dropout: predictions do not depend on the batch
    box = torch.zeros(2, 32, 32, dtype=torch.bool)
    box[:, :, :8] = True  # CutOut box: the first 8 columns
    monkeypatch.setattr(st, "box_masks", lambda b, size, p, device: box[:b])
    seen = {}
    model.register_forward_hook(lambda m, inp, out: seen.update(image=inp[0], logits=out))
    x = {"image": torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8), "mask": torch.randint(0, 4, (2, 32, 32)),
         "valid": torch.ones(2, 32, 32, dtype=torch.bool), "name": ["a", st.PSEUDO_TAG + "b"]}
    out = method.training_step(x, None, 0)

    assert torch.allclose(seen["image"][0], x["image"][0].float() / 255, atol=1e-5)  # labelled image: weak view only
    assert not torch.allclose(seen["image"][1, :, :, :8], x["image"][1, :, :, :8].float() / 255)  # noise in the box
    ce = F.cross_entropy(seen["logits"], x["mask"], reduction="none")
    assert out["sup"].item() == pytest.approx(ce[0].mean().item(), rel=1e-5)
    assert out["unsup"].item() == pytest.approx(ce[1, :, 8:].mean().item(), rel=1e-5)  # box labels ignored
    pooled = (ce[0].sum() + ce[1, :, 8:].sum()) / (32 * 32 + 32 * 24)
    assert out["loss"].item() == pytest.approx(pooled.item(), rel=1e-5)
    assert out["pseudo_fraction"].item() == 0.5

    x["name"] = ["a", "b"]  # no pseudo-labelled image (SupOnly): plain supervised cross-entropy
    out = method.training_step(x, None, 0)
    assert out["unsup"].item() == 0.0 and out["loss"].item() == pytest.approx(out["sup"].item())


def test_step_budget_is_shared_by_the_training_stages():
    assert st.stage_steps(10, 3, True) == [3, 3, 4] and sum(st.stage_steps(301, 2, True)) == 301
    assert st.stage_steps(10, 3, False) == [10, 10, 10]
    with pytest.raises(ConfigError, match="checkpoints"):
        get_method("st++").make_config({"checkpoints": 1})


# -- staged runs ----------------------------------------------------------------------------------------------------
def _record(run, stage):
    return json.loads((run / stage / "stage.json").read_text())


def test_self_training_run_records_every_stage(tmp_path):
    res = train(_cfg(tmp_path, method="self-training", steps=4))
    run = Path(res["run_dir"])
    assert set(res) == {"run_dir", "best_miou", "best_step", "final_miou", "steps", "table"} and res["steps"] == 4
    recs = {s: _record(run, s) for s in ("stage1_sup", "stage2_pseudo", "stage3_retrain")}
    assert all(r["complete"] for r in recs.values())
    assert recs["stage1_sup"]["config"]["steps"] == 2 and recs["stage3_retrain"]["config"]["steps"] == 2
    pseudo = recs["stage2_pseudo"]
    assert pseudo["config"]["checkpoint"] == "stage1_sup/best.pt" and pseudo["metrics"]["images"] == 6
    assert all((run / e["file"]).is_file() for e in pseudo["images"])
    assert recs["stage3_retrain"]["data"] == {"labelled": 2, "pseudo_labelled": 6, "batch_size": 4}
    lines = [json.loads(l) for l in (run / "stage3_retrain" / "metrics.jsonl").read_text().splitlines()]
    assert any(l.get("pseudo_fraction", 0) > 0 for l in lines)  # pseudo-labelled images reached the step
    assert res["best_miou"] == recs["stage3_retrain"]["summary"]["best_miou"] and (run / "best.pt").is_file()


def test_stpp_run_records_every_stage_and_resume_skips_finished_ones(tmp_path):
    cfg = _cfg(tmp_path, steps=9, eval_every=3)
    res = train(cfg)
    run = Path(res["run_dir"])
    names = ["stage1_sup", "stage2_select", "stage3_pseudo_reliable", "stage4_retrain_reliable",
             "stage5_pseudo_unreliable", "stage6_retrain_all"]
    recs = {s: _record(run, s) for s in names}
    assert recs["stage1_sup"]["snapshots"] == [f"stage1_sup/snapshot_{k}.pt" for k in (1, 2, 3)]
    assert all((run / p).is_file() for p in recs["stage1_sup"]["snapshots"])
    sel = recs["stage2_select"]
    reliable = [e["index"] for e in sel["reliable"]]
    unreliable = [e["index"] for e in sel["unreliable"]]
    assert len(reliable) == 3 and len(unreliable) == 3 and all(0.0 <= e["score"] <= 1.0 for e in sel["reliable"])
    assert [e["index"] for e in recs["stage3_pseudo_reliable"]["images"]] == reliable
    assert recs["stage3_pseudo_reliable"]["config"]["checkpoint"] == "stage1_sup/best.pt"
    assert [e["index"] for e in recs["stage5_pseudo_unreliable"]["images"]] == unreliable
    assert recs["stage5_pseudo_unreliable"]["config"]["checkpoint"] == "stage4_retrain_reliable/best.pt"
    assert recs["stage4_retrain_reliable"]["data"]["pseudo_labelled"] == 3
    assert recs["stage6_retrain_all"]["data"]["pseudo_labelled"] == 6
    assert json.loads((run / "config.json").read_text())["stage_steps"] == {
        "stage1_sup": 3, "stage4_retrain_reliable": 3, "stage6_retrain_all": 3}

    with pytest.raises(ConfigError, match="--resume"):
        train(cfg)
    # interrupt the last stage: its record is gone, its last.pt stays; earlier stages must not run again
    (run / "stage6_retrain_all" / "stage.json").unlink()
    before = {s: (run / s / "stage.json").stat().st_mtime_ns for s in names[:-1]}
    sup_metrics = (run / "stage1_sup" / "metrics.jsonl").read_text()
    again = train(TrainConfig(**{**cfg.to_dict(), "resume": True}))
    assert {s: (run / s / "stage.json").stat().st_mtime_ns for s in names[:-1]} == before
    assert (run / "stage1_sup" / "metrics.jsonl").read_text() == sup_metrics
    assert _record(run, "stage6_retrain_all")["complete"] and again["best_miou"] == res["best_miou"]
