"""``semiseg``: the command line (python-fire). Every subcommand calls the public API; no logic lives here.

Imports are lazy so that ``semiseg infer`` and ``semiseg serve`` run without torch installed.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import os
import re
import sys
import warnings
from typing import Any, Dict, Optional


class SemisegCLI:
    """Semi-supervised semantic segmentation: train, evaluate, export, infer.

    Quick start:
      semiseg demo                                     # short train -> export -> infer on built-in data
      semiseg train --data synthetic-driving --labelled 1/16 --method supervised --steps 2000
      semiseg evaluate runs/supervised-synthetic-driving-1of16-s0
      semiseg export runs/supervised-synthetic-driving-1of16-s0 model.onnx
      semiseg infer model.onnx images/ out/
    """

    def train(self, config: Optional[str] = None, **flags: Any) -> Dict[str, Any]:
        """Train a model; every TrainConfig field is a flag.

        Common flags: --data synthetic-driving|synthetic-aerial|folder|voc|cityscapes|camvid, --data_root DIR,
        --labelled 1/16|1/8|all|COUNT, --method NAME (see `semiseg methods`), --model NAME --encoder NAME
        (see `semiseg models`), --steps N, --batch_size N, --crop_size H,W, --lr F, --device auto|cpu|cuda,
        --out runs --name NAME, --resume, --seed N, --method_args '{"conf_thresh": 0.95}',
        --data_args '{"length": 1000, "domain": "fog"}', --recipe NAME (measured settings, see `semiseg recipes`;
        the config file and flags still win), --strong_aug '{"blur_sigma": [0.03, 0.6], "blur_kernel": 5}'
        (the strong view's colour jitter / grayscale / blur, see semiseg_sdk.augment.StrongConfig). A JSON or TOML file given by --config sets defaults
        that flags override. The run folder gets config.json, metrics.jsonl, train.log, best.pt, last.pt.
        """
        from .config import resolve_config
        from .engine import train

        cfg = resolve_config(config, flags)
        result = train(cfg)
        print(result.pop("table"))
        return result

    def evaluate(self, checkpoint: str, data: Optional[str] = None, data_root: Optional[str] = None, split: Optional[str] = None,
                 mode: Optional[str] = None, window: Optional[Any] = None, device: str = "auto",
                 data_args: Optional[dict] = None, save: Optional[str] = None, weights: str = "saved") -> Dict[str, Any]:
        """Evaluate a run folder or checkpoint on a dataset split: per-class IoU table, mIoU, confusion matrix.

        --data defaults to the dataset the checkpoint was trained on and --split to the split its run scored while
        training (its val_split, e.g. val+test; val for another --data); --mode whole|slide|auto and --window N (or H,W)
        default to how the run was scored while training (its eval_mode and eval_window: windows of its training
        crop unless it chose others; a lone checkpoint: auto, 512); --weights saved|trained
        (a --weight_ema run saves the average of its weights and keeps them as trained beside it); metrics.json and
        the confusion matrix (CSV + PNG) go to --save DIR, by default eval-<data>-<split>/ next to the checkpoint
        (eval-<data>-<split>-trained/ for --weights trained).
        """
        from .engine.evaluator import evaluate_checkpoint

        res = evaluate_checkpoint(checkpoint, data=data, data_root=data_root, split=split, mode=mode, window=window,
                                  device=device, data_args=data_args, save=save, weights=weights)
        print(res.pop("table"))
        keep = ("miou", "macc", "aacc", "pixels", "split", "mode", "window", "images", "weights", "saved_to")
        return {k: v for k, v in res.items() if k in keep}

    def export(self, checkpoint: str, output: str, fp16: bool = False, simplify: bool = True, opset: int = 17,
               triton: Optional[str] = None, int8: bool = False, calibration: Optional[str] = None,
               calibration_images: int = 32, min_agreement: Optional[float] = None,
               weights: str = "saved", triton_tile: Optional[int] = None) -> Dict[str, Any]:
        """Export a run folder or checkpoint to ONNX (dynamic batch/height/width) and check parity with PyTorch.

        --fp16: float16 graph for GPUs. --int8: static int8 (QDQ) graph for onnxruntime on CPU, calibrated on
        --calibration (a folder of .png/.jpg images like the deployment's, or a dataset NAME[:SPLIT]; default: the
        run's validation images), --calibration_images of them (32), and checked by argmax agreement with PyTorch
        on those images (>= --min_agreement, default 0.95 for int8, 0.999 fp32, 0.99 fp16). --weights saved|trained:
        a --weight_ema run exports its average by default, its weights as trained with --weights trained.
        --triton DIR: also a Triton model repository whose model is end to end (uint8 RGB image in, class-id mask
        out); like `infer` it slides the window the run was scored on over larger images, --triton_tile N another
        window, --triton_tile 0 whole images."""
        from semiseg_export import export_checkpoint

        return export_checkpoint(checkpoint, output, opset=opset, fp16=fp16, simplify=simplify, triton=triton,
                                 int8=int8, calibration=calibration, calibration_images=calibration_images,
                                 min_agreement=min_agreement, weights=weights, triton_tile=triton_tile)

    def infer(self, model: str, input: str, output: str, overlay: bool = True, confidence: bool = False,
              tile: Optional[int] = None, providers: str = "auto") -> Dict[str, Any]:
        """Run an exported model on an image, a folder of images or a video; writes palette masks and overlays.

        --tile N predicts images larger than N px on a side by sliding N-px windows; by default N is the window the
        exported run was scored on (its training crop unless it chose another), --tile 0 predicts whole images."""
        from semiseg_serving import infer_path

        return infer_path(model, input, output, overlay=overlay, confidence=confidence, tile=tile, providers=providers)

    def serve(self, model: Optional[str] = None, host: str = "127.0.0.1", port: int = 8080, max_batch: int = 8, max_wait_ms: float = 5.0,
              max_body_mb: float = 20.0, max_pixels: int = 40_000_000, request_timeout_s: float = 30.0,
              max_in_flight: int = 64, providers: str = "auto", threads: Optional[int] = None,
              body_timeout_s: float = 10.0, max_receiving: int = 256,
              memory_budget_mb: int = 1024, store: Optional[str] = None, tile: Optional[int] = None) -> None:
        """Serve an exported model over HTTP (Starlette + uvicorn, torch-free): POST /v1/segment, /healthz, /readyz,
        /v1/model, /metrics, POST /admin/reload (loopback only; SIGHUP also reloads). Dynamic micro-batching groups
        concurrent requests up to --max_batch or --max_wait_ms (--max_batch 1 turns it off). A request body must
        arrive within --body_timeout_s; at most --max_receiving arrive at once, and only a received request takes
        one of the --max_in_flight serving slots (slow uploads cannot lock others out). Requests share
        --memory_budget_mb of working memory (pixels x the model's measured bytes per pixel; images over 1024x1024
        run tile by tile); an image that alone needs more is refused with 413. --store DIR serves the current version
        of a continual model store instead of MODEL and follows its promotions and rollbacks. Like `infer`, images
        larger than the window the model's run was scored on (its training crop) are predicted by sliding that
        window, so the service answers with infer's masks; --tile N another window, --tile 0 whole images."""
        from semiseg_serving.http import serve

        serve(model, host=host, port=port, max_batch=max_batch, max_wait_ms=max_wait_ms, max_body_mb=max_body_mb,
              max_pixels=max_pixels, request_timeout_s=request_timeout_s, max_in_flight=max_in_flight,
              providers=providers, threads=threads, body_timeout_s=body_timeout_s, max_receiving=max_receiving,
              memory_budget_mb=memory_budget_mb, store=store, tile=tile)

    def demo(self, out: str = "runs/demo", steps: int = 300, method: str = "supervised", data: str = "synthetic-driving",
             device: str = "auto") -> None:
        """The main job end to end on built-in data: a short train, ONNX export, inference, printed result."""
        from .demo import run_demo

        run_demo(out=out, steps=steps, method=method, data=data, device=device)  # prints its own summary

    @property
    def continual(self):
        """Continual learning: init a model store, refresh it from field images, status/history/promote/rollback."""
        from .continual.cli import ContinualCLI

        return ContinualCLI()

    def datasets(self) -> str:
        """The registered datasets, one line each (--data NAME)."""
        return _listing("dataset")

    def models(self) -> str:
        """The registered models (--model, decoders) and encoders (--encoder), one line each."""
        return "models:\n" + _listing("model") + "\nencoders:\n" + _listing("encoder")

    def methods(self, name: Optional[str] = None) -> str:
        """The training methods (--method NAME), one line each: family and what it does; with NAME, that method's
        options (--method_args) with their defaults."""
        if name is not None:
            from .cli_help import method_help

            return method_help(str(name)).rstrip("\n")
        return _listing("method")

    def recipes(self) -> Dict[str, Dict[str, Any]]:
        """Named training recipes (`semiseg train --recipe NAME`): what each sets and the measurement behind it."""
        from .recipes import RECIPES

        return {r.name: {"summary": r.summary, "sets": r.values, "evidence": r.evidence} for r in RECIPES.values()}


def _listing(kind: str) -> str:
    """``name  family  first line of the doc`` per registered entry of ``kind`` (read without importing torch)."""
    from .catalog import entries

    rows = entries(kind)
    width = max(len(e.name) for e in rows) + 2
    fam = max(len(e.family) for e in rows)
    out = []
    for e in rows:
        first = inspect.cleandoc(e.doc).split("\n\n")[0].replace("\n", " ")
        out.append(f"{e.name:<{width}}" + (f"{e.family:<{fam + 2}}" if fam else "") + first[:110])
    return "\n".join(out)


def _train_signature() -> inspect.Signature:
    """``train``'s flags are the TrainConfig fields (so --help lists them and fire refuses unknown ones)."""
    from .config import TrainConfig

    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
              inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None)]
    for f in dataclasses.fields(TrainConfig):
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None))
    params.append(inspect.Parameter("flags", inspect.Parameter.VAR_KEYWORD))  # unknown flags reach resolve_config
    return inspect.Signature(params)


