"""The model store on disk: immutable versions, an atomically switched ``current`` pointer, a history log, the
journal of the refresh in progress, and the store's operations (promote, rollback, history).

Layout of a store folder::

    store.json             settings written by ``init``: holdout/probe/replay sets, gate policy, source run, how the
                           gate scores images (``scoring``: the source run's evaluation mode and window)
                           (``registry.json`` in stores made by earlier versions: still read)
    current.json           {"version": "v0003", ...}: the served version, replaced atomically (temp file + fsync +
                           rename; a JSON file rather than a symlink so it works on every filesystem and carries
                           the reason of the switch)
    history.jsonl          append-only events (init, refresh, promote, reject, rollback), fsync'ed; a torn last line
                           is skipped and closed before the next append
    v0001/ v0002/ ...      complete versions: model.pt, model.onnx (promotable versions), gate.json + gate.txt,
                           config.json, manifest.json, version.json (written last)
    .v0003.tmp-XXXX/       a version being built: invisible (the name does not match), renamed when complete
    field/<sha256>.<ext>   accepted field images
    quarantine/            refused field images + reasons.json
    pending/               the journal (refresh.json) and training folder of the refresh in progress
    .lock                  held (flock) by the process that writes

Journal phases (``pending/refresh.json``), each recorded (atomic write) after its work is durable: ``ingested`` (the
new images are in the store and count as learned), ``trained`` (``pending/candidate.pt``), ``gated``
(``pending/gate.json``), ``built`` (the version folder exists; promotion and the history line may still be missing).
A killed ``run`` leaves the journal behind and the next ``run`` continues from its phase; without a journal anything
in ``pending/`` is a leftover and is wiped before a new refresh starts.

``rollback`` moves ``current`` to the newest older version whose gate passed (rejected candidates are never served);
``promote VERSION`` moves it to any passed version. Both take the store's lock and are recorded in the history.
"""
from __future__ import annotations

import datetime
import json
import os
import re
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple, Union

from ..errors import SemisegError
from ..models.checkpoint import load_checkpoint, load_inference_model, save_checkpoint
# _fsync_dir: the one directory fsync of the SDK
from ..utils.atomic import _fsync_dir, remove_orphan_temporaries, write_json_atomic, write_text_atomic
from ..utils.folder_lock import LOCK_NAME, FolderInUseError, acquire_folder_lock, release_folder_lock
from ..utils.json_lines import read_json_lines


class StoreError(SemisegError, RuntimeError):
    """The store folder is missing, incomplete, busy or asked for something it cannot do; names the path."""


class RefreshInterrupted(SemisegError, RuntimeError):
    """A refresh stopped on Ctrl-C/SIGTERM between two steps; the journal keeps it, the next ``run`` resumes it."""


def now_iso() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def append_event(path: Path, event: Dict[str, Any]) -> Dict[str, Any]:
    """Append ``{"time": ..., **event}`` as one line; returns the written record."""
    record = {"time": now_iso(), **event}
    line = json.dumps(record, default=str) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab+") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":  # a torn last line: close it so it stays a single (skipped) bad line
                f.write(b"\n")
        f.write(line.encode())
        f.flush()
        os.fsync(f.fileno())
    return record


def read_events(path: Path) -> Tuple[List[Dict[str, Any]], int]:
    """``(events, skipped)``: every line that is a JSON object, in order, and the number of unreadable lines."""
    return read_json_lines(path)


STORE_FORMAT = "semiseg-registry/1"  # on-disk format names are unchanged: stores made by earlier versions open
LEGACY_SETTINGS = "registry.json"  # the settings file of stores made by earlier versions
_VERSION = re.compile(r"^v(\d{4,})$")
_BUILDING = re.compile(r"^\.v\d{4,}\.tmp-[0-9a-f]+$")


def version_name(number: int) -> str:
    """``7 -> "v0007"``."""
    return f"v{number:04d}"


def version_number(name: str) -> int:
    """``"v0007" -> 7``; raises StoreError for anything else."""
    m = _VERSION.match(str(name))
    if not m:
        raise StoreError(f"'{name}' is not a version name (expected v0001, v0002, ...)")
    return int(m.group(1))


