"""torchrun with 2 gloo processes on CPU: ranks stay identical, and DDP matches one process with the same global batch."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = str(Path(__file__).with_name("ddp_worker.py"))
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PAGER": "cat"}


def _run(args, timeout=400):
    r = subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=timeout)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


def _torchrun(out, method, name, bn="train_bn"):
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=0", "--rdzv_backend=c10d",
          "--rdzv_endpoint=127.0.0.1:0", WORKER, str(out), method, "2", name, bn])


def _floats(state):
    return {k: v.float() for k, v in state.items() if v.is_floating_point()}


@pytest.mark.parametrize("method", ["supervised", "mean-teacher"])
def test_ranks_end_identical(tmp_path, method):
    _torchrun(tmp_path, method, "ddp")
    a = _floats(torch.load(tmp_path / "ddp-rank0.pt"))
    b = _floats(torch.load(tmp_path / "ddp-rank1.pt"))
    assert a.keys() == b.keys()
    params = [k for k in a if "running_" not in k]
    assert len(params) > 10
    for k in params:  # gradients are all-reduced, so weights (and EMA teachers of identical students) stay identical
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    # BatchNorm running statistics are per rank until DDP broadcasts rank 0's at the next forward: not compared
    assert (tmp_path / "ddp" / "last.pt").is_file()  # rank 0 wrote the run folder


def test_ddp_matches_single_process_with_same_global_batch(tmp_path):
    """2 ranks x batch 2 vs 1 process x batch 4 over the same 4 images per step (deterministic views, no dropout).

    BatchNorm batch statistics are per rank (SyncBatchNorm needs CUDA) and make 2+2 differ from 4 by design, so this
    comparison freezes BatchNorm (``freeze_bn``): then the mean gradient over ranks equals the single-process one.
    Stated tolerance on the total weight update after 3 steps: relative L2 difference < 1e-3 (float32 reduction
    order); a wrong reduction (sum instead of mean, or none) is off by 50-100 %."""
    _torchrun(tmp_path, "supervised", "ddp", "freeze_bn")
    _run([sys.executable, WORKER, str(tmp_path), "supervised", "4", "single", "freeze_bn"])
    ddp = _floats(torch.load(tmp_path / "ddp-rank0.pt"))
    single = _floats(torch.load(tmp_path / "single-rank0.pt"))
    # the initial weights are identical (same seed), so compare the total updates of the weights of conv layers
    from semiseg_sdk.engine.reproducibility import seed_everything
    from semiseg_sdk.models import build_model

    keys = [k for k in ddp if k.endswith("weight") and ddp[k].dim() == 4]
    # the initial weights, rebuilt exactly as the trainer does (seed_everything(0) then build_model)
    seed_everything(0)
    init = build_model("fcn", encoder="tiny", num_classes=len(_classes()), dropout=0.0).state_dict()
    u_ddp = torch.cat([(ddp[k] - init[k[len("model."):]].float()).flatten() for k in keys])
    u_single = torch.cat([(single[k] - init[k[len("model."):]].float()).flatten() for k in keys])
    assert u_single.norm() > 0
    rel = (u_ddp - u_single).norm() / u_single.norm()
    cos = torch.nn.functional.cosine_similarity(u_ddp, u_single, dim=0)
    assert rel < 1e-3 and cos > 0.999, (float(rel), float(cos))


def _classes():
    from semiseg_sdk.data import build_dataset

    return build_dataset("synthetic-driving", split="val", length=1).info.classes
