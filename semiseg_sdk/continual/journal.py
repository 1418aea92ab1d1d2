"""The journal of the refresh in progress: ``pending/refresh.json`` states its phase and its field images.

Phases, each recorded (atomic write) after its work is durable:

    ingested  the new images are in the store; the journal lists them (they now count as learned)
    trained   pending/candidate.pt holds the fine-tuned network
    gated     pending/gate.json holds the gate decision
    built     the version folder exists (promotion and the history line may still be missing)

A killed ``run`` leaves the journal behind; the next ``run`` continues from its phase (the training phase from the
trainer's ``last.pt`` in ``pending/train-<version>/``). Without a journal, anything in ``pending/`` is a leftover
of a refresh that finished (or never got its journal written) and is wiped before a new refresh starts.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..utils.atomic import write_json_atomic
from .errors import RegistryError
from .history_log import now_iso
from .version_registry import ModelRegistry

FORMAT = "semiseg-refresh-journal/1"
PHASES = ("ingested", "trained", "gated", "built")


class Journal:
    """Read and advance ``pending/refresh.json``."""

    def __init__(self, reg: ModelRegistry, data: Dict[str, Any]) -> None:
        self.reg, self.data = reg, data

    @staticmethod
    def path_of(reg: ModelRegistry) -> Path:
        return reg.pending / "refresh.json"

    @classmethod
    def load(cls, reg: ModelRegistry) -> Optional["Journal"]:
        """The journal of an unfinished refresh, or None."""
        path = cls.path_of(reg)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:  # written atomically, so only a foreign edit gets here
            raise RegistryError(f"{path}: unreadable refresh journal ({exc}); delete {reg.pending} to drop the "
                                "unfinished refresh (its images will be ingested again)") from exc
        if data.get("format") != FORMAT or data.get("phase") not in PHASES:
            raise RegistryError(f"{path}: not a refresh journal of this version of semiseg")
        return cls(reg, data)

    @classmethod
    def start(cls, reg: ModelRegistry, version: str, parent: str, images: List[Dict[str, Any]],
              **details: Any) -> "Journal":
        """Wipe leftovers in pending/, then write the journal of a new refresh in phase ``ingested``."""
        shutil.rmtree(reg.pending, ignore_errors=True)
        reg.pending.mkdir(parents=True)
        journal = cls(reg, {"format": FORMAT, "version": version, "parent": parent, "phase": "ingested",
                            "started": now_iso(), "images": images, **details})
        journal._write()
        return journal

    @property
    def phase(self) -> str:
        return str(self.data["phase"])

    @property
    def version(self) -> str:
        return str(self.data["version"])

    @property
    def parent(self) -> str:
        return str(self.data["parent"])

    @property
    def images(self) -> List[Dict[str, Any]]:
        return list(self.data["images"])

    @property
    def train_dir(self) -> Path:
        return self.reg.pending / f"train-{self.version}"

    @property
    def candidate_path(self) -> Path:
        return self.reg.pending / "candidate.pt"

    @property
    def gate_path(self) -> Path:
        return self.reg.pending / "gate.json"

    def advance(self, phase: str, **details: Any) -> None:
        """Record that ``phase`` is reached (its outputs must already be durable)."""
        if phase not in PHASES:
            raise ValueError(f"unknown refresh phase {phase!r}")
        self.data.update(details, phase=phase, **{f"{phase}_at": now_iso()})
        self._write()

    def finish(self) -> None:
        """Remove the journal first (the refresh is over), then the rest of pending/."""
        self.path_of(self.reg).unlink(missing_ok=True)
        shutil.rmtree(self.reg.pending, ignore_errors=True)

    def _write(self) -> None:
        write_json_atomic(self.path_of(self.reg), self.data)
