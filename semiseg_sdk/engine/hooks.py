"""The trainer's hooks: schedule, logging, checks, evaluation, checkpoints, stop signal, progress, phase timing.

Each does one job around :class:`~semiseg_sdk.engine.train_loop.TrainLoop` steps; :meth:`Trainer.default_hooks`
registers them in this order (user hooks go after logging and before evaluation, so a run resumed from ``last.pt``
has passed every user hook call before it):

    PolyLR, WeightAverage (opt-in), PhaseTiming (opt-in), FiniteLossCheck, MetricsWriter, <user hooks>,
    Evaluation, LastCheckpoint, ProgressBar, TensorBoardLog (opt-in), StopOnSignal

The evaluation and checkpoint hooks call the trainer's public methods (``eval_and_save``, ``save_last``,
``check_finite``); they hold no state of their own beyond their period.
"""
from __future__ import annotations

import signal
import time
from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence

import torch
from tqdm import tqdm

from ..utils.phase_timer import PhaseTimer
from .distributed import DistInfo
from .graceful_stop import StopRequest, stop_requests
from .optim import set_poly_lr
from .train_loop import HookBase

SIGNAL_STOP = "signal"  # the stop reason StopOnSignal gives


def is_period_end(step: int, period: int, last: int) -> bool:
    """Whether ``step`` closes a period of ``period`` steps or is the run's ``last`` step."""
    return (period > 0 and step % period == 0) or step == last


class PolyLR(HookBase):
    """Sets every parameter group's learning rate to ``initial_lr * (1 - step / total) ** power`` before each step."""

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int, power: float) -> None:
        self.optimizer, self.total_steps, self.power = optimizer, int(total_steps), float(power)

    def before_step(self) -> None:
        set_poly_lr(self.optimizer, self.loop.step, self.total_steps, self.power)


class WeightAverage(HookBase):
    """After every optimiser step, moves an exponential moving average of a network's weights towards them
    (:class:`~semiseg_sdk.methods.ema.EMATeacher`: ``a_t = min(1 - 1 / (t + 1), momentum)`` after step ``t``, BatchNorm
    statistics averaged alike). ``follow()`` returns the network averaged; the trainer evaluates and saves the
    average instead of it (``--weight_ema``)."""

    def __init__(self, average: Any, follow: Callable[[], torch.nn.Module]) -> None:
        self.average, self.follow = average, follow

    def after_step(self) -> None:
        self.average.update(self.follow(), self.loop.step - 1)


class PhaseTiming(HookBase):
    """Adds ``phase_s`` (seconds per step spent in data, augmentation, forward+backward, optimiser since the last
    log) to each logged record. Synchronises CUDA at phase boundaries, so it is opt-in (``--time_phases``)."""

    def __init__(self, device: torch.device, period: int) -> None:
        self.timer, self.period = PhaseTimer(device), int(period)
        self._active: Optional[Any] = None
        self._seen: Dict[str, float] = {}

    def before_train(self) -> None:
        self._active = self.timer.activate()
        self._active.__enter__()

    def after_step(self) -> None:
        if is_period_end(self.loop.step, self.period, self.loop.max_steps):
            steps = max(1, self.loop.stats.count)
            totals = dict(self.timer.totals)
            self.loop.stats.extra["phase_s"] = {k: round((v - self._seen.get(k, 0.0)) / steps, 6) for k, v in totals.items()}
            self._seen = totals

    def close(self) -> None:
        if self._active is not None:
            self._active.__exit__(None, None, None)
            self._active = None


class FiniteLossCheck(HookBase):
    """At every log step: raise ``FloatingPointError`` if a step's loss was not finite (``Trainer.check_finite``,
    which also runs before every checkpoint is written)."""

    def __init__(self, period: int) -> None:
        self.period = int(period)

    def after_step(self) -> None:
        if is_period_end(self.loop.step, self.period, self.loop.max_steps):
            self.loop.check_finite(self.loop.stats.means())


class RecordWriter(Protocol):
    """Where logged records go (``metrics.jsonl`` by default; a TensorBoard or MLflow writer has the same shape)."""

    def write(self, record: Dict[str, Any]) -> None: ...


class JsonLinesWriter:
    """Appends each record as one JSON line to the run folder's ``metrics.jsonl`` (rank 0 only)."""

    def __init__(self, run_folder: Any) -> None:
        self.run_folder = run_folder

    def write(self, record: Dict[str, Any]) -> None:
        self.run_folder.log_metrics(record)


