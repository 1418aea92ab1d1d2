"""Median time of one training step (forward + cross-entropy backward + SGD step) per registered 2D model.

    python benchmarks/model_step_time.py                       # CPU, batch 4, 256x256, resnet18 + efficientnet_lite0
    python benchmarks/model_step_time.py --device cuda --resnet50 --csv step_times.csv
    # chosen model:encoder pairs, each in a fresh process so its peak memory is its own:
    python benchmarks/model_step_time.py --size 224 --pairs deeplabv3plus:resnet18 dpt:dinov2_vits14

Not run by the test suite. Weights are random (speed does not depend on them). ``peak_mb`` is the process's peak
resident memory (CPU) or the peak of allocated CUDA memory, measured in a fresh process per pair with ``--pairs``.
"""
from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from semiseg_sdk.utils.phase_timer import synchronize  # noqa: E402
from semiseg_sdk.models import build_model, list_models  # noqa: E402
from bench_io import write_csv  # noqa: E402


def step_time(name: str, encoder: str, args: argparse.Namespace) -> Dict[str, object]:
    """Build one model and time ``args.repeats`` training steps after ``args.warmup`` untimed ones."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_model(name, encoder=encoder, num_classes=args.num_classes).to(device).train()
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(args.batch, 3, args.size, args.size, device=device)
    y = torch.randint(0, args.num_classes, (args.batch, args.size, args.size), device=device)
    amp_dtype = torch.bfloat16 if device.type == "cpu" else torch.float16
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp and device.type == "cuda")
    times: List[float] = []
    for i in range(args.warmup + args.repeats):
        synchronize(device)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=amp_dtype, enabled=args.amp):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        synchronize(device)
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    peak_mb = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
               else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"model": name, "encoder": encoder, "output_stride": model.spec["output_stride"],
            "params_m": round(params, 2), "median_ms": round(1000 * statistics.median(times), 1),
            "min_ms": round(1000 * min(times), 1), "peak_mb": round(peak_mb)}


def step_time_in_child(name: str, encoder: str, args: argparse.Namespace) -> Dict[str, object]:
    """:func:`step_time` in a fresh process (its own peak memory, one torch thread setting kept)."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_child, (name, encoder, args, torch.get_num_threads()))


def _child(name: str, encoder: str, args: argparse.Namespace, threads: int) -> Dict[str, object]:
    torch.set_num_threads(threads)
    return step_time(name, encoder, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=256, help="square input side (default 256)")
    parser.add_argument("--num-classes", type=int, default=19)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--resnet50", action="store_true", help="also time the resnet50 encoder")
    parser.add_argument("--encoders", nargs="*", default=None, help="override the encoder list")
    parser.add_argument("--models", nargs="*", default=None, help="subset of models (default: all 2D models)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--amp", action="store_true", help="autocast (bf16 on CPU, fp16 on CUDA)")
    parser.add_argument("--pairs", nargs="*", default=None, metavar="MODEL:ENCODER",
                        help="time these model:encoder pairs instead of models x encoders, each in a fresh process")
    parser.add_argument("--csv", default=None, help="also write the table to this CSV file")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device available")

    encoders = args.encoders or (["resnet18", "efficientnet_lite0"] + (["resnet50"] if args.resnet50 else []))
    models = args.models or list_models(dims=2)
    print(f"training step (forward + backward + SGD) on {args.device} ({torch.get_num_threads()} threads), "
          f"batch {args.batch}, {args.size}x{args.size}, {args.num_classes} classes, amp={args.amp}, "
          f"channels_last={args.channels_last}, median of {args.repeats} after {args.warmup} warm-up steps")
    header = f"{'model':<14} {'encoder':<20} {'OS':>3} {'params(M)':>10} {'median ms':>10} {'min ms':>9} {'peak MB':>8}"
    print(header)
    print("-" * len(header))
    rows = []
    pairs = [tuple(p.split(":", 1)) for p in args.pairs] if args.pairs else [(m, e) for m in models for e in encoders]
    for name, encoder in pairs:
        row = step_time_in_child(name, encoder, args) if args.pairs else step_time(name, encoder, args)
        rows.append(row)
        print(f"{row['model']:<14} {row['encoder']:<20} {row['output_stride']:>3} {row['params_m']:>10} "
              f"{row['median_ms']:>10} {row['min_ms']:>9} {row['peak_mb']:>8}", flush=True)
    if args.csv:
        write_csv(args.csv, rows)


if __name__ == "__main__":
    main()
