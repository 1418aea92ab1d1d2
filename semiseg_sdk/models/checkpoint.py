"""Checkpoints: one format for best/last files, written atomically, loaded with errors that name the file.

A checkpoint is a dict saved with ``torch.save``:
    "format":       "semiseg-checkpoint/1"
    "model_spec":   kwargs that rebuild the inference network: ``build_model(**model_spec)``
    "model_state":  state_dict of the method's inference network (student or EMA teacher; no training-only parts),
                    or of its weight average in a ``--weight_ema`` run
    "trained_state": only in a ``--weight_ema`` run's checkpoints: the inference network's weights as trained
    "dataset":      {"name", "classes", "palette"}
    "metrics":      evaluation results at save time (e.g. {"miou": 0.61, ...}), may be empty
    "step":         training step
    "run_dir":      the run folder it came from
    "trainer_state": only in ``last.pt``: method/optimizer/scaler state and RNG states for an exact resume
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from torch import nn

from ..errors import CheckpointError
from .encoders.weights import load_state_strict
from ..utils.atomic import atomic_path

FORMAT = "semiseg-checkpoint/1"
REQUIRED_KEYS = ("format", "model_spec", "model_state", "dataset")
WEIGHTS = ("saved", "trained")  # what load_inference_model can load of a checkpoint


def save_checkpoint(path: Union[str, Path], payload: Dict[str, Any]) -> None:
    """Save ``payload`` (see module doc) atomically: a crash never leaves a half-written file at ``path``."""
    payload = {"format": FORMAT, **payload}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def resolve_checkpoint(path: Union[str, Path]) -> Path:
    """A run folder resolves to its ``best.pt`` (else ``last.pt``); a file stays itself."""
    p = Path(path)
    if p.is_dir():
        for name in ("best.pt", "last.pt"):
            if (p / name).is_file():
                return p / name
        raise CheckpointError(f"{p}: run folder has no best.pt or last.pt")
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint file not found")
    return p


def _legacy_safe_globals() -> List[Any]:
    """What checkpoints written before the RNG state was stored as tensors need besides plain types: NumPy's array
    constructor, ``ndarray`` and its dtypes (data only, no callable that runs code)."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def load_checkpoint(path: Union[str, Path], map_location: Union[str, torch.device] = "cpu") -> Dict[str, Any]:
    """Load and validate a checkpoint (or a run folder's best one); raises CheckpointError naming the file.

    Loads with ``weights_only=True``: a file whose pickle names any other callable or class than tensors, plain
    Python types and (for older checkpoints) NumPy arrays is refused before anything in it runs."""
    p = resolve_checkpoint(path)
    try:
        with torch.serialization.safe_globals(_legacy_safe_globals()):
            ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{p}: refused: it asks to run or build {_unsafe_globals(p)}, which a semiseg checkpoint "
                              f"never holds (checkpoints load with weights_only=True; nothing in the file was run)") from None
    except Exception as exc:  # truncated zip, wrong file type
        raise CheckpointError(f"{p}: not a readable checkpoint ({type(exc).__name__}: {_first_line(exc)})") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{p}: not a semiseg checkpoint (found {type(ckpt).__name__})")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{p}: not a semiseg checkpoint, missing keys: {', '.join(missing)}")
    if ckpt["format"] != FORMAT:
        raise CheckpointError(f"{p}: checkpoint format {ckpt['format']!r}, expected {FORMAT!r}")
    ckpt["path"] = str(p)
    return ckpt


def _unsafe_globals(p: Path) -> str:
    """The callables/classes a refused pickle names (read from its opcodes, never executed)."""
    try:
        names = [g for g in torch.serialization.get_unsafe_globals_in_checkpoint(p)
                 if g not in {"numpy._core.multiarray._reconstruct", "numpy.core.multiarray._reconstruct",
                              "numpy.ndarray", "numpy.dtype"} and not g.startswith("numpy.dtypes.")]
    except Exception:  # not a zip checkpoint: the legacy pickle format
        names = []
    return ", ".join(names[:3]) + (" ..." if len(names) > 3 else "") if names else "objects other than tensors and plain data"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_inference_model(path: Union[str, Path], map_location: str = "cpu",
                         weights: str = "saved") -> Tuple[nn.Module, Dict[str, Any]]:
    """Rebuild the inference network of a checkpoint or run folder; returns ``(model in eval mode, checkpoint)``.

    The model is returned on ``map_location`` (the device its tensors were loaded to), ready for inputs there.
    ``weights``: ``"saved"`` loads the network the checkpoint saves (for a ``--weight_ema`` run, the average of
    its weights); ``"trained"`` the weights as trained, which a ``--weight_ema`` run keeps beside the average.
    """
    from ..models import build_model

    if weights not in WEIGHTS:
        raise CheckpointError(f"--weights {weights!r}: choose {' or '.join(WEIGHTS)}")
    ckpt = load_checkpoint(path, map_location)
    state = ckpt["model_state"]
    if weights == "trained":
        if "trained_state" not in ckpt:
            raise CheckpointError(f"{ckpt['path']}: holds only the weights it saves (no --weight_ema average beside "
                                  "them, or saved before checkpoints kept both): --weights trained needs a "
                                  "--weight_ema run; leave it out to evaluate the saved weights")
        state = ckpt["trained_state"]
    spec = dict(ckpt["model_spec"])
    spec["pretrained"] = None  # weights come from the checkpoint, never from elsewhere
    model = build_model(**spec)
    load_state_strict(model, state, ckpt["path"])
    return model.to(map_location).eval(), ckpt


def run_config(ckpt: Dict[str, Any]) -> Dict[str, Any]:
    """The ``config.json`` of the run a loaded checkpoint came from ({} when there is none): looked up next to the
    checkpoint file first (a moved run folder), then in its recorded ``run_dir``."""
    folders = [Path(ckpt["path"]).parent] if ckpt.get("path") else []
    if ckpt.get("run_dir"):
        folders.append(Path(ckpt["run_dir"]))
    for folder in folders:
        try:
            if (folder / "config.json").is_file():
                return json.loads((folder / "config.json").read_text())
        except (OSError, ValueError):
            continue
    return {}


def run_scoring(ckpt: Dict[str, Any]) -> Tuple[str, Tuple[int, int], Optional[Tuple[int, int]]]:
    """``(eval_mode, eval_window, crop_size)`` of the run a loaded checkpoint came from (:func:`config_scoring` of
    its config.json)."""
    return config_scoring(run_config(ckpt))


def config_scoring(cfg: Dict[str, Any]) -> Tuple[str, Tuple[int, int], Optional[Tuple[int, int]]]:
    """``(eval_mode, eval_window, crop_size)`` of a run's config.json: how it was scored while training (the window
    defaults to the training crop, so a run's crop unless it chose another). Without a config (``{}``):
    ``("auto", (512, 512), None)``."""
    crop = tuple(int(v) for v in cfg["crop_size"]) if cfg.get("crop_size") else None
    window = tuple(int(v) for v in (cfg.get("eval_window") or crop or (512, 512)))
    return str(cfg.get("eval_mode") or "auto"), window, crop  # type: ignore[return-value]