class MetricsWriter(HookBase):
    """Every ``period`` steps and at the last step: ``{step, lr, <loss term means>, img_per_s, ...}`` to each writer."""

    def __init__(self, writers: Sequence[RecordWriter], period: int, images_per_step: int,
                 optimizer: torch.optim.Optimizer) -> None:
        self.writers, self.period, self.images_per_step, self.optimizer = list(writers), int(period), images_per_step, optimizer
        self.t0 = 0.0

    def before_train(self) -> None:
        self.t0 = time.perf_counter()

    def after_step(self) -> None:
        loop = self.loop
        if not is_period_end(loop.step, self.period, loop.max_steps):
            return
        n, dt = loop.stats.count, time.perf_counter() - self.t0
        record = {"step": loop.step, "lr": self.optimizer.param_groups[0]["lr"], **loop.stats.means(),
                  "img_per_s": self.images_per_step * n / max(dt, 1e-9), **loop.stats.extra}
        for w in self.writers:
            w.write(record)
        loop.stats.record = record
        loop.stats.reset()
        self.t0 = time.perf_counter()


class AfterStep(HookBase):
    """Calls ``fn(loop)`` after every step (a one-line hook)."""

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn

    def after_step(self) -> None:
        self.fn(self.loop)


class StopAtStep(HookBase):
    """Requests a stop once ``step`` steps are done (the run ends there, resumable, as if stopped by a signal)."""

    def __init__(self, step: int) -> None:
        self.step = int(step)

    def after_step(self) -> None:
        if self.loop.step >= self.step:
            self.loop.request_stop(f"step {self.step}")


class Evaluation(HookBase):
    """Every ``period`` steps and at the last step: evaluate, keep ``best.pt``, write ``last.pt``
    (``Trainer.eval_and_save``), also at a step where a stop was requested (a stopped run resumes exactly as if it
    had not stopped); a run resumed at its end is evaluated once at ``after_train``."""

    def __init__(self, period: int) -> None:
        self.period = int(period)
        self.last: Optional[Dict[str, Any]] = None

    def before_train(self) -> None:
        self.last = None

    def after_step(self) -> None:
        loop = self.loop
        if is_period_end(loop.step, self.period, loop.max_steps):
            self.last = loop.eval_and_save()

    def after_train(self) -> None:
        if self.loop.stop_reason is None and self.last is None:
            self.last = self.loop.eval_and_save()


class LastCheckpoint(HookBase):
    """``last.pt`` every ``period`` steps (0: only at evaluations) and at the step where a run stops early."""

    def __init__(self, period: int) -> None:
        self.period = int(period)

    def after_step(self) -> None:
        loop = self.loop
        if self.period and loop.step % self.period == 0 and loop.saved_step != loop.step:
            loop.save_last()

    def after_train(self) -> None:
        if self.loop.stop_reason is not None and self.loop.saved_step != self.loop.step:
            self.loop.save_last()


