"""The end-to-end Triton model on onnxruntime: time per megapixel and peak memory, by windows and whole, against
the runtime's ``Segmenter.predict_tiled`` (whose mask the windowed graph must give).

Each graph runs in its own process (a clean peak RSS); the image is the one given, resized to ``--size``:

    python benchmarks/triton_model.py model.onnx --image tile.jpg --size 2000x2400 --threads 1
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "export"), str(ROOT / "serving")]  # run from a source checkout too


def load_image(path: str, size: str) -> np.ndarray:
    """The RGB image at ``path`` resized to ``size`` (HxW)."""
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"{path}: not a readable image")
    h, w = (int(v) for v in size.lower().split("x"))
    return cv2.cvtColor(cv2.resize(bgr, (w, h), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)


def measure(model: str, image: str, size: str, threads: int, masks: str) -> dict:
    """Run the end-to-end ``model`` once on the image in this process: seconds, and the process's peak RSS in MB
    (the session, the image and the run; two sizes give the growth per Mpx, which a run below the session's own
    loading peak would hide in a difference to it)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    rgb = load_image(image, size)
    start = time.perf_counter()
    mask = session.run(None, {"image": rgb[None]})[0][0]
    seconds = time.perf_counter() - start
    np.save(masks, mask)
    return {"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="a semiseg ONNX export")
    p.add_argument("--image", required=True, help="an RGB image (resized to --size)")
    p.add_argument("--size", default="2000x2400", help="HxW the image is resized to")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    p.add_argument("--measure", nargs=2, metavar=("GRAPH", "MASK"), help=argparse.SUPPRESS)  # the child's job
    args = p.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure[0], args.image, args.size, args.threads, args.measure[1])))
        return

    from semiseg_export import write_triton_repository
    from semiseg_serving import Segmenter

    seg = Segmenter(args.model, providers="cpu", intra_op_threads=args.threads)
    rgb = load_image(args.image, args.size)
    start = time.perf_counter()
    reference = seg.predict_tiled(rgb)
    runtime_s = time.perf_counter() - start
    mpx = rgb.shape[0] * rgb.shape[1] / 1e6
    print(f"{args.model}: {rgb.shape[0]}x{rgb.shape[1]} ({mpx:.1f} Mpx), window {seg.metadata.scored_tile}, "
          f"{args.threads} thread(s); Segmenter.predict_tiled {runtime_s:.1f} s")
    print("| graph | s per Mpx | peak RSS MB | pixels equal to predict_tiled |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, tile in (("windows", None), ("whole", 0)):
            folder = write_triton_repository(args.model, tmp, name, tile=tile)
            mask_file = str(Path(tmp) / f"{name}.npy")
            out = subprocess.run([sys.executable, __file__, args.model, "--image", args.image, "--size", args.size,
                                  "--threads", str(args.threads), "--measure", str(folder / "1" / "model.onnx"),
                                  mask_file], capture_output=True, text=True, check=True)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            equal = float(np.mean(np.load(mask_file) == reference)) * 100
            print(f"| {name} | {res['seconds'] / mpx:.2f} | {res['peak_mb']:.0f} | {equal:.3f} % |")


if __name__ == "__main__":
    main()
