"""A training run's folder: resolved config, metrics (JSON lines), log, checkpoints, split, confusion matrix."""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..utils.atomic import atomic_path, remove_orphan_temporaries, write_json_atomic
from ..utils.folder_lock import acquire_folder_lock, release_folder_lock
from ..utils.json_lines import read_json_lines


class RunFolder:
    """Owns the files of one run; only rank 0 writes (``enabled=False`` elsewhere).

    The writing process holds the folder's lock (:mod:`~semiseg_sdk.utils.folder_lock`) until the last RunFolder
    it opened on that root is closed, or it exits: a second process training into the same folder fails at once,
    naming the holder. Within one process the hold is shared (a run resumed by a second trainer).
    """

    _holds: Dict[str, List[Any]] = {}  # resolved root -> [lock descriptor, open RunFolders on it]

    def __init__(self, root: str | Path, enabled: bool = True) -> None:
        self.root = Path(root)
        self.enabled = enabled
        self.logger = logging.getLogger(f"semiseg.run.{self.root.resolve()}")  # one logger per run folder
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        self._held: Optional[str] = None
        if enabled:
            self._hold()
            log_file = str((self.root / "train.log").resolve())
            if not any(getattr(h, "baseFilename", None) == log_file for h in self.logger.handlers):
                fh = logging.FileHandler(log_file)
                fh.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
                self.logger.addHandler(fh)

    @property
    def best(self) -> Path:
        return self.root / "best.pt"

    @property
    def last(self) -> Path:
        return self.root / "last.pt"

    def write_config(self, cfg: Dict[str, Any]) -> None:
        if self.enabled:
            write_json_atomic(self.root / "config.json", cfg)

    def log_metrics(self, record: Dict[str, Any]) -> None:
        """Append one JSON line to ``metrics.jsonl`` (NaN written as null)."""
        if self.enabled:
            with open(self.root / "metrics.jsonl", "a") as f:
                f.write(json.dumps(_clean(record)) + "\n")

    def truncate_metrics_after(self, step: int) -> None:
        """On resume, drop metric lines written after the checkpoint's step (they will be written again) and lines a
        killed write left torn (logged as a warning)."""
        p = self.root / "metrics.jsonl"
        if not (self.enabled and p.exists()):
            return
        records, torn = read_json_lines(p)
        if torn:
            self.info(f"warning: {p}: dropped {torn} unreadable line(s) (a write cut short)")
        with atomic_path(p) as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in records if r.get("step", 0) <= step))

    def remove_orphan_temporaries(self) -> List[str]:
        """Delete the temporary files of atomic writes a killed process left behind (``.<name>.*.tmp``)."""
        if not self.enabled:
            return []
        removed = [t.name for t in remove_orphan_temporaries(self.root)]
        if removed:
            self.info(f"removed {len(removed)} temporary file(s) of writes cut short: {', '.join(sorted(removed))}")
        return removed

    def info(self, msg: str) -> None:
        """Append a line to ``train.log``."""
        if self.enabled:
            self.logger.info(msg)

    def close(self) -> None:
        """Close ``train.log`` and release the folder's lock (a new RunFolder on the same root takes both again)."""
        for h in list(self.logger.handlers):
            h.close()
            self.logger.removeHandler(h)
        key, self._held = self._held, None
        if key is not None:
            hold = RunFolder._holds[key]
            hold[1] -= 1
            if hold[1] == 0:
                del RunFolder._holds[key]
                release_folder_lock(hold[0])

    def _hold(self) -> None:
        key = str(self.root.resolve())
        if key in RunFolder._holds:
            RunFolder._holds[key][1] += 1
        else:
            RunFolder._holds[key] = [acquire_folder_lock(self.root), 1]
        self._held = key


def _clean(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj
