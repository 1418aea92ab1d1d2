"""semiseg_sdk.data.loader: loader workers and stop signals sent to the whole process group."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from semiseg_sdk.data import loader as loader_module
from semiseg_sdk.data.loader import infinite_loader


class Tiny(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return {"image": torch.full((3, 4, 4), i, dtype=torch.uint8), "mask": torch.zeros(4, 4, dtype=torch.uint8)}


def test_a_worker_keeps_serving_for_the_grace_period_after_sigterm_then_exits_with_status_0(monkeypatch):
    monkeypatch.setattr(loader_module, "WORKER_STOP_GRACE_S", 2.0)  # read by the forked worker when the signal comes
    it = infinite_loader(Tiny(), list(range(8)), 2, seed=0, num_workers=1)
    next(it)
    (worker,) = it._workers
    os.kill(worker.pid, signal.SIGTERM)
    time.sleep(0.5)
    assert worker.is_alive()
    for _ in range(6):  # more batches than the prefetch holds: the worker really serves after the signal
        assert next(it)["image"].shape == (2, 3, 4, 4)
    worker.join(timeout=10)
    assert worker.exitcode == 0  # torch's SIGCHLD check accepts it: the main process is not killed by it
    del it


def test_a_process_that_exits_holding_a_loader_does_not_hang():
    """At interpreter exit multiprocessing stops leftover workers with SIGTERM and joins them: a worker ignoring
    SIGTERM would hang the process for ever; ours leave after the grace period."""
    code = ("import sys; sys.path.insert(0, %r); import torch, test_loader as t; "
            "from semiseg_sdk.data.loader import infinite_loader; "
            "IT = infinite_loader(t.Tiny(), list(range(8)), 2, seed=0, num_workers=1); next(IT); print('ok')"
            % str(Path(__file__).parent))
    t0 = time.time()
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]
    assert time.time() - t0 < 60
