"""The model registry on disk: immutable versions, an atomically switched ``current`` pointer, a history log.

Layout of a registry folder::

    registry.json          settings written by ``init``: holdout/probe/replay sets, gate policy, source run
    current.json           {"version": "v0003", ...}: the served version, replaced atomically (temp file + fsync +
                           rename; a JSON file rather than a symlink so it works on every filesystem and carries
                           the reason of the switch)
    history.jsonl          append-only events (init, refresh, promote, reject, rollback), torn last line tolerated
    v0001/ v0002/ ...      complete versions: model.pt, model.onnx (promotable versions), gate.json + gate.txt,
                           config.json, manifest.json, version.json (written last)
    .v0003.tmp-XXXX/       a version being built: invisible (the name does not match), renamed when complete
    field/<sha256>.<ext>   the store of accepted field images
    quarantine/            refused field images + reasons.json
    pending/               the journal (refresh.json) and training folder of the refresh in progress
    .lock                  held (flock) by the process that writes
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Union

from ..utils.atomic import _fsync_dir, write_json_atomic  # the one directory fsync of the SDK
from .errors import RegistryError
from .faults import crash_point
from .history_log import append_event, now_iso, read_events

FORMAT = "semiseg-registry/1"
_VERSION = re.compile(r"^v(\d{4,})$")
_BUILDING = re.compile(r"^\.v\d{4,}\.tmp-[0-9a-f]+$")


def version_name(number: int) -> str:
    """``7 -> "v0007"``."""
    return f"v{number:04d}"


def version_number(name: str) -> int:
    """``"v0007" -> 7``; raises RegistryError for anything else."""
    m = _VERSION.match(str(name))
    if not m:
        raise RegistryError(f"'{name}' is not a version name (expected v0001, v0002, ...)")
    return int(m.group(1))


class ModelRegistry:
    """Reads and writes one registry folder (see the module docstring)."""

    def __init__(self, root: Union[str, Path]) -> None:
        self.root = Path(root)
        self.settings_path = self.root / "registry.json"
        self.current_path = self.root / "current.json"
        self.history_path = self.root / "history.jsonl"
        self.store = self.root / "field"
        self.quarantine = self.root / "quarantine"
        self.pending = self.root / "pending"

    # -- reading ------------------------------------------------------------------------------------------------
    def is_registry(self) -> bool:
        return self.settings_path.is_file()

    def settings(self) -> Dict[str, Any]:
        """registry.json; RegistryError when the folder is not a registry."""
        if not self.is_registry():
            raise RegistryError(f"{self.root}: not a model registry (no registry.json); create one with "
                                "`semiseg continual init --registry DIR --from RUN --holdout SET`")
        data = _read_json(self.settings_path)
        if data.get("format") != FORMAT:
            raise RegistryError(f"{self.settings_path}: format {data.get('format')!r}, expected {FORMAT!r}")
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
            raise RegistryError(f"{self.root}: no complete version {version} (known: {', '.join(self.versions()) or 'none'})")
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
        crash_point("switch")
        self.record(event, version=version, previous=previous, **details)

    @contextmanager
    def building(self, version: str) -> Iterator[Path]:
        """Yield a hidden temporary folder; on success its files are fsync'ed and it is renamed to ``version``."""
        final = self.version_dir(version)
        if final.exists():
            raise RegistryError(f"{final}: version already exists; versions are immutable")
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
        """Remove half-built version folders left by a crash; returns their names."""
        stale = [p for p in self.root.iterdir() if p.is_dir() and _BUILDING.match(p.name)] if self.root.is_dir() else []
        for p in stale:
            shutil.rmtree(p, ignore_errors=True)
        return [p.name for p in stale]

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive lock for writers (released by the OS if the process dies); RegistryError when busy."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RegistryError(f"{self.root}: another semiseg continual process is writing this registry "
                                    f"(lock {self.root / '.lock'} is held)") from None
            yield
        finally:
            os.close(fd)


def _read_json(path: Path) -> Dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RegistryError(f"{path}: unreadable ({exc})") from exc
    if not isinstance(data, dict):
        raise RegistryError(f"{path}: expected a JSON object")
    return data


def _fsync_tree(folder: Path) -> None:
    for dirpath, _, files in os.walk(folder):
        for name in files:
            with open(Path(dirpath) / name, "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(Path(dirpath))
