"""The trainer: builds a run (data, model, method, optimiser, precision, resume) and steps it in the training loop.

The loop (:mod:`.train_loop`) owns stepping; logging, the schedule, evaluation, checkpoints, the stop signal and
the progress bar are hooks (:mod:`.hooks`). Method-specific behaviour enters only through the
:class:`~semiseg_sdk.methods.base.Method` contract; staged methods compose several trainer runs (:mod:`.stages`).
"""
from __future__ import annotations

import importlib.util
import math
import shutil
import signal
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch

from ..augment import ViewConfig, ViewMaker, strong_config
from ..config import TrainConfig
from ..data.loader import to_device
from ..errors import CheckpointError, ConfigError
from ..methods import get_method
from ..methods.ema import EMATeacher
from ..methods.labelled_loss import build_labelled_loss
from ..models import AtrousPaddingWarning, atrous_padding_warning, build_model, fit_aspp_rates_to_crop
from ..models.checkpoint import load_checkpoint, save_checkpoint
from ..utils.phase_timer import timed
from ..utils.precision import resolve_amp, resolve_channels_last
from ..utils.reproducibility import rng_state, seed_everything, set_rng_state
from .confusion_plot import save_confusion
from .data_setup import TrainData, build_train_data, make_loaders
from .distributed import barrier, setup_distributed, wrap_method
from .evaluator import EvalWindowWarning, evaluate, window_warning
from ..errors import TrainingInterrupted
from .hooks import (SIGNAL_STOP, Evaluation, FiniteLossCheck, LastCheckpoint, MetricsWriter, PhaseTiming, PolyLR,
                    ProgressBar, StopOnSignal, TensorBoardLog, WeightAverage, default_writers)
from .metrics import format_table
from .optim import build_optimizer
from .run_folder import RunFolder
from .train_loop import HookBase, TrainLoop


def _clock() -> float:
    """Seconds on a monotonic clock (a module function, so a test can set the time)."""
    return time.perf_counter()