SemisegCLI.train.__signature__ = _train_signature()


# Which optional extra provides a module (pyproject.toml's [project.optional-dependencies]).
EXTRAS = {"train": ("torch", "kornia"), "export": ("onnx", "onnxslim"), "serve": ("starlette", "uvicorn", "anyio")}


def _print_help(argv: list) -> bool:
    """Help on stdout: plain ``semiseg`` (``semiseg continual``) or ``--help`` lists the (sub-)commands,
    ``semiseg CMD --help`` shows CMD's flags
    (``train``: every TrainConfig field with its default and meaning). Returns whether help was printed."""
    from .cli_check import commands_of
    from .cli_help import command_help, command_list, train_help

    asks = [a for a in argv if a in ("--help", "-h", "help")]
    words = [a for a in argv if not a.startswith("-") and a != "help"]
    if not argv or (asks and not words):
        print(command_list(SemisegCLI, "semiseg"), end="")
        return True
    if argv == ["continual"]:  # a group without its sub-command: list the sub-commands
        from .continual.cli import ContinualCLI

        print(command_list(ContinualCLI, "semiseg continual"), end="")
        return True
    if not asks or words[0] not in commands_of(SemisegCLI):
        return False
    if words[0] == "train":
        print(train_help(), end="")
    elif words[0] == "continual" and len(words) > 1:
        from .continual.cli import ContinualCLI

        print(command_help(ContinualCLI, words[1], "semiseg continual") if hasattr(ContinualCLI, words[1])
              else command_list(ContinualCLI, "semiseg continual"), end="")
    else:
        print(command_help(SemisegCLI, words[0], "semiseg"), end="")
    return True


