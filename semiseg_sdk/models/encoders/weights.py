"""Load a local pretrained file into an encoder: keys must match one for one, else a CheckpointError names them.

``load_state_strict`` is the SDK's one strict loader: the engine uses it for checkpoints too.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Sequence, Union

import torch
from torch import nn

from ...errors import CheckpointError


def read_state_dict(path: Union[str, Path]) -> Dict[str, torch.Tensor]:
    """Read a plain ``state_dict`` file (``torch.save(model.state_dict())``); errors name the file."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: pretrained weights file not found")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, pickle of a whole model, not a torch file
        raise CheckpointError(f"{p}: not a readable state_dict ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{p}: expected a state_dict (dict of tensors), found {type(state).__name__}")
    return dict(state)


def load_encoder_file(encoder: nn.Module, path: Union[str, Path], ignore_prefixes: Sequence[str] = ()) -> None:
    """Load ``path`` into ``encoder`` strictly, after dropping keys that start with ``ignore_prefixes``
    (the classification head, e.g. ``fc.``)."""
    state = read_state_dict(path)
    state = {k: v for k, v in state.items() if not any(k.startswith(p) for p in ignore_prefixes)}
    load_state_strict(encoder, state, str(path))


def load_state_strict(module: nn.Module, state: Dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` whose error names ``source`` and the missing/unexpected/misshapen keys."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    problems = []
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected)):
        if keys:
            problems.append(f"{label} {keys[:8]}{' ...' if len(keys) > 8 else ''} ({len(keys)} in all)")
    if shape:
        problems.append("shape mismatch " + ", ".join(
            f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in shape[:8]))
    if problems:
        raise CheckpointError(f"{source}: weights do not fit the model: " + "; ".join(problems))
    module.load_state_dict(state, strict=True)