class Trainer(TrainLoop):
    """Builds everything a run needs from a :class:`TrainConfig`; :meth:`fit` trains, evaluates and checkpoints."""

    def __init__(self, cfg: TrainConfig, data: Optional[TrainData] = None) -> None:
        """``data`` replaces the datasets/split built from ``cfg`` (staged methods train on pseudo-labelled sets).

        A start that fails (bad data, a model that cannot be built, a checkpoint that does not fit) removes the run
        folder it created, so a corrected command can use the same name."""
        super().__init__()
        self.cfg = cfg
        root = Path(cfg.out) / cfg.run_name()
        fresh = not root.exists()
        try:
            self._build(data)
        except BaseException:
            if fresh and root.is_dir() and getattr(self, "dist", None) is not None and self.dist.is_main:
                self.run.close()
                shutil.rmtree(root, ignore_errors=True)
            raise

    def _build(self, data: Optional[TrainData]) -> None:
        cfg = self.cfg
        self._started, self._seconds_before = _clock(), 0.0  # a resumed run adds the time its earlier processes took
        strong = strong_config(cfg.strong_aug)
        if cfg.tensorboard and importlib.util.find_spec("tensorboard") is None:
            raise ConfigError('--tensorboard needs the tensorboard package: pip install "semiseg-sdk[tensorboard]"')  # a bad strong-view setting fails before anything is written
        self.dist, self.device = setup_distributed(cfg.device)
        self.run = RunFolder(Path(cfg.out) / cfg.run_name(), enabled=self.dist.is_main)
        self.run.remove_orphan_temporaries()
        if self.run.last.exists() and not cfg.resume:
            raise ConfigError(f"{self.run.root.absolute()} already holds a run; pass --resume to continue it or choose "
                              "another --name")
        seed_everything(cfg.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
        self.data = data or self._build_data()
        info = self.data.info
        self.model = build_model(cfg.model, encoder=cfg.encoder, num_classes=info.num_classes,
                                 output_stride=cfg.output_stride, pretrained=cfg.pretrained,
                                 **fit_aspp_rates_to_crop(cfg.model_args, cfg.crop_size, cfg.output_stride))
        padding_warning = atrous_padding_warning(self.model, cfg.crop_size)
        if padding_warning:
            self._warn(padding_warning, AtrousPaddingWarning)
        large_window = window_warning(cfg.eval_window, cfg.crop_size, cfg.eval_mode)
        if large_window:
            self._warn(large_window, EvalWindowWarning)
        views = ViewMaker(ViewConfig(crop_size=cfg.crop_size, scale_range=cfg.scale_range, flip_p=cfg.flip_p, strong=strong))
        method_cls = get_method(cfg.method)
        self.method = method_cls(self.model, info.num_classes, views, method_cls.make_config(cfg.method_args), total_steps=cfg.steps)
        self.method.set_labelled_loss(build_labelled_loss(cfg.sup_loss, cfg.ohem_thresh, cfg.ohem_min_kept))
        self.method.to(self.device)
        if resolve_channels_last(cfg.channels_last, self.device):
            self.method.to(memory_format=torch.channels_last)
        # --weight_ema: an average of the inference network's weights, evaluated and saved in its place (copied
        # before compiling, so the average is a plain module)
        self.weight_average = EMATeacher(self.method.inference_model(), cfg.weight_ema) if cfg.weight_ema else None
        if cfg.compile:  # in place: self.model stays the module the method trains, its state_dict keys unchanged
            self.model.compile()
        sync_bn = cfg.sync_bn == "on" or (cfg.sync_bn == "auto" and self.dist.enabled and self.device.type == "cuda")
        self.ddp = wrap_method(self.method, self.dist, self.device, sync_bn)
        self.optimizer = build_optimizer(self.method.param_groups(cfg.lr, cfg.head_lr_mult), cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum)
        self.amp_dtype = resolve_amp(cfg.amp, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.best_miou, self.best_step = -math.inf, -1
        self.saved_step = -1  # the step last.pt holds (-1: none written by this process)
        self._first_nonfinite = torch.full((), -1, dtype=torch.long, device=self.device)
        resume_state = self._load_resume() if cfg.resume else None
        self.draws = self._start_draws(resume_state)
        self.x_iter, self.u_iter = make_loaders(cfg, self.data, self.draws, method_cls.uses_unlabelled,
                                                rank=self.dist.rank, world_size=self.dist.world_size, pin_memory=self.device.type == "cuda")
        if resume_state is not None:
            set_rng_state(resume_state["rng"])
        if self.dist.enabled:  # each rank its own augmentation stream
            seed_everything(cfg.seed + 1000 * self.dist.rank + self.step)
        self.run.write_config({**cfg.to_dict(), "resolved": {"device": str(self.device), "amp": str(self.amp_dtype),
                               "torch": torch.__version__, "threads": torch.get_num_threads(),
                               "num_classes": info.num_classes, "classes": list(info.classes),
                               "labelled_images": len(self.data.labelled_idx), "unlabelled_images": len(self.data.unlabelled_source()[1]),
                               "method_config": _asdict(self.method.cfg),
                               "model_spec": dict(getattr(self.model, "spec", {}))}})

    # -- checkpoints ----------------------------------------------------------------------------------------------
    def _payload(self, metrics: Dict[str, Any], with_state: bool) -> Dict[str, Any]:
        """What every checkpoint holds; refuses (``check_finite``) once a step's loss was not finite."""
        self.check_finite()
        info = self.data.info
        net = self.inference_model()
        payload = {
            "model_spec": dict(net.spec), "model_state": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "dataset": {"name": info.name, "classes": list(info.classes), "palette": [list(c) for c in info.palette]},
            "metrics": metrics, "step": self.step, "run_dir": str(self.run.root), "method": self.cfg.method,
        }
        if self.weight_average is not None:  # the weights as trained beside their average (``--weights trained``)
            trained = self.method.inference_model().state_dict()
            payload["trained_state"] = {k: v.detach().cpu() for k, v in trained.items()}
        if with_state:
            payload["trainer_state"] = {
                "method": self.method.state_dict(), "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                "best_miou": self.best_miou, "best_step": self.best_step, "rng": rng_state(), "config": self.cfg.to_dict(),
                "world_size": self.dist.world_size, "draws": dict(self.draws), "seconds": self.seconds(),
                "threads": torch.get_num_threads(),
            }
            if self.weight_average is not None:
                payload["trainer_state"]["weight_average"] = self.weight_average.net.state_dict()
        return payload

    def _load_resume(self) -> Optional[Dict[str, Any]]:
        if not self.run.last.exists():
            self.run.info("resume requested but no last.pt yet: starting from scratch")
            return None
        ckpt = load_checkpoint(self.run.last, map_location=self.device)
        state = ckpt.get("trainer_state")
        if state is None:
            raise CheckpointError(f"{self.run.last}: has no trainer_state, cannot resume")
        differ = _changed_settings(state.get("config") or {}, self.cfg.to_dict())
        try:
            self.method.load_state_dict(state["method"])
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise CheckpointError(f"{self.run.last}: does not fit this method/model ({first}); {differ}") from None
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scaler.load_state_dict(state["scaler"])
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise CheckpointError(f"{self.run.last}: its optimiser state does not fit this run "
                                  f"({type(exc).__name__}: {exc}); {differ}") from None
        self._load_weight_average(state.get("weight_average"))
        self._warn_on_other_thread_count(state.get("threads"))
        self._warn_on_other_scoring(state.get("config") or {}, int(ckpt["step"]), float(state["best_miou"]))
        if self.run.best.exists():  # checked now, not when the run ends and reads it for its summary
            try:
                load_checkpoint(self.run.best)
            except CheckpointError as exc:
                raise CheckpointError(f"{exc}; delete it to resume (the next evaluation writes a new best.pt)") from None
        self.step, self.best_miou, self.best_step = int(ckpt["step"]), float(state["best_miou"]), int(state["best_step"])
        self._seconds_before = float(state.get("seconds", 0.0))  # checkpoints from before "seconds": this process only
        self.run.truncate_metrics_after(self.step)
        self.run.info(f"resumed from {self.run.last} at step {self.step}")
        return state

    def _warn_on_other_thread_count(self, saved: Optional[int]) -> None:
        """A CPU run resumed on another number of torch threads sums in another order: it trains on, but no longer
        reproduces the uninterrupted run (two runs of one command agree only on one thread count)."""
        now = torch.get_num_threads()
        if saved is None or int(saved) == now or self.device.type != "cpu":
            return
        msg = (f"{self.run.last} was trained on {saved} torch thread(s), this process has {now}: the resumed run will "
               f"not reproduce an uninterrupted one (set OMP_NUM_THREADS={saved} to keep it exact)")
        self._warn(msg, ThreadCountWarning, stacklevel=4)

    def _warn_on_other_scoring(self, saved: Dict[str, Any], step: int, best: float) -> None:
        """A resume may change how the run is scored (``eval_mode``, ``eval_window``: evaluation leaves training
        untouched), but then its curve mixes two scorings and best.pt was chosen on the earlier one: say so."""
        def scoring(cfg: Dict[str, Any]) -> str:
            window = cfg.get("eval_window")
            where = f"{window[0]}x{window[1]} windows" if window else "no window recorded"
            return f"eval_mode {cfg.get('eval_mode')!r} on {where}"

        before, now = scoring(saved), scoring(self.cfg.to_dict())
        if not saved or before == now:
            return
        msg = (f"{self.run.last} was scored with {before}, this resume scores with {now}: evaluations from step "
               f"{step} on do not compare with the earlier ones, nor with best.pt's {100 * best:.2f} (resume with the "
               f"run's own --eval_mode/--eval_window to keep one scoring, or `semiseg evaluate` a checkpoint on "
               f"another)")
        self._warn(msg, ScoringChangeWarning, stacklevel=4)

    def _warn(self, msg: str, category: type, stacklevel: int = 3) -> None:
        """A warning line in ``train.log`` and, on the main rank, a Python warning of ``category`` (``stacklevel``
        counted from this method)."""
        self.run.info(f"warning: {msg}")
        if self.dist.is_main:
            warnings.warn(msg, category, stacklevel=stacklevel)

    def _load_weight_average(self, saved: Optional[Dict[str, torch.Tensor]]) -> None:
        """Restore the ``--weight_ema`` average of a resumed run; a run saved without one starts it from its weights."""
        if self.weight_average is None:
            return
        if saved is None:
            self.weight_average.net.load_state_dict(self.method.inference_model().state_dict())
            self.run.info(f"{self.run.last} holds no weight average: --weight_ema starts from its weights")
            return
        try:
            self.weight_average.net.load_state_dict(saved)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise CheckpointError(f"{self.run.last}: its weight average does not fit this model ({first})") from None

    def _build_data(self) -> TrainData:
        """Datasets and split; rank 0 writes the split file first, the other ranks then read it."""
        cfg = self.cfg
        split = Path(cfg.split_file) if cfg.split_file else self.run.root / "split.json"
        if not self.dist.is_main:
            barrier(self.dist)
        data = build_train_data(cfg, split)
        if self.dist.is_main:
            barrier(self.dist)
        return data

    def _start_draws(self, state: Optional[Dict[str, Any]]) -> Dict[str, int]:
        """Samples drawn so far per stream over all ranks: a run resumed with another world size or batch size
        continues after the same samples."""
        if state is None:
            return {"labelled": 0, "unlabelled": 0}
        if "draws" in state:
            return {k: int(v) for k, v in state["draws"].items()}
        world = int(state.get("world_size", 1))  # checkpoints from before "draws": assumes unchanged batch sizes
        return {"labelled": self.step * world * self.cfg.batch_size,
                "unlabelled": self.step * world * (self.cfg.unlabelled_batch_size or self.cfg.batch_size)}

    def seconds(self) -> float:
        """Wall seconds this run has taken so far, set-up included, summed over the processes of a resumed run."""
        return self._seconds_before + _clock() - self._started

    # -- evaluation -----------------------------------------------------------------------------------------------
    def inference_model(self) -> torch.nn.Module:
        """The network evaluated and saved: the method's inference network, or its weight average (``--weight_ema``)."""
        return self.method.inference_model() if self.weight_average is None else self.weight_average.net

    def evaluate(self) -> Dict[str, Any]:
        """Evaluate :meth:`inference_model` on the validation split."""
        cfg, info = self.cfg, self.data.info
        return evaluate(self.inference_model(), self.data.val, info.num_classes, info.classes, self.device,
                        mode=cfg.eval_mode,
                        window=cfg.eval_window, batch_size=cfg.eval_batch_size, amp_dtype=self.amp_dtype)

    def eval_and_save(self) -> Dict[str, Any]:
        """Evaluate (rank 0), keep ``best.pt`` when the mIoU improved, write ``last.pt``; returns the metrics."""
        # on every rank, before the barrier (rank 0 checks again in _payload): a rank raising alone would strand the rest
        self.check_finite()
        if not self.dist.is_main:  # rank 0 evaluates and writes; the others wait
            barrier(self.dist)
            return {"miou": float("nan")}
        res = self._eval_and_save_main()
        barrier(self.dist)
        return res

    def _eval_and_save_main(self) -> Dict[str, Any]:
        res = self.evaluate()
        confusion = res.pop("confusion")
        self.run.log_metrics({"step": self.step, "eval": res})
        if res["miou"] > self.best_miou:
            self.best_miou, self.best_step = res["miou"], self.step
            save_checkpoint(self.run.best, self._payload(res, with_state=False))
            save_confusion(confusion, list(self.data.info.classes), self.run.root)
        self.save_last(res)
        self.run.info(f"step {self.step}: mIoU {100 * res['miou']:.2f} (best {100 * self.best_miou:.2f} @ {self.best_step})")
        return res

    def save_last(self, metrics: Optional[Dict[str, Any]] = None) -> None:
        """Write the resumable ``last.pt`` at the current step (rank 0 only); ``metrics``: this step's evaluation, if any."""
        if self.dist.is_main:
            save_checkpoint(self.run.last, self._payload(dict(metrics or {}), with_state=True))
        self.saved_step = self.step

    # -- the loop -------------------------------------------------------------------------------------------------
    def run_step(self) -> Dict[str, torch.Tensor]:
        """One optimiser step (forward through the method, backward, optimiser, precision); returns the loss terms
        as detached 0-dim float tensors on the training device. The learning rate is the schedule hook's.

        Nothing in a step waits for the device: a non-finite loss is noted on the device and raised by
        :meth:`check_finite`, which a hook calls at every log step and which runs before every checkpoint is
        written, so the host queues the next step while the device still runs this one."""
        cfg = self.cfg
        with timed("data"):
            x = to_device(next(self.x_iter), self.device)
            u = to_device(next(self.u_iter), self.device) if self.u_iter is not None else None
        self.draws["labelled"] += cfg.batch_size * self.dist.world_size
        self.draws["unlabelled"] += (cfg.unlabelled_batch_size or cfg.batch_size) * self.dist.world_size
        self.method.train()
        if cfg.freeze_bn:  # part of how the step runs its forward, like precision
            for m in self.method.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()
        with timed("forward_backward"):  # augmentation inside the method's step is timed as "augmentation"
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
                out = self.ddp(x, u, self.step)
            loss = out["loss"]
            self._note_nonfinite(loss)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
        with timed("optimizer"):
            if cfg.grad_clip:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]], cfg.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.method.after_optimizer_step(self.step)
        self.step += 1
        return {k: v.detach().float() for k, v in out.items()}

    def _note_nonfinite(self, loss: torch.Tensor) -> None:
        """Record on the device the first step whose loss is not finite (-1: none yet), without a host sync."""
        fresh = ~torch.isfinite(loss.detach()) & (self._first_nonfinite < 0)
        self._first_nonfinite = torch.where(fresh, self.step, self._first_nonfinite)

    def check_finite(self, terms: Optional[Dict[str, float]] = None) -> None:
        """Raise ``FloatingPointError`` if a step since the start had a non-finite loss (waits for the device).

        Runs before every checkpoint write, so no checkpoint ever holds the weights such a step produced."""
        first = int(self._first_nonfinite)
        if first >= 0:
            seen = f"; loss terms averaged since the last log: {terms}" if terms else ""
            raise FloatingPointError(f"step {first}: loss is not finite{seen}; lower --lr or check the data "
                                     f"(no checkpoint was written after it)")

    def save_inference_checkpoint(self, path: str | Path, metrics: Optional[Dict[str, Any]] = None) -> None:
        """Save the current inference network (no trainer state) as a checkpoint at ``path``."""
        save_checkpoint(path, self._payload(dict(metrics or {}), with_state=False))

    def default_hooks(self, extra: Sequence[HookBase] = ()) -> List[HookBase]:
        """The hooks of a run, in order (see :mod:`.hooks`); ``extra`` go after logging, before evaluation."""
        cfg = self.cfg
        images_per_step = cfg.batch_size + ((cfg.unlabelled_batch_size or cfg.batch_size) if self.u_iter is not None else 0)
        evaluation = Evaluation(cfg.eval_every)
        return [
            PolyLR(self.optimizer, cfg.steps, cfg.poly_power),
            WeightAverage(self.weight_average, self.method.inference_model) if self.weight_average is not None else None,
            PhaseTiming(self.device, cfg.log_every) if cfg.time_phases else None,
            FiniteLossCheck(cfg.log_every),
            MetricsWriter(default_writers(self.run), cfg.log_every, images_per_step, self.optimizer),
            *extra,
            evaluation,
            LastCheckpoint(cfg.save_every),
            ProgressBar(cfg.method, cfg.progress and self.dist.is_main, evaluation),
            TensorBoardLog(self.run.root / "tensorboard", evaluation, self.data.val, self.data.info.palette, self.device)
            if cfg.tensorboard and self.dist.is_main else None,
            StopOnSignal(self.dist, self.device, cfg.log_every),
        ]

    def fit(self, hooks: Sequence[HookBase] = ()) -> Dict[str, Any]:
        """Train to ``cfg.steps`` with :meth:`default_hooks` (plus ``hooks``); returns a summary dict.

        ``hooks`` run after every step's logging and before its evaluation and ``last.pt`` (so a run resumed from
        ``last.pt`` has passed every hook call before it): staged methods keep snapshots this way (ST++ saves the
        SupOnly model at 1/3, 2/3 and the end of its training).

        ``last.pt`` is written at every evaluation, every ``save_every`` steps and where the run stops early.
        SIGTERM or Ctrl-C stops the run after the step under way and raises :class:`TrainingInterrupted` (resume
        continues). A hook's stop request (:meth:`~.train_loop.TrainLoop.request_stop`) ends the run the same way
        but returns: the summary's ``stopped`` is the reason, its ``final_miou`` None.
        """
        cfg = self.cfg
        self.run.info(f"training {cfg.method} / {cfg.model}-{cfg.encoder} on {cfg.data} ({cfg.labelled} labelled) on {self.device}")
        self.hooks = []
        self.register_hooks(self.default_hooks(hooks))
        self.train(cfg.steps)
        evaluation = next(h for h in self.hooks if isinstance(h, Evaluation))
        if self.stop_reason is not None:
            barrier(self.dist)
            if self.stop_reason == SIGNAL_STOP:
                signum = next(h for h in self.hooks if isinstance(h, StopOnSignal)).signum
                msg = (f"stopped at step {self.step} of {cfg.steps} by {signal.Signals(signum).name}: {self.run.last} "
                       f"holds it; run the same command with --resume to continue")
                self.run.info(msg)
                raise TrainingInterrupted(msg, self.step, signum)
            self.run.info(f"stopped at step {self.step} of {cfg.steps} ({self.stop_reason}): {self.run.last} holds it")
            return {"run_dir": str(self.run.root), "best_miou": self.best_miou, "best_step": self.best_step,
                    "final_miou": None, "steps": self.step, "table": "", "stopped": self.stop_reason,
                    "minutes": self.seconds() / 60}
        last = evaluation.last
        if not self.dist.is_main:
            return {"run_dir": str(self.run.root), "best_miou": float("nan"), "best_step": -1, "final_miou": float("nan"),
                    "steps": self.step, "table": ""}
        best = load_checkpoint(self.run.best)["metrics"] if self.run.best.exists() else last
        table = format_table(best)
        self.run.info("best checkpoint per-class IoU:\n" + table)
        return {"run_dir": str(self.run.root), "best_miou": best["miou"], "best_step": self.best_step,
                "final_miou": last["miou"], "steps": self.step, "table": table, "minutes": self.seconds() / 60}

    def close(self) -> None:
        """Release the run folder's log file (the trainer's objects stay usable)."""
        self.run.close()


