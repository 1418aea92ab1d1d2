"""Inspect and steer a registry: status, history, manual promote, rollback.

``rollback`` moves ``current`` to the newest version older than it whose gate passed (rejected candidates are
never served); ``promote VERSION`` moves it to any version whose gate passed (e.g. forward again after a rollback,
or a candidate left unpromoted because ``current`` moved while it was gated). Both take the registry lock and are
recorded in the history.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from .errors import RegistryError
from .history_log import read_events
from .ingest import learned_images, read_quarantine
from .journal import Journal
from .version_registry import ModelRegistry, version_number


def registry_status(registry: str) -> Dict[str, Any]:
    """Current version and its metrics, versions, pending refresh, field images learned and quarantined."""
    reg = ModelRegistry(registry)
    settings = reg.settings()
    current = reg.current()
    versions = [reg.read_version(v) for v in reg.versions()]
    journal = Journal.load(reg)
    _, torn = read_events(reg.history_path)
    cur = next((v for v in versions if v["version"] == current), None)
    return {
        "registry": str(reg.root), "current": current,
        "current_holdout_miou": cur["gate"]["holdout_miou"] if cur else None,
        "current_probe_miou": cur["gate"]["probe_miou"] if cur else None,
        "versions": [{"version": v["version"], "status": v["status"], "parent": v["parent"], "kind": v["kind"],
                      "created": v["created"], "holdout_miou": v["gate"]["holdout_miou"],
                      "probe_miou": v["gate"]["probe_miou"], "new_images": v["images"]["new"]} for v in versions],
        "pending": None if journal is None else {"version": journal.version, "phase": journal.phase,
                                                 "images": len(journal.images)},
        "field_images": len(learned_images(reg, journal.images if journal else ())),
        "quarantined": len(read_quarantine(reg)), "holdout": settings["holdout"], "probe": settings.get("probe"),
        "unreadable_history_lines": torn,
    }


def registry_history(registry: str, limit: Optional[int] = None) -> List[Dict[str, Any]]:
    """History events, oldest first (the last ``limit`` when given)."""
    reg = ModelRegistry(registry)
    reg.settings()
    events = reg.history()
    return events[-int(limit):] if limit else events


def promote_version(registry: str, version: str, reason: str = "manual promote") -> Dict[str, Any]:
    """Make ``version`` (a version whose gate passed) current."""
    reg = ModelRegistry(registry)
    reg.settings()
    with reg.locked():
        record = reg.read_version(version)
        if record["status"] != "passed":
            raise RegistryError(f"{reg.version_dir(version)}: the gate rejected this version "
                                f"({'; '.join(record['gate']['reasons'])}); only versions that passed it can be served")
        previous = reg.current()
        if previous == version:
            return {"current": version, "previous": previous, "changed": False}
        reg.set_current(version, "promote", reason=reason)
    return {"current": version, "previous": previous, "changed": True}


def rollback(registry: str, reason: str = "manual rollback") -> Dict[str, Any]:
    """Move ``current`` to the newest passed version older than it."""
    reg = ModelRegistry(registry)
    reg.settings()
    with reg.locked():
        current = reg.current()
        if current is None:
            raise RegistryError(f"{reg.root}: no current version to roll back from")
        older = [v for v in reg.versions() if version_number(v) < version_number(current)
                 and reg.read_version(v)["status"] == "passed"]
        if not older:
            raise RegistryError(f"{reg.root}: {current} is the oldest served version; nothing to roll back to")
        target = older[-1]
        reg.set_current(target, "rollback", reason=reason)
    return {"current": target, "previous": current}