def _command_line_error(argv: list) -> Optional[str]:
    """An unknown command or flag, or a missing argument, in one line (None if fire may run ``argv``)."""
    from .cli_check import command_line_error

    def continual() -> type:
        from .continual.cli import ContinualCLI

        return ContinualCLI

    return command_line_error(SemisegCLI, argv, groups={"continual": continual})


def main(argv: Optional[list] = None) -> None:
    """Console entry point: errors of the SDK are printed as one line (exit 2), not a traceback."""
    import fire

    from .errors import SemisegError, TrainingInterrupted, error_line

    os.environ.setdefault("PAGER", "cat")
    warnings.formatwarning = format_warning
    argv = list(sys.argv[1:] if argv is None else argv)
    if _print_help(argv):
        return
    single = [a for a in argv if re.match(r"^-[A-Za-z]", a)]
    if single:  # fire would read -w as --weight_decay and -h as --head_lr_mult
        print(f"error: {single[0]}: flags take two dashes and the full name (--name VALUE); see "
              f"`semiseg {argv[0] if argv and not argv[0].startswith('-') else ''} --help`".replace("  ", " "),
              file=sys.stderr)
        sys.exit(2)
    error = _command_line_error(argv)
    if error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    try:
        fire.Fire(SemisegCLI(), command=argv, name="semiseg", serialize=_serialize)
    except TrainingInterrupted as exc:  # not a failure: the run is resumable
        print(str(exc), file=sys.stderr)
        sys.exit(exc.exit_code)
    except SemisegError as exc:
        print(f"error: {error_line(exc)}", file=sys.stderr)
        sys.exit(2)
    except ModuleNotFoundError as exc:  # an install without the extra this command needs
        extra = next((e for e, mods in EXTRAS.items() if (exc.name or "").split(".")[0] in mods), None)
        if extra is None:
            raise
        print(f"error: this command needs {exc.name}, which the [{extra}] extra installs: "
              f"pip install \"semiseg-sdk[{extra}]\"", file=sys.stderr)
        sys.exit(2)
    except KeyError as exc:  # unknown registry names
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:  # the torch-free runtime's errors (it cannot import semiseg_sdk's classes)
        if type(exc).__module__.startswith("semiseg_serving"):
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
        raise


_default_format_warning = warnings.formatwarning


def format_warning(message: Any, category: type, filename: str, lineno: int, line: Optional[str] = None) -> str:
    """How the command line prints a warning: the SDK's own as one line (``warning: ...``), others as Python does."""
    if category.__module__.split(".")[0] in ("semiseg_sdk", "semiseg_export", "semiseg_serving"):
        return f"warning: {message}\n"
    return _default_format_warning(message, category, filename, lineno, line)


def _serialize(obj: Any) -> Optional[str]:
    """How fire prints a command's result: JSON for dicts and lists, nothing for None."""
    if obj is None:
        return None
    return json.dumps(obj, indent=2, default=str) if isinstance(obj, (dict, list)) else str(obj)


if __name__ == "__main__":
    main()