def train(cfg: TrainConfig) -> Dict[str, Any]:
    """Train a run from a config; returns ``{"run_dir", "best_miou", "best_step", "final_miou", "steps", "table",
    "minutes"}`` (``minutes``: wall time summed over every process of a resumed run; staged runs may omit it).

    Methods that train in stages (self-training, ST++; ``Method.staged``) compose the run from stages themselves
    (``run_stages(cfg, open_run)``); each training stage is an ordinary :class:`Trainer` run in a sub-folder.
    """
    method_cls = get_method(cfg.method)
    if method_cls.staged:
        from .stages import StagedRun

        return method_cls.run_stages(cfg, lambda budget, tag: StagedRun(cfg, budget, tag))
    return Trainer(cfg).fit()


class ThreadCountWarning(UserWarning):
    """A CPU run resumed on another number of torch threads than it was trained on."""


class ScoringChangeWarning(UserWarning):
    """A run resumed with another evaluation mode or window than it was scored on until then."""


# Settings a resumed run may change without changing what it trains (budget, logging, workers, evaluation).
_RESUMABLE_CHANGES = {"resume", "progress", "num_workers", "eval_batch_size", "log_every", "device", "steps",
                      "save_every", "eval_every", "eval_mode", "eval_window", "out", "name", "time_phases", "check_data",
                      "data_cache_mb", "batch_size", "unlabelled_batch_size", "tensorboard"}


def _changed_settings(saved: Dict[str, Any], now: Dict[str, Any]) -> str:
    """What a resume changes against the run's saved config, as a hint for an error message."""
    changed = [f"--{k} {now.get(k)!r} (the run: {saved.get(k)!r})" for k in sorted(set(saved) | set(now))
               if k not in _RESUMABLE_CHANGES and _comparable(saved.get(k)) != _comparable(now.get(k))]
    if not changed:
        return "resume with the flags the run was started with (its config.json)"
    return "settings that differ from the run's: " + ", ".join(changed[:5]) + (" ..." if len(changed) > 5 else "")


def _comparable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _asdict(obj: Any) -> Any:
    import dataclasses

    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj
