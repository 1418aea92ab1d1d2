"""Phase timing: nested phases are exclusive, inactive phases cost nothing, a real training step records every phase."""
import time

import torch

from semiseg_sdk.config import TrainConfig
from semiseg_sdk.utils.phase_timer import PhaseTimer, timed

TOL = 0.02  # seconds: timer overhead plus scheduling jitter on a loaded 2-core machine


def test_nested_phase_is_subtracted_from_its_parent():
    timer = PhaseTimer("cpu")

    @timed("inner")
    def inner() -> None:
        time.sleep(0.10)

    with timer.activate():
        t0 = time.perf_counter()
        with timed("outer"):
            time.sleep(0.05)
            inner()
            with timed("outer"):  # re-entering the same phase is part of it, not a nested phase
                time.sleep(0.02)
        total = time.perf_counter() - t0
    assert timer.totals["inner"] >= 0.10 and timer.totals["outer"] >= 0.07
    assert abs(timer.totals["outer"] - (total - timer.totals["inner"])) < TOL, (timer.totals, total)
    assert timer.counts == {"outer": 1, "inner": 1}


def test_inactive_timer_is_a_no_op(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: calls.append(a))
    timer = PhaseTimer("cuda")  # synchronises at every boundary, but only while active
    n = 20000
    t0 = time.perf_counter()
    for _ in range(n):
        with timed("data"):
            pass
    per_call = (time.perf_counter() - t0) / n
    assert timer.totals == {} and calls == []
    assert per_call < 20e-6, per_call  # one ContextVar lookup per boundary (about 0.3 us unloaded)
    with timer.activate():
        with timed("data"):
            pass
    assert timer.counts == {"data": 1} and len(calls) == 2
    with timed("data"):  # deactivated again on leaving the block
        pass
    assert timer.counts == {"data": 1}


def test_trainer_step_records_all_phases(tmp_path):
    from semiseg_sdk.engine import Trainer

    cfg = TrainConfig(data="synthetic-driving", data_args={"length": 8, "size": [32, 64]}, labelled="1/2", model="fcn",
                      encoder="tiny", method="fixmatch", steps=4, batch_size=2, crop_size=(32, 32), eval_every=100,
                      num_workers=0, out=str(tmp_path), name="run", progress=False)
    trainer = Trainer(cfg)
    trainer.run_step()  # warm-up outside the timer
    timer = PhaseTimer(trainer.device)
    with timer.activate():
        t0 = time.perf_counter()
        trainer.run_step()
        wall = time.perf_counter() - t0
    assert set(timer.totals) == {"data", "augmentation", "forward_backward", "optimizer"}
    assert all(v > 0 for v in timer.totals.values()), timer.totals
    assert sum(timer.totals.values()) <= wall
