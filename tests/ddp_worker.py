"""Run by tests/test_distributed.py under ``torchrun`` (or alone): train a few steps, save each rank's method state.

``phase``: "full" trains all 3 steps; "first" stops after 2 (last.pt written); "resume" continues that run folder
(possibly with another world size); "signal": rank 1 alone gets SIGTERM after step 1, and each rank writes the step
it stopped at. Each rank also writes the names of the labelled images it drew, step by step.
"""
import json
import os
import signal
import sys

import torch

from semiseg_sdk.config import TrainConfig
from semiseg_sdk.engine import AfterStep, StopAtStep, Trainer
from semiseg_sdk.engine.distributed import cleanup
from semiseg_sdk.errors import TrainingInterrupted


def _recorded(batches, names):
    for batch in batches:
        names.append(list(batch["name"]))
        yield batch


def main(out: str, method: str, batch_size: int, name: str, freeze_bn: bool, phase: str = "full") -> None:
    cfg = TrainConfig(freeze_bn=freeze_bn, data="synthetic-driving", data_args={"length": 16, "size": [32, 64]}, labelled="1/2", model="fcn",
                      encoder="tiny", model_args={"dropout": 0.0}, method=method, steps=3, batch_size=batch_size,
                      crop_size=(32, 64), scale_range=(1.0, 1.0), flip_p=0.0, eval_every=3, eval_batch_size=4, log_every=2,
                      num_workers=0, out=out, name=name, progress=False, lr=0.05, resume=phase == "resume")
    tr = Trainer(cfg)
    tr.data.val = torch.utils.data.Subset(tr.data.val, range(2))
    names = []
    tr.x_iter = _recorded(tr.x_iter, names)
    if phase == "first":
        tr.fit(hooks=[StopAtStep(2)])
    elif phase == "signal":
        def term_rank1(t):
            if t.step == 1 and t.dist.rank == 1:
                os.kill(os.getpid(), signal.SIGTERM)

        try:
            tr.fit(hooks=[AfterStep(term_rank1)])
            stopped = None
        except TrainingInterrupted as exc:
            stopped = exc.step
        with open(f"{out}/{name}-signal-rank{tr.dist.rank}.json", "w") as f:
            json.dump({"stopped_at": stopped}, f)
    else:
        tr.fit()
    torch.save({k: v.detach().cpu() for k, v in tr.method.state_dict().items()}, f"{out}/{name}-rank{tr.dist.rank}.pt")
    with open(f"{out}/{name}-{phase}-rank{tr.dist.rank}-names.json", "w") as f:
        json.dump(names, f)
    cleanup(tr.dist)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5] == "freeze_bn", *sys.argv[6:])
