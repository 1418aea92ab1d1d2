"""Multi-process training with PyTorch DistributedDataParallel, started by ``torchrun``.

``torchrun --nproc_per_node=N -m semiseg_sdk.cli train ...`` (or the ``semiseg`` script) sets RANK, WORLD_SIZE and
LOCAL_RANK; the trainer then joins the process group (NCCL on CUDA, gloo on CPU), wraps the *method* in DDP (so every
trainable network it owns — student, second network, projector, auxiliary decoders — is synchronised, while EMA
teachers, which take no gradient, are left alone), converts BatchNorm to SyncBatchNorm on CUDA when asked, splits the
labelled and unlabelled streams across ranks, and lets only rank 0 write the run folder.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Tuple

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..utils.precision import resolve_device


@dataclass(frozen=True)
class DistInfo:
    """Rank, world size and local rank of this process (1 process: 0, 1, 0)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup_distributed(device_name: str) -> Tuple[DistInfo, torch.device]:
    """Join the process group when launched by torchrun; returns this process's info and device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), resolve_device(device_name)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank, world, local), device


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in a single process)."""
    if info.enabled:
        dist.barrier()


def wrap_method(method: nn.Module, info: DistInfo, device: torch.device, sync_bn: bool) -> nn.Module:
    """DDP around the method (its ``forward`` is ``training_step``); SyncBatchNorm first where requested (CUDA only)."""
    if not info.enabled:
        return method
    if sync_bn:
        if device.type != "cuda":
            raise RuntimeError("SyncBatchNorm needs CUDA; use --sync_bn off on CPU")
        method = nn.SyncBatchNorm.convert_sync_batchnorm(method)
    ids = [device.index] if device.type == "cuda" else None
    # find_unused_parameters: methods switch parts on and off (warm-ups, discriminators), so not every parameter
    # receives a gradient at every step.
    return DistributedDataParallel(method, device_ids=ids, find_unused_parameters=True)


def cleanup(info: DistInfo) -> None:
    """Leave the process group at the end of a distributed run."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
