"""Continual loop under domain shift: a day-trained model, one refresh on unlabelled frames of another domain.

    python benchmarks/continual_domain_shift.py --out runs/continual_bench --target dusk
    python benchmarks/continual_domain_shift.py --out runs/continual_bench --target dusk --tag teacher \\
        --adapt '{"infer": "teacher"}'          # another variant, same source run and field frames

On ``synthetic-driving`` at 64 x 128 px, all on CPU:

1. source run: supervised ``fcn`` + ``tiny`` encoder (output stride 8; ``--model/--encoder/--pretrained/--model_args``
   choose another) on 300 labelled day images of the train split, ``--source_steps`` steps (reused when
   ``OUT/source`` is complete: use a new ``--out`` for another source model);
2. store: v0001 = the source model; holdout = 100 day images of the val split (the source domain); probe = 100
   labelled target-domain images of the test split (never trained on: the loop only reports and gates on it);
   replay = the 300 labelled day training images;
3. field: ``--field_images`` target-domain frames of the train split *after* the 300 labelled ones (so never
   labelled anywhere) written as PNG files, as a fleet would upload them;
4. one ``run``: prints target (probe) and source (holdout) mIoU before -> after, the gate decision and timings, and
   writes ``OUT/results-<tag>.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import cv2
import torch
from torch.utils.data import Subset

from semiseg_sdk.config import TrainConfig
from semiseg_sdk.continual import AdaptOptions, RunOptions, init_store, run_refresh
from semiseg_sdk.data import build_dataset
from semiseg_sdk.data.base import SegmentationDataset
from semiseg_sdk.engine import Trainer
from semiseg_sdk.engine.data_setup import TrainData

SIZE = (64, 128)
N_SOURCE = 300


class Cached(SegmentationDataset):
    """Generated scenes kept in memory after their first use (the source run draws each one many times)."""

    def __init__(self, base: SegmentationDataset) -> None:
        self.base, self.info, self.cache = base, base.info, {}

    def __len__(self) -> int:
        return len(self.base)

    def names(self):
        return self.base.names()

    def load(self, index: int):
        if int(index) not in self.cache:
            self.cache[int(index)] = self.base[int(index)]
        return self.cache[int(index)]


def ref(split: str, length: int, domain: str = "day") -> str:
    return f"synthetic-driving:{split},length={length},size={SIZE[0]}x{SIZE[1]},domain={domain}"


def train_source(out: Path, steps: int, model: dict, lr: float) -> Path:
    """Supervised day model (resumed/reused when already trained); ``model``: model, encoder, pretrained, ...."""
    run = out / "source"
    if (run / "best.pt").is_file() and (run / "done").is_file():
        return run
    train = Cached(build_dataset("synthetic-driving", "train", length=N_SOURCE, size=SIZE))
    val = Subset(Cached(build_dataset("synthetic-driving", "val", length=60, size=SIZE)), range(60))
    cfg = TrainConfig(data="synthetic-driving", data_args={"length": N_SOURCE, "size": list(SIZE)}, labelled="all",
                      method="supervised", **model, steps=steps, batch_size=8,
                      crop_size=(64, 64), lr=lr, eval_every=steps, eval_batch_size=20, num_workers=0, out=str(out),
                      name="source", resume=True, log_every=50)
    Trainer(cfg, data=TrainData(train, val, list(range(N_SOURCE)), [])).fit()
    (run / "done").write_text("ok\n")
    return run


def write_field(folder: Path, domain: str, count: int) -> Path:
    """Target-domain frames of train items N_SOURCE.. (unlabelled: only the image is written)."""
    if folder.is_dir() and len(list(folder.glob("*.png"))) == count:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    ds = build_dataset("synthetic-driving", "train", length=N_SOURCE + count, size=SIZE, domain=domain)
    for i in range(N_SOURCE, N_SOURCE + count):
        rgb = ds[i]["image"].permute(1, 2, 0).numpy()
        cv2.imwrite(str(folder / f"{domain}_{i:05d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return folder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/continual_bench")
    p.add_argument("--target", default="dusk", choices=["fog", "dusk", "rain", "night"])
    p.add_argument("--source_steps", type=int, default=400)
    p.add_argument("--source_lr", type=float, default=0.02)
    p.add_argument("--refresh_steps", type=int, default=150)
    p.add_argument("--field_images", type=int, default=160)
    p.add_argument("--adapt", default="{}", help="JSON of AdaptOptions overrides, e.g. '{\"infer\": \"teacher\"}'")
    p.add_argument("--tag", default="default", help="name of this variant's store and result file")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--model", default="fcn")
    p.add_argument("--encoder", default="tiny")
    p.add_argument("--output_stride", type=int, default=8)
    p.add_argument("--pretrained", default=None, help="'imagenet' (packaged EfficientNet-Lite0 weights) or a file")
    p.add_argument("--model_args", default="{}", help='decoder options as JSON, e.g. \'{"channels": 64}\'')
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    source = train_source(out, a.source_steps, {"model": a.model, "encoder": a.encoder, "output_stride": a.output_stride,
                                                "pretrained": a.pretrained, "model_args": json.loads(a.model_args)}, a.source_lr)
    t_source = time.perf_counter() - t0
    field = write_field(out / f"field-{a.target}", a.target, a.field_images)
    reg = out / f"store-{a.target}-{a.tag}"
    shutil.rmtree(reg, ignore_errors=True)
    t1 = time.perf_counter()
    init_store(reg, source, holdout=ref("val", 100), probe=ref("test", 100, a.target),
                  replay=f"synthetic-driving:train,length={N_SOURCE},size={SIZE[0]}x{SIZE[1]}", device="cpu", verbose=False)
    t_init = time.perf_counter() - t1
    adapt = AdaptOptions(**{"steps": a.refresh_steps, "crop_size": (64, 64), **json.loads(a.adapt)})
    t2 = time.perf_counter()
    res = run_refresh(reg, field, adapt, RunOptions(min_images=1, settle_seconds=0, device="cpu", verbose=False))
    t_refresh = time.perf_counter() - t2
    gate = json.loads((reg / res["version"] / "gate.json").read_text())
    before, after = gate["current"], gate["candidate"]
    rows = [("target (probe, %s)" % a.target, "probe"), ("source (holdout, day)", "holdout")]
    print(res["report"])
    print(f"{'set':<24}{'before':>8}{'after':>8}{'delta':>8}")
    for label, key in rows:
        b, c = 100 * before[key]["miou"], 100 * after[key]["miou"]
        print(f"{label:<24}{b:8.2f}{c:8.2f}{c - b:+8.2f}")
    train = json.loads((reg / res["version"] / "version.json").read_text())["train"]
    print(f"gate: {res['status']} ({'; '.join(res['reasons']) or 'no objection'}); refresh {t_refresh:.0f} s "
          f"(training {train['seconds']:.0f} s, {train['steps']} steps), init {t_init:.0f} s, source {t_source:.0f} s; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    result = {"target": a.target, "tag": a.tag, "adapt": {k: v for k, v in vars(adapt).items()},
              "target_before": before["probe"]["miou"], "target_after": after["probe"]["miou"],
              "source_before": before["holdout"]["miou"], "source_after": after["holdout"]["miou"],
              "status": res["status"], "reasons": res["reasons"], "seconds": {"source": t_source, "init": t_init,
              "refresh": t_refresh, "training": train["seconds"]}, "command": " ".join(sys.argv)}
    (out / f"results-{a.target}-{a.tag}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
