"""Inference latency: PyTorch eager (and torch.compile) vs ONNX Runtime per provider, per batch and image size.

    python benchmarks/latency.py --quick --threads 2                 # short CPU run
    python benchmarks/latency.py --device cuda --csv latency.csv     # adds 1024x2048, GPU providers, fp16
    python benchmarks/latency.py --checkpoint runs/exp1              # a trained model instead of a fresh one

Default model: ``deeplabv3plus`` + ``efficientnet_lite0``, the deployment default (the pairing ``semiseg demo``
trains). Every timing is end to end from a host float32 batch to host logits (the host<->device copies are
inside the timed region on GPU, for PyTorch and ONNX Runtime alike). Sizes are padded up to the model's size
divisor, as the runtime does. The table also gives each run's achieved GFLOP/s (2 x conv/linear MACs, counted
with forward hooks) as a fraction of the machine's measured fp32 matmul throughput, its practical ceiling.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "export"), str(ROOT / "serving")]  # run from a source checkout too

from semiseg_export import export_model  # noqa: E402
from semiseg_serving.session import OnnxSession, PREFERENCE  # noqa: E402
from bench_io import write_csv  # noqa: E402


COLUMNS = ("backend", "precision", "batch", "size", "median_ms", "p90_ms", "ms_per_image", "gflops",
           "pct_of_matmul", "speedup_vs_eager")


def count_macs(model: nn.Module, height: int, width: int) -> int:
    """Multiply-accumulates of one image through every Conv2d / ConvTranspose2d / Linear (forward hooks)."""
    total = [0]

    def hook(mod: nn.Module, inp: Tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        if isinstance(mod, nn.Linear):
            total[0] += out.numel() * mod.in_features
        elif isinstance(mod, nn.ConvTranspose2d):
            total[0] += inp[0].numel() * mod.out_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
        else:
            total[0] += out.numel() * mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    device = next(model.parameters()).device
    with torch.inference_mode():
        model(torch.zeros(1, 3, height, width, device=device))
    for h in handles:
        h.remove()
    return total[0]


def matmul_gflops(device: str, dtype: torch.dtype = torch.float32, n: int = 2048, repeats: int = 5) -> float:
    """Best-of-``repeats`` GFLOP/s of an n x n matmul: the practical compute ceiling of this machine."""
    a = torch.rand(n, n, device=device, dtype=dtype)
    b = torch.rand(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    a @ b
    sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - start)
    return 2.0 * n ** 3 / best / 1e9


def time_round_robin(fns: Dict[str, Callable[[], object]], warmup: int, runs: int) -> Dict[str, object]:
    """Seconds per call of each function, or the exception that stopped it.

    The functions are called in turn within each run (A B C, A B C, ...), so load from other processes on a
    shared machine hits every backend alike instead of whichever happened to run during a busy minute.
    """
    results: Dict[str, object] = {}
    live = {}
    for key, fn in fns.items():
        try:
            for _ in range(warmup):
                fn()
            live[key], results[key] = fn, []
        except Exception as exc:  # e.g. torch.compile without a working compiler
            results[key] = exc
    for _ in range(runs):
        for key, fn in live.items():
            start = time.perf_counter()
            fn()
            results[key].append(time.perf_counter() - start)  # type: ignore[union-attr]
    return results


def torch_runner(model: nn.Module, device: str, dtype: torch.dtype = torch.float32
                 ) -> Callable[[np.ndarray], np.ndarray]:
    """Host float32 batch -> host float32 logits through a PyTorch module (copies included)."""
    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(batch).to(device, dtype)).float().cpu().numpy()
    return run


def parse_size(text: str) -> Tuple[int, int]:
    h, w = text.lower().split("x")
    return int(h), int(w)


def load_model(args: argparse.Namespace) -> Tuple[nn.Module, Optional[Dict[str, object]]]:
    """The network to time and its loaded checkpoint (None for a freshly built, untrained model)."""
    from semiseg_sdk.models import build_model

    if args.checkpoint:
        from semiseg_sdk.models.checkpoint import load_inference_model

        return load_inference_model(args.checkpoint)
    torch.manual_seed(0)
    model = build_model(args.model, encoder=args.encoder, num_classes=args.num_classes, **json.loads(args.model_args))
    return model.eval(), None


def build_backends(model: nn.Module, args: argparse.Namespace, workdir: Path,
                   checkpoint: Optional[Dict[str, object]] = None
                   ) -> List[Tuple[str, str, Callable[[np.ndarray], np.ndarray]]]:
    """(backend name, precision, run function) for every configuration to time; ``checkpoint`` (the loaded one the
    model came from) calibrates the int8 variant."""
    device = args.device
    backends: List[Tuple[str, str, Callable[[np.ndarray], np.ndarray]]] = []
    eager = model.to(device).eval()
    backends.append(("torch-eager", "fp32", torch_runner(eager, device)))
    if device == "cuda":
        backends.append(("torch-eager", "fp16", torch_runner(copy.deepcopy(eager).half(), device, torch.float16)))
    if args.compile:
        backends.append(("torch-compile", "fp32", torch_runner(torch.compile(eager), device)))
    d = model.size_divisor
    check = [(-(-64 // d) * d, -(-96 // d) * d)]
    fp32_file, fp16_file = workdir / "model.onnx", workdir / "model_fp16.onnx"
    export_model(model, str(fp32_file), check_sizes=check, verbose=False)  # works on a CPU copy
    import onnxruntime as ort

    available = ort.get_available_providers()
    providers = args.providers or ([p for p in PREFERENCE if p in available and p != "CPUExecutionProvider"]
                                   if device == "cuda" else ["CPUExecutionProvider"])
    for provider in providers:
        short = provider.replace("ExecutionProvider", "").lower()
        session = OnnxSession(fp32_file, [provider], intra_op_threads=args.threads, optimization=args.optimization)
        backends.append((f"ort-{short}", "fp32", session.run))
        if provider != "CPUExecutionProvider" or args.fp16_cpu:
            if not fp16_file.exists():
                export_model(model, str(fp16_file), fp16=True, check_sizes=check, verbose=False)
            session16 = OnnxSession(fp16_file, [provider], intra_op_threads=args.threads,
                                    optimization=args.optimization)
            backends.append((f"ort-{short}", "fp16", session16.run))
        if provider == "TensorrtExecutionProvider":
            trt = OnnxSession(fp32_file, [provider], trt_fp16=True, trt_cache_dir=str(workdir / "trt"))
            backends.append(("ort-tensorrt", "trt-fp16", trt.run))
    if args.variants:  # what the CPU figures depend on: memory layout, threads, graph optimisation, onnxslim
        cl = copy.deepcopy(eager).to(memory_format=torch.channels_last)
        backends.append(("torch-eager-nhwc", "fp32", lambda b: torch_runner(cl, device)(b)))
        raw_file = workdir / "model_noslim.onnx"
        export_model(model, str(raw_file), simplify=False, check_sizes=check, verbose=False)
        for label, path, threads, level in (("ort-cpu-noslim", raw_file, args.threads, "all"),
                                            ("ort-cpu-basic", fp32_file, args.threads, "basic"),
                                            ("ort-cpu-extended", fp32_file, args.threads, "extended"),
                                            ("ort-cpu-1thread", fp32_file, 1, "all")):
            session = OnnxSession(path, ["CPUExecutionProvider"], intra_op_threads=threads, optimization=level)
            backends.append((label, "fp32", session.run))
        int8_file = quantize_for_timing(fp32_file, workdir, check[0], checkpoint, getattr(model, "size_divisor", 32))
        session = OnnxSession(int8_file, ["CPUExecutionProvider"], intra_op_threads=args.threads)
        backends.append(("ort-cpu", "int8" if args.checkpoint else "int8-timing-only", session.run))
    return backends


def quantize_for_timing(fp32_file: Path, workdir: Path, size: Tuple[int, int], checkpoint: Optional[Dict[str, object]],
                        size_divisor: int = 32) -> Path:
    """The export's own int8 quantisation (``semiseg export --int8``: same ops, same settings). Calibrated on 8 images
    of the checkpoint's validation split when a trained run is timed, else on 4 random images: then its SPEED is
    what int8 gives, its accuracy is not representative."""
    import onnx
    from semiseg_export.int8 import Calibration, load_calibration, quantize_int8

    if checkpoint:
        calibration = load_calibration(None, 8, size_divisor, checkpoint)
    else:
        rng = np.random.default_rng(0)
        calibration = Calibration("random", [rng.random((1, 3, *size), dtype=np.float32) for _ in range(4)], [size] * 4)
    out = workdir / "model_int8.onnx"
    onnx.save(quantize_int8(onnx.load(str(fp32_file)), calibration), str(out))
    return out


def main(argv: Optional[Sequence[str]] = None) -> List[Dict[str, object]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="deeplabv3plus")
    p.add_argument("--encoder", default="efficientnet_lite0")
    p.add_argument("--model-args", default="{}", help='decoder options as JSON, e.g. \'{"channels": 64}\'')
    p.add_argument("--num-classes", type=int, default=19)
    p.add_argument("--checkpoint", help="run folder or .pt file (overrides --model/--encoder)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None, help="torch and onnxruntime intra-op threads")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--sizes", type=parse_size, nargs="+", default=None, help="HxW (default 360x480 720x960)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--quick", action="store_true", help="1 warm-up, 5 runs, 360x480 only, no torch.compile")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="also time torch.compile (default: on, off with --quick: compiling takes minutes on CPU)")
    p.add_argument("--providers", nargs="+", default=None, help="onnxruntime providers (default: per device)")
    p.add_argument("--fp16-cpu", action="store_true", help="also time the fp16 ONNX file on the CPU provider")
    p.add_argument("--variants", action="store_true",
                   help="also time channels-last eager, ORT CPU without onnxslim / with lower graph optimisation "
                        "levels / with 1 thread, and an int8 (static QDQ) ORT model for speed only")
    p.add_argument("--optimization", default="all", choices=["none", "basic", "extended", "all"])
    p.add_argument("--csv", default=None, help="write the rows to this CSV file")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available")
    if args.threads:
        torch.set_num_threads(args.threads)
    args.threads = args.threads or torch.get_num_threads()
    warmup, runs = (1, 5) if args.quick else (args.warmup, args.runs)
    args.compile = (not args.quick) if args.compile is None else args.compile
    sizes = args.sizes or ([(360, 480)] if args.quick else [(360, 480), (720, 960)])
    if args.device == "cuda" and not args.sizes and not args.quick:
        sizes.append((1024, 2048))

    model, checkpoint = load_model(args)
    d = model.size_divisor
    sizes = [(-(-h // d) * d, -(-w // d) * d) for h, w in sizes]
    peak = matmul_gflops(args.device)
    macs = {s: count_macs(model.to(args.device), *s) for s in sizes}
    spec = getattr(model, "spec", {})
    print(f"model {spec.get('name')} + {spec.get('encoder')}: {sum(t.numel() for t in model.parameters()) / 1e6:.2f} M "
          f"parameters, size divisor {d}; torch {torch.__version__}, device {args.device}, threads {args.threads}, "
          f"{platform.processor() or platform.machine()}, load average {os.getloadavg()[0]:.2f}")
    for s, m in macs.items():
        print(f"  {s[0]}x{s[1]}: {m / 1e9:.2f} GMACs per image ({2 * m / 1e9:.2f} GFLOP)")
    print(f"  fp32 matmul 2048^3: {peak:.1f} GFLOP/s (the ceiling each row is compared with)")

    rows: List[Dict[str, object]] = []
    print(" | ".join(f"{c:>16}" for c in COLUMNS))
    with tempfile.TemporaryDirectory(prefix="semiseg-bench-") as tmp:
        backends = build_backends(model, args, Path(tmp), checkpoint)
        for (h, w) in sizes:
            for batch in args.batches:
                x = np.random.default_rng(0).random((batch, 3, h, w), dtype=np.float32)
                timed = time_round_robin({(n, pr): (lambda run=run: run(x)) for n, pr, run in backends},
                                         warmup, runs)
                eager = timed.get(("torch-eager", "fp32"))
                eager_ms = 1000 * float(np.median(eager)) if isinstance(eager, list) else None
                for (name, precision), times in timed.items():
                    if isinstance(times, Exception):
                        print(f"{name} {precision} b{batch} {h}x{w}: FAILED ({type(times).__name__}: "
                              f"{str(times).splitlines()[0][:160] if str(times) else ''})")
                        continue
                    med, p90 = 1000 * float(np.median(times)), 1000 * float(np.percentile(times, 90))
                    gflops = 2 * macs[(h, w)] * batch / (med / 1000) / 1e9
                    rows.append({"backend": name, "precision": precision, "batch": batch, "size": f"{h}x{w}",
                                 "median_ms": round(med, 2), "p90_ms": round(p90, 2),
                                 "ms_per_image": round(med / batch, 2), "gflops": round(gflops, 1),
                                 "pct_of_matmul": round(100 * gflops / peak, 1),
                                 "speedup_vs_eager": round(eager_ms / med, 2) if eager_ms else None,
                                 "runs": runs, "threads": args.threads})
                    print(" | ".join(f"{str(rows[-1][c]):>16}" for c in COLUMNS), flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.csv:
        write_csv(args.csv, rows)
    return rows


if __name__ == "__main__":
    main()