class ProgressBar(HookBase):
    """A tqdm bar over the run's steps (rank 0), showing the last logged loss and images/s, or the last mIoU."""

    def __init__(self, description: str, enabled: bool, evaluation: Optional[Evaluation] = None) -> None:
        self.description, self.enabled, self.evaluation = description, enabled, evaluation
        self.bar: Optional[tqdm] = None
        self._shown_eval: Optional[Dict[str, Any]] = None

    def before_train(self) -> None:
        self.bar = tqdm(total=self.loop.max_steps, initial=self.loop.step, desc=self.description,
                        disable=not self.enabled, dynamic_ncols=True)

    def after_step(self) -> None:
        self.bar.update(1)
        rec = self.loop.stats.record
        if rec.get("step") == self.loop.step and "loss" in rec:
            self.bar.set_postfix(loss=f"{rec['loss']:.3f}", ips=f"{rec['img_per_s']:.1f}")
        last = self.evaluation.last if self.evaluation is not None else None
        if last is not None and last is not self._shown_eval:
            self._shown_eval = last
            self.bar.set_postfix(miou=f"{100 * last['miou']:.1f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class TensorBoardLog(HookBase):
    """Writes each logged record (loss terms, learning rate, throughput) and each evaluation (mIoU, per-class IoU, and
    ``images`` validation images as image | prediction | ground truth) as TensorBoard events under ``log_dir``
    (``tensorboard --logdir runs``). Needs the ``tensorboard`` package (the ``[tensorboard]`` extra)."""

    def __init__(self, log_dir: Any, evaluation: Evaluation, dataset: Any, palette: Sequence[Sequence[int]],
                 device: torch.device, images: int = 4) -> None:
        self.log_dir, self.evaluation, self.dataset, self.palette = log_dir, evaluation, dataset, palette
        self.device, self.images = device, images
        self.writer: Any = None
        self._logged_eval: Optional[Dict[str, Any]] = None

    def before_train(self) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(self.log_dir))

    def after_step(self) -> None:
        loop, w = self.loop, self.writer
        record = loop.stats.record
        if record.get("step") == loop.step:
            for key, value in _numbers(record, "train/").items():
                if key != "train/step":
                    w.add_scalar(key, value, loop.step)
        last = self.evaluation.last
        if last is not None and last is not self._logged_eval and last.get("miou") == last.get("miou"):  # not NaN
            self._logged_eval = last
            for key, value in _numbers({k: last[k] for k in ("miou", "macc", "aacc", "iou") if k in last}, "val/").items():
                w.add_scalar(key, value, loop.step)
            for i, panel in enumerate(self._panels()):
                w.add_image(f"val/prediction_{i}", panel, loop.step, dataformats="HWC")
        w.flush()

    @torch.no_grad()
    def _panels(self) -> List[Any]:
        """image | prediction | ground truth (palette colours) of the first validation images."""
        from ..data.base import IGNORE_INDEX
        from .sliding_window import predict_whole

        model = self.loop.inference_model()
        was_training = model.training
        model.eval()
        lut = torch.zeros(256, 3, dtype=torch.uint8)
        colours = torch.tensor([list(c) for c in self.palette], dtype=torch.uint8).reshape(-1, 3)[:255]
        lut[: len(colours)] = colours
        panels = []
        for i in range(min(self.images, len(self.dataset))):
            item = self.dataset[i]
            image = item["image"]
            logits = predict_whole(model, image[None].to(self.device).float() / 255.0, int(getattr(model, "size_divisor", 32)))
            pred = lut[logits.argmax(1)[0].cpu()]
            gt = lut[item["mask"].long()] if "mask" in item else torch.zeros_like(pred)
            if "mask" in item:
                gt[item["mask"] == IGNORE_INDEX] = 0
            panels.append(torch.cat([image.permute(1, 2, 0), pred, gt], dim=1).numpy())
        model.train(was_training)
        return panels

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _numbers(record: Dict[str, Any], prefix: str) -> Dict[str, float]:
    """The finite numbers of a (nested) record, keys joined with "/"."""
    out: Dict[str, float] = {}
    for key, value in record.items():
        if isinstance(value, dict):
            out.update(_numbers(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
            out[prefix + key] = float(value)
    return out


class StopOnSignal(HookBase):
    """SIGTERM or Ctrl-C during training stops the run after the step under way (``last.pt`` then holds it).

    One process stops at once. Under DDP every rank must stop after the same step, so the ranks agree (an
    all-reduce, a host sync) at the end of each ``period`` only."""

    def __init__(self, dist: DistInfo, device: torch.device, period: int) -> None:
        self.dist, self.device, self.period = dist, device, int(period)
        self.request: Optional[StopRequest] = None
        self.signum: Optional[int] = None
        self._context: Optional[Any] = None

    def before_train(self) -> None:
        self.signum = None
        self._context = stop_requests()
        self.request = self._context.__enter__()

    def after_step(self) -> None:
        if self.loop.step < self.loop.max_steps and self._agreed():
            self.signum = self.request.signum or signal.SIGTERM  # a DDP rank that got no signal stops with the others
            self.loop.request_stop(SIGNAL_STOP)

    def _agreed(self) -> bool:
        if not self.dist.enabled:
            return bool(self.request)
        if self.loop.step % self.period:
            return False
        flag = torch.tensor(int(bool(self.request)), device=self.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item())

    def close(self) -> None:
        if self._context is not None:
            self._context.__exit__(None, None, None)
            self._context = None


def default_writers(run_folder: Any) -> List[RecordWriter]:
    """The run folder's ``metrics.jsonl``."""
    return [JsonLinesWriter(run_folder)]
