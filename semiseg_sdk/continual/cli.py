"""``semiseg continual``: the fire-friendly command group of the continual loop (plain arguments, plain results).

Wire it into the main CLI as an attribute (``continual = ContinualCLI()``), or run it alone with
``python -m semiseg_sdk.continual``.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Union


class ContinualCLI:
    """Keep a deployed model learning from unlabelled field images, gated on a frozen labelled set.

      semiseg continual init --store fleet/ --from runs/day --holdout synthetic-driving:val [--probe SET]
      semiseg continual run --store fleet/ --incoming field/ [--watch] [--min_images 16] [--steps 300]
      semiseg continual status --store fleet/      semiseg continual history --store fleet/
      semiseg continual promote v0003 --store fleet/      semiseg continual rollback --store fleet/

    A labelled set is DATASET:SPLIT[,KEY=VALUE...] (e.g. synthetic-driving:val,domain=fog,size=64x128) or the path
    of a folder layout (images/ + masks/), optionally PATH:SPLIT.
    """

    def init(self, store: str, holdout: Any = None, probe: Any = None, replay: Any = None, source: Optional[str] = None,
             tolerance: float = 0.5, collapse_ratio: float = 0.5, collapse_min: float = 10.0, collapse_floor: float = 5.0,
             max_drift: Optional[float] = 1.0, probe_tolerance: Optional[float] = 0.5, device: str = "auto",
             **flags: Any) -> Dict[str, Any]:
        """Create a store: v0001 = the model of --from RUN_OR_CHECKPOINT, exported, evaluated, current.

        --holdout SET (required): frozen labelled set of the gate, never trained on. --probe SET: labelled set of the
        new domain (reported; must not regress by more than --probe_tolerance points, None = report only).
        --replay SET: labelled images replayed while fine-tuning (default: the source run's labelled training set).
        Gate (points of mIoU/IoU): --tolerance 0.5, --collapse_ratio 0.5 with --collapse_min 10, --collapse_floor 5,
        --max_drift 1.0 (from v0001; None = off).
        """
        from ..errors import ConfigError
        from .gate import GatePolicy
        from .store_init import init_store

        source = flags.pop("from", source)
        if flags:
            raise ConfigError(f"continual init: unknown flag(s) {sorted(flags)}")
        if source is None or holdout is None:
            raise ConfigError("continual init: --from RUN_OR_CHECKPOINT and --holdout LABELLED_SET are required")
        policy = GatePolicy(float(tolerance), float(collapse_ratio), float(collapse_min), float(collapse_floor),
                            None if max_drift is None else float(max_drift),
                            None if probe_tolerance is None else float(probe_tolerance))
        return init_store(store, str(source), holdout, probe, replay, policy, device)

    def run(self, store: str, incoming: Optional[str] = None, watch: bool = False, min_images: int = 16,
            steps: Optional[int] = None, max_minutes: Optional[float] = None, poll_seconds: float = 30.0,
            device: str = "auto", settle_seconds: float = 2.0, remove_ingested: bool = False, progress: bool = True,
            adapt: Optional[Dict[str, Any]] = None, max_refreshes: Optional[int] = None) -> Dict[str, Any]:
        """One refresh (ingest -> fine-tune -> gate -> promote/keep), or --watch the folder until Ctrl-C/SIGTERM.

        --incoming DIR: new field images (copied, never moved; --remove_ingested deletes them once recorded).
        --min_images N: new images needed to start a refresh. --steps N / --max_minutes M: training budget.
        --adapt '{"conf_thresh": 0.95, "lr": 0.001, ...}': other fine-tuning options (AdaptOptions).
        A killed or interrupted refresh is resumed by the next run.
        """
        from .adapt import AdaptOptions, RunOptions, make_options
        from .refresh import run_refresh, stop_on_signals, watch as watch_loop

        budget = {k: v for k, v in (("steps", steps), ("max_minutes", max_minutes)) if v is not None}
        adapt_opts = make_options(AdaptOptions, {**dict(adapt or {}), **budget})
        run_opts = make_options(RunOptions, {"min_images": min_images, "device": device, "settle_seconds": settle_seconds,
                                             "remove_ingested": remove_ingested, "progress": progress})
        with stop_on_signals() as stop:
            if watch:
                if incoming is None:
                    from ..errors import ConfigError

                    raise ConfigError("continual run --watch needs --incoming DIR")
                return watch_loop(store, incoming, adapt_opts, run_opts, poll_seconds, max_refreshes, stop)
            result = run_refresh(store, incoming, adapt_opts, run_opts, stop)
        result.pop("report", None)  # printed already
        return result

    def status(self, store: str) -> Dict[str, Any]:
        """Current version, all versions with their gate results, pending refresh, image counts."""
        from .refresh import store_status

        return store_status(store)

    def history(self, store: str, limit: Optional[int] = None) -> List[Dict[str, Any]]:
        """The store's events (init, promote, reject, rollback, skip), oldest first."""
        from .store import store_history

        return store_history(store, limit)

    def promote(self, version: Union[str, int], store: str) -> Dict[str, Any]:
        """Make VERSION current (only versions whose gate passed)."""
        from .store import promote_version, version_name

        return promote_version(store, version_name(version) if isinstance(version, int) else str(version))

    def rollback(self, store: str) -> Dict[str, Any]:
        """Move current back to the newest older version whose gate passed."""
        from .store import rollback

        return rollback(store)
