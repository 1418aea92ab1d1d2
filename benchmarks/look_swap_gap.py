"""Where synthetic-driving's label gap lives: surfaces that wear a rare look (``driving_looks.MIMICS``) vs the usual one.

For each run folder, on the val images and on the run's own unlabelled train images (its split.json), per surface
kind that can swap its look (building, road, sidewalk, terrain, vegetation, car): the pixel recall of the kind in
scenes where it wears another kind's look ("swapped") and where it does not ("usual"); on the unlabelled images also
the share of those pixels whose top softmax reaches ``--threshold`` and how many of those are right, i.e. what a
pseudo-labelling teacher would teach there. If a 1/16 model is far behind the all-label one on swapped surfaces
only, and confidently wrong on them, consistency with its pseudo-labels cannot close the gap.

    python benchmarks/look_swap_gap.py bench/mimic7200/116/runs/synthetic-driving-1of16-supervised-s0-6f88e0d \
        bench/mimic7200/all/runs/synthetic-driving-all-supervised-s0-6f88e0d --images 200
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List, Tuple

import torch

from semiseg_sdk.data import build_dataset
from semiseg_sdk.data.splits import load_split
from semiseg_sdk.data.synthetic import driving_ground
from semiseg_sdk.data.synthetic.driving_looks import DRIVING_INFO, MIMICS
from semiseg_sdk.models.checkpoint import load_inference_model
from semiseg_sdk.data import run_dataset_kwargs
from semiseg_sdk.models.checkpoint import run_config

KINDS = list(MIMICS)


def scenes_with_swaps(ds, indices: List[int]) -> List[Tuple[torch.Tensor, torch.Tensor, Dict[str, str]]]:
    """(image uint8 (3,H,W), mask (H,W), the scene's look swaps) of each index, drawn again with the swaps recorded."""
    record: List[Dict[str, str]] = []
    original = driving_ground.draw_swaps

    def recording(app, rate):
        record.append(original(app, rate))
        return record[-1]

    driving_ground.draw_swaps = recording
    try:
        out = []
        for i in indices:
            image, mask = ds.generate_arrays(i)
            out.append((torch.from_numpy(image).permute(2, 0, 1), torch.from_numpy(mask), record[-1]))
        return out
    finally:
        driving_ground.draw_swaps = original


def tally(model, scenes, threshold: float, batch: int = 20) -> Dict[str, Dict[str, List[float]]]:
    """Per kind and look ("swapped" / "usual"): [pixels, correct, confident, confident and correct]."""
    counts = {k: {"swapped": [0.0] * 4, "usual": [0.0] * 4} for k in KINDS}
    with torch.no_grad():
        for s in range(0, len(scenes), batch):
            chunk = scenes[s: s + batch]
            x = torch.stack([img for img, _, _ in chunk]).float() / 255
            conf, pred = model(x).softmax(1).max(1)
            for (_, mask, swaps), p, c in zip(chunk, pred, conf):
                for kind in KINDS:
                    k = DRIVING_INFO.classes.index(kind)
                    is_k = mask.long() == k
                    sure = is_k & (c >= threshold)
                    row = counts[kind]["swapped" if kind in swaps else "usual"]
                    row[0] += float(is_k.sum())
                    row[1] += float((is_k & (p == k)).sum())
                    row[2] += float(sure.sum())
                    row[3] += float((sure & (p == k)).sum())
    return counts


def pct(a: float, b: float) -> str:
    return f"{100 * a / b:.0f}" if b else "-"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="synthetic-driving run folders (best.pt or last.pt, config.json, split.json)")
    p.add_argument("--images", type=int, default=200, help="val images, and unlabelled train images, per run")
    p.add_argument("--threshold", type=float, default=0.95)
    p.add_argument("--json", default=None, help="also write the counts here")
    args = p.parse_args()
    results = {}
    print("cells: recall of the kind's pixels, % (swapped look / usual look); unlabelled also: % confident / % of "
          f"those right (threshold {args.threshold})")
    for run in map(Path, args.runs):
        model, ckpt = load_inference_model(run)
        cfg = run_config(ckpt)
        if cfg.get("data") != "synthetic-driving":
            raise SystemExit(f"{run}: trained on {cfg.get('data')!r}; look swaps exist in synthetic-driving only")
        kw = run_dataset_kwargs(cfg)
        val = build_dataset("synthetic-driving", split="val", **kw)
        train = build_dataset("synthetic-driving", split="train", **kw)
        index = {n: i for i, n in enumerate(train.names())}
        unlabelled = [index[n] for n in load_split(run / "split.json", train.names()).unlabelled[: args.images]]
        sets = {"val": (val, list(range(min(args.images, len(val))))), "unlabelled": (train, unlabelled)}
        results[run.name] = {}
        for name, (ds, idx) in sets.items():
            counts = tally(model, scenes_with_swaps(ds, idx), args.threshold)
            results[run.name][name] = counts
            cells = []
            for kind in KINDS:
                sw, us = counts[kind]["swapped"], counts[kind]["usual"]
                cell = f"{kind} {pct(sw[1], sw[0])}/{pct(us[1], us[0])}"
                if name == "unlabelled":
                    cell += f" conf {pct(sw[2], sw[0])}/{pct(us[2], us[0])} right {pct(sw[3], sw[2])}/{pct(us[3], us[2])}"
                cells.append(cell)
            print(f"{run.name} {name}: " + "; ".join(cells), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
