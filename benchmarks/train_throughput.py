"""Training throughput per method: ms per step, images per second and where a step's time goes.

    python benchmarks/train_throughput.py                                    # auto device, 8+8 images, 128x128, 10 steps
    python benchmarks/train_throughput.py --device cuda --amp --channels_last --csv throughput.csv
    python benchmarks/train_throughput.py --device cuda --amp --compile --methods supervised unimatch
    python benchmarks/train_throughput.py --device cpu --steps 3 --warmup 1 --crop 64 --model_args '{"channels": 64}'

Each method trains deeplabv3plus + efficientnet_lite0 (random weights) on synthetic-driving (256 train images of
128x256) through the SDK's own Trainer.run_step, at ``--batch`` labelled + ``--unlabelled_batch`` unlabelled
images (supervised uses only the labelled ones). After ``--warmup`` untimed steps, ``--steps`` steps are timed
(CUDA synchronised) with a PhaseTimer: data = waiting for the loaders + host-to-device copy, augmentation = every
augment entry point (also those called inside a method's step), forward+backward = the rest of the method's step and
the backward pass, optimiser = optimiser step, scaler and after-step hooks (EMA updates). Phase shares are of the mean
step time; the remainder is bookkeeping (learning rate, loss read-back). Not run by the test suite.

Targets: augmentation <= 10 % of a step; a UniMatch step <= 3.5x a supervised step at the same batch.
"""
from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from semiseg_sdk.config import TrainConfig  # noqa: E402
from semiseg_sdk.engine import Trainer  # noqa: E402
from semiseg_sdk.utils.phase_timer import PhaseTimer, synchronize  # noqa: E402
from semiseg_sdk.utils.precision import resolve_device  # noqa: E402
from bench_io import write_csv  # noqa: E402

PHASES = {"data": "data %", "augmentation": "aug %", "forward_backward": "fwd+bwd %", "optimizer": "optim %"}
AUG_TARGET, UNIMATCH_TARGET = 0.10, 3.5


def measure(method: str, args: argparse.Namespace, out: str) -> Dict[str, object]:
    """Build a Trainer for ``method``, run the warm-up steps, then time ``args.steps`` steps phase by phase."""
    cfg = TrainConfig(data="synthetic-driving", data_args={"length": 256, "val_length": 8, "size": [128, 256]},
                      labelled=args.labelled, model=args.model, encoder=args.encoder, model_args=json.loads(args.model_args),
                      method=method, steps=args.warmup + args.steps, batch_size=args.batch,
                      unlabelled_batch_size=args.unlabelled_batch, crop_size=(args.crop, args.crop), amp=args.amp,
                      channels_last="on" if args.channels_last else "off", compile=args.compile, eval_every=10**9,
                      log_every=10**9, num_workers=args.workers, device=args.device, out=out, name=method, progress=False)
    trainer = Trainer(cfg)
    for _ in range(args.warmup):
        trainer.run_step()
    timer, times = PhaseTimer(trainer.device), []
    with timer.activate():
        for _ in range(args.steps):
            synchronize(trainer.device)
            start = time.perf_counter()
            trainer.run_step()
            synchronize(trainer.device)
            times.append(time.perf_counter() - start)
    images = args.batch + (args.unlabelled_batch if trainer.u_iter is not None else 0)
    median, mean = statistics.median(times), statistics.fmean(times)
    row: Dict[str, object] = {"method": method, "ms_per_step": round(1000 * median, 1), "img_per_s": round(images / median, 1)}
    for phase in PHASES:
        row[f"{phase}_ms"] = round(1000 * timer.totals.get(phase, 0.0) / args.steps, 1)  # per-step mean
        row[f"{phase}_pct"] = round(100 * timer.totals.get(phase, 0.0) / args.steps / mean, 1)
    del trainer  # stops the loader workers before the next method starts its own
    gc.collect()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["supervised", "fixmatch", "unimatch", "cps", "psmt"])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    parser.add_argument("--batch", type=int, default=8, help="labelled images per step (default 8)")
    parser.add_argument("--unlabelled_batch", type=int, default=8, help="unlabelled images per step (default 8)")
    parser.add_argument("--crop", type=int, default=128, help="square training crop side (default 128)")
    parser.add_argument("--labelled", default="1/8", help="labelled share of the 256 images (default 1/8)")
    parser.add_argument("--model", default="deeplabv3plus")
    parser.add_argument("--encoder", default="efficientnet_lite0")
    parser.add_argument("--model_args", default="{}", help='decoder options as JSON, e.g. \'{"channels": 64}\'')
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    parser.add_argument("--amp", nargs="?", const="auto", default="off", choices=["off", "auto", "bf16", "fp16"],
                        help="autocast: --amp = auto (bf16/fp16 on CUDA, off on CPU); default off")
    parser.add_argument("--channels_last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the student network")
    parser.add_argument("--workers", type=int, default=2, help="data loader workers per stream (default 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", default=None, help="folder for the run folders (default: a temporary folder)")
    parser.add_argument("--csv", default=None, help="also write the table to this CSV file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"torch {torch.__version__}, device {device} ({name}), {torch.get_num_threads()} threads, {args.workers} workers")
    print(f"{args.model} + {args.encoder} {args.model_args}, batch {args.batch} labelled + {args.unlabelled_batch} unlabelled, "
          f"{args.crop}x{args.crop} crops, amp={args.amp}, channels_last={args.channels_last}, compile={args.compile}, "
          f"median of {args.steps} steps after {args.warmup} warm-up steps")
    rows: List[Dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods:
            rows.append(measure(method, args, args.out or tmp))
            print(f"  {method}: {rows[-1]['ms_per_step']} ms/step", flush=True)
    base = next((r["ms_per_step"] for r in rows if r["method"] == "supervised"), None)
    for r in rows:
        r["vs_supervised"] = round(r["ms_per_step"] / base, 2) if base else None

    print()
    print("| method | ms/step | img/s | " + " | ".join(PHASES.values()) + " | vs supervised |")
    print("|---|---:|---:|" + "---:|" * len(PHASES) + "---:|")
    for r in rows:
        shares = " | ".join(f"{r[f'{p}_pct']}" for p in PHASES)
        rel = f"{r['vs_supervised']}x" if r["vs_supervised"] is not None else "-"
        print(f"| {r['method']} | {r['ms_per_step']} | {r['img_per_s']} | {shares} | {rel} |")
    print()
    worst = max(rows, key=lambda r: r["augmentation_pct"])
    met = worst["augmentation_pct"] <= 100 * AUG_TARGET
    print(f"target augmentation <= {100 * AUG_TARGET:.0f} % of a step: {'met' if met else 'NOT met'} "
          f"(highest: {worst['method']} {worst['augmentation_pct']} %)")
    uni = next((r for r in rows if r["method"] == "unimatch"), None)
    if uni is None or base is None:
        print(f"target unimatch step <= {UNIMATCH_TARGET}x supervised: not measured (needs both methods)")
    else:
        met = uni["vs_supervised"] <= UNIMATCH_TARGET
        print(f"target unimatch step <= {UNIMATCH_TARGET}x supervised: {'met' if met else 'NOT met'} ({uni['vs_supervised']}x)")
    if args.csv:
        write_csv(args.csv, rows)


if __name__ == "__main__":
    main()