class ModelStore:
    """Reads and writes one store folder (see the module docstring)."""

    def __init__(self, root: Union[str, Path]) -> None:
        self.root = Path(root)
        self.settings_path = self.root / "store.json"
        if not self.settings_path.is_file() and (self.root / LEGACY_SETTINGS).is_file():
            self.settings_path = self.root / LEGACY_SETTINGS
        self.current_path = self.root / "current.json"
        self.history_path = self.root / "history.jsonl"
        self.store = self.root / "field"
        self.quarantine = self.root / "quarantine"
        self.pending = self.root / "pending"

    # -- reading ------------------------------------------------------------------------------------------------
    def is_store(self) -> bool:
        return self.settings_path.is_file()

    def settings(self) -> Dict[str, Any]:
        """store.json; StoreError when the folder is not a store."""
        if not self.is_store():
            raise StoreError(f"{self.root}: not a model store (no store.json); create one with "
                                "`semiseg continual init --store DIR --from RUN --holdout SET`")
        data = _read_json(self.settings_path)
        if data.get("format") != STORE_FORMAT:
            raise StoreError(f"{self.settings_path}: format {data.get('format')!r}, expected {STORE_FORMAT!r}")
        return data

    def version_dir(self, version: str) -> Path:
        version_number(version)
        return self.root / version

    def versions(self) -> List[str]:
        """Complete versions (their version.json exists), oldest first."""
        if not self.root.is_dir():
            return []
        found = [p.name for p in self.root.iterdir() if _VERSION.match(p.name) and (p / "version.json").is_file()]
        return sorted(found, key=version_number)

    def read_version(self, version: str) -> Dict[str, Any]:
        """version.json of a complete version."""
        path = self.version_dir(version) / "version.json"
        if not path.is_file():
            raise StoreError(f"{self.root}: no complete version {version} (known: {', '.join(self.versions()) or 'none'})")
        return _read_json(path)

    def current(self) -> Optional[str]:
        """The served version, or None before ``init`` completed."""
        if not self.current_path.is_file():
            return None
        return str(_read_json(self.current_path)["version"])

    def history(self) -> List[Dict[str, Any]]:
        """Events of history.jsonl in order (unreadable lines skipped)."""
        return read_events(self.history_path)[0]

    def next_version(self) -> str:
        """The name after the highest complete version."""
        numbers = [version_number(v) for v in self.versions()]
        return version_name(max(numbers, default=0) + 1)

    # -- writing ------------------------------------------------------------------------------------------------
    def record(self, event: str, **details: Any) -> Dict[str, Any]:
        """Append an event to the history."""
        return append_event(self.history_path, {"event": event, **details})

    def set_current(self, version: str, event: str, **details: Any) -> None:
        """Point ``current`` at a complete version (atomic replace), then record the event."""
        self.read_version(version)
        previous = self.current()
        write_json_atomic(self.current_path, {"version": version, "previous": previous, "event": event, "time": now_iso()})
        self.record(event, version=version, previous=previous, **details)

    @contextmanager
    def building(self, version: str) -> Iterator[Path]:
        """Yield a hidden temporary folder; on success its files are fsync'ed and it is renamed to ``version``."""
        final = self.version_dir(version)
        if final.exists():
            raise StoreError(f"{final}: version already exists; versions are immutable")
        tmp = self.root / f".{version}.tmp-{secrets.token_hex(4)}"
        tmp.mkdir(parents=True)
        try:
            yield tmp
            _fsync_tree(tmp)
            os.rename(tmp, final)
            _fsync_dir(self.root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def clean_stale_builds(self) -> List[str]:
        """Remove half-built version folders and the temporary files of atomic writes (``.<name>.*.tmp``, in the
        store, ``field/``, ``quarantine/`` and ``pending/``) that a crash left; returns their store-relative names."""
        if not self.root.is_dir():
            return []
        stale = [p for p in self.root.iterdir() if p.is_dir() and _BUILDING.match(p.name)]
        for p in stale:
            shutil.rmtree(p, ignore_errors=True)
        temporaries = [t for folder in (self.root, self.store, self.quarantine, self.pending)
                       for t in remove_orphan_temporaries(folder)]
        return [p.name for p in stale] + [str(t.relative_to(self.root)) for t in temporaries]

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive lock for writers (released by the OS if the process dies); StoreError when busy."""
        try:
            fd = acquire_folder_lock(self.root)
        except FolderInUseError as exc:
            raise StoreError(f"{self.root}: another semiseg continual process (pid {exc.holder}) is writing this "
                             f"store (lock {self.root / LOCK_NAME} is held)") from None
        try:
            yield
        finally:
            release_folder_lock(fd)


def _read_json(path: Path) -> Dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path}: unreadable ({exc})") from exc
    if not isinstance(data, dict):
        raise StoreError(f"{path}: expected a JSON object")
    return data


def _fsync_tree(folder: Path) -> None:
    for dirpath, _, files in os.walk(folder):
        for name in files:
            with open(Path(dirpath) / name, "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(Path(dirpath))


JOURNAL_FORMAT = "semiseg-refresh-journal/1"
PHASES = ("ingested", "trained", "gated", "built")


class Journal:
    """Read and advance ``pending/refresh.json``."""

    def __init__(self, reg: ModelStore, data: Dict[str, Any]) -> None:
        self.reg, self.data = reg, data

    @staticmethod
    def path_of(reg: ModelStore) -> Path:
        return reg.pending / "refresh.json"

    @classmethod
    def load(cls, reg: ModelStore) -> Optional["Journal"]:
        """The journal of an unfinished refresh, or None."""
        path = cls.path_of(reg)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:  # written atomically, so only a foreign edit gets here
            raise StoreError(f"{path}: unreadable refresh journal ({exc}); delete {reg.pending} to drop the "
                                "unfinished refresh (its images will be ingested again)") from exc
        if data.get("format") != JOURNAL_FORMAT or data.get("phase") not in PHASES:
            raise StoreError(f"{path}: not a refresh journal of this version of semiseg")
        return cls(reg, data)

    @classmethod
    def start(cls, reg: ModelStore, version: str, parent: str, images: List[Dict[str, Any]],
              **details: Any) -> "Journal":
        """Wipe leftovers in pending/, then write the journal of a new refresh in phase ``ingested``."""
        shutil.rmtree(reg.pending, ignore_errors=True)
        reg.pending.mkdir(parents=True)
        journal = cls(reg, {"format": JOURNAL_FORMAT, "version": version, "parent": parent, "phase": "ingested",
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


VERSION_FORMAT = "semiseg-registry-version/1"


def write_version(reg: ModelStore, version: str, *, parent: Optional[str], kind: str, checkpoint: Path,
                  gate: Mapping[str, Any], gate_text: str, manifest: Mapping[str, Any], config: Mapping[str, Any],
                  details: Optional[Mapping[str, Any]] = None, verbose: bool = False) -> Dict[str, Any]:
    """Build version ``version`` from a checkpoint and its gate record; returns its version.json."""
    from semiseg_export import ExportError, export_model  # pulls in onnx/onnxruntime: import on use

    passed = bool(gate["decision"]["passed"])
    final = reg.version_dir(version)
    holdout = gate["candidate"]["holdout"]
    with reg.building(version) as tmp:
        ckpt = load_checkpoint(checkpoint)
        payload = {k: v for k, v in ckpt.items() if k not in ("format", "path", "trainer_state")}
        payload.update(metrics={k: holdout[k] for k in ("miou", "macc", "aacc")}, run_dir=str(final),
                       store={"version": version, "parent": parent})
        save_checkpoint(tmp / "model.pt", payload)
        files = ["model.pt", "gate.json", "gate.txt", "manifest.json", "config.json"]
        if passed:  # the ONNX metadata name the final checkpoint path, not the temporary one
            model, saved = load_inference_model(tmp / "model.pt")
            saved["path"] = str(final / "model.pt")
            try:
                summary = export_model(model, str(tmp / "model.onnx"), checkpoint=saved, verbose=verbose)
            except ExportError as exc:  # a model that cannot be shipped is refused like one that fails the gate
                passed = False
                decision = {**gate["decision"], "passed": False, "reasons": [*gate["decision"]["reasons"],
                                                                               f"ONNX export failed: {exc}"]}
                gate = {**gate, "decision": decision}
                gate_text = gate_text.replace("gate: PASSED", "gate: REJECTED") + f"  - ONNX export failed: {exc}\n"
            else:
                summary["output"] = str(final / "model.onnx")
                write_json_atomic(tmp / "export.json", summary)
                files += ["model.onnx", "export.json"]
        write_json_atomic(tmp / "gate.json", gate)
        write_text_atomic(tmp / "gate.txt", gate_text)
        write_json_atomic(tmp / "manifest.json", manifest)
        write_json_atomic(tmp / "config.json", config)
        record = {
            "format": VERSION_FORMAT, "version": version, "parent": parent, "kind": kind,
            "status": "passed" if passed else "rejected", "created": now_iso(),
            "gate": {"passed": passed, "reasons": list(gate["decision"]["reasons"]),
                     "holdout_miou": holdout["miou"],
                     "probe_miou": gate["candidate"]["probe"]["miou"] if "probe" in gate["candidate"] else None},
            "images": {"new": len(manifest.get("new_images", [])), "trained_on": len(manifest.get("trained_on", []))},
            "files": files + ["version.json"], **dict(details or {}),
        }
        write_json_atomic(tmp / "version.json", record)
    return record


def store_history(store: str, limit: Optional[int] = None) -> List[Dict[str, Any]]:
    """History events, oldest first (the last ``limit`` when given)."""
    reg = ModelStore(store)
    reg.settings()
    events = reg.history()
    return events[-int(limit):] if limit else events


def promote_version(store: str, version: str, reason: str = "manual promote") -> Dict[str, Any]:
    """Make ``version`` (a version whose gate passed) current."""
    reg = ModelStore(store)
    reg.settings()
    with reg.locked():
        record = reg.read_version(version)
        if record["status"] != "passed":
            raise StoreError(f"{reg.version_dir(version)}: the gate rejected this version "
                                f"({'; '.join(record['gate']['reasons'])}); only versions that passed it can be served")
        previous = reg.current()
        if previous == version:
            return {"current": version, "previous": previous, "changed": False}
        reg.set_current(version, "promote", reason=reason)
    return {"current": version, "previous": previous, "changed": True}


def rollback(store: str, reason: str = "manual rollback") -> Dict[str, Any]:
    """Move ``current`` to the newest passed version older than it."""
    reg = ModelStore(store)
    reg.settings()
    with reg.locked():
        current = reg.current()
        if current is None:
            raise StoreError(f"{reg.root}: no current version to roll back from")
        older = [v for v in reg.versions() if version_number(v) < version_number(current)
                 and reg.read_version(v)["status"] == "passed"]
        if not older:
            raise StoreError(f"{reg.root}: {current} is the oldest served version; nothing to roll back to")
        target = older[-1]
        reg.set_current(target, "rollback", reason=reason)
    return {"current": target, "previous": current}
