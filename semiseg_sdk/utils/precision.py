"""Device, mixed-precision and memory-format choices for a run."""
from __future__ import annotations

from typing import Optional

import torch

from ..errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """"auto" -> CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"--device {name!r}: not a device; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available here (torch {torch.__version__}); use --device cpu "
                          "or auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    return dev


def resolve_amp(mode: str, device: torch.device) -> Optional[torch.dtype]:
    """Autocast dtype: "auto" = bf16 on CUDA where supported (else fp16), nothing on CPU; "off" = None."""
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None
    if mode == "bf16" or (mode == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def resolve_channels_last(mode: str, device: torch.device) -> bool:
    """channels-last memory format: on for CUDA under "auto"."""
    return mode == "on" or (mode == "auto" and device.type == "cuda")
