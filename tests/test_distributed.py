"""torchrun with 2 gloo processes on CPU: ranks stay identical, DDP matches one process with the same global batch,
and a run resumes with another world size."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from semiseg_sdk.models import load_checkpoint

WORKER = str(Path(__file__).with_name("ddp_worker.py"))
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PAGER": "cat"}


def _run(args, timeout=400):
    r = subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=timeout)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


def _torchrun(out, method, name, bn="train_bn", phase="full"):
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=0", "--rdzv_backend=c10d",
          "--rdzv_endpoint=127.0.0.1:0", WORKER, str(out), method, "2", name, bn, phase])


def _single(out, name, phase="full"):
    """One process, batch 4: the same global batch as 2 ranks x 2."""
    _run([sys.executable, WORKER, str(out), "supervised", "4", name, "freeze_bn", phase])


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
    _single(tmp_path, "single")
    _assert_same_update(tmp_path / "ddp-rank0.pt", tmp_path / "single-rank0.pt")


@pytest.mark.parametrize("first", ["ddp", "single"])
def test_resume_with_another_world_size(tmp_path, first):
    """2 of 3 steps with 2 ranks x batch 2 (or 1 process x batch 4), then the same run folder resumed with the other
    world size at the same global batch: it restarts at step 2, draws exactly the samples an uninterrupted
    single-process run draws at step 2, ends at step 3 and matches that run's weights (tolerance as above)."""
    run = {"ddp": lambda phase: _torchrun(tmp_path, "supervised", "run", "freeze_bn", phase),
           "single": lambda phase: _single(tmp_path, "run", phase)}
    run[first]("first")
    run["single" if first == "ddp" else "ddp"]("resume")
    _single(tmp_path, "ref")
    ref = json.loads((tmp_path / "ref-full-rank0-names.json").read_text())
    for phase, steps in (("first", ref[:2]), ("resume", ref[2:])):
        ranks = [json.loads(p.read_text()) for p in sorted(tmp_path.glob(f"run-{phase}-rank*-names.json"))]
        got = [sorted(n for r in ranks for n in r[i]) for i in range(len(ranks[0]))]
        assert got == [sorted(s) for s in steps], (phase, got, steps)
    assert "resumed from" in (tmp_path / "run" / "train.log").read_text()
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 3
    _assert_same_update(tmp_path / "run-rank0.pt", tmp_path / "ref-rank0.pt")


def test_sigterm_to_one_rank_stops_all_at_the_same_step(tmp_path):
    """SIGTERM reaches rank 1 alone after step 1; the ranks agree at the next log step (log_every 2): both stop after
    step 2, rank 0 writes last.pt there, and resuming finishes the run."""
    _torchrun(tmp_path, "supervised", "run", phase="signal")
    stops = [json.loads((tmp_path / f"run-signal-rank{r}.json").read_text())["stopped_at"] for r in (0, 1)]
    assert stops == [2, 2]
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 2
    _torchrun(tmp_path, "supervised", "run", phase="resume")
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 3


def _assert_same_update(path_a, path_b):
    """The total updates of the conv weights from the same initial weights agree: relative L2 < 1e-3, cosine > 0.999."""
    a, b = _floats(torch.load(path_a)), _floats(torch.load(path_b))
    from semiseg_sdk.utils.reproducibility import seed_everything
    from semiseg_sdk.models import build_model

    keys = [k for k in a if k.endswith("weight") and a[k].dim() == 4]
    # the initial weights, rebuilt exactly as the trainer does (seed_everything(0) then build_model)
    seed_everything(0)
    init = build_model("fcn", encoder="tiny", num_classes=len(_classes()), dropout=0.0).state_dict()
    u_a = torch.cat([(a[k] - init[k[len("model."):]].float()).flatten() for k in keys])
    u_b = torch.cat([(b[k] - init[k[len("model."):]].float()).flatten() for k in keys])
    assert u_b.norm() > 0
    rel = (u_a - u_b).norm() / u_b.norm()
    cos = torch.nn.functional.cosine_similarity(u_a, u_b, dim=0)
    assert rel < 1e-3 and cos > 0.999, (float(rel), float(cos))


def _classes():
    from semiseg_sdk.data import build_dataset

    return build_dataset("synthetic-driving", split="val", length=1).info.classes
