"""Is a field image usable? Decodable, complete, big enough and not blank; otherwise a reason code and detail.

Codes: ``unreadable`` (not an image OpenCV decodes, empty, unreadable file), ``truncated`` (a PNG without its IEND
chunk or a JPEG without its end marker: a partial upload), ``too_small`` (a side under ``min_side`` pixels),
``blank`` (near-constant: the largest per-channel standard deviation is under ``blank_std`` grey levels; a lens cap,
a black frame, a saturated sensor; real frames, even in fog or at night, lie far above).

Ingest field images: scan the incoming folder, de-duplicate by content, check, store or quarantine.

Every image file of the incoming folder (recursively; hidden files skipped; by extension) ends in exactly one of:

* the manifest of a version (or the journal of the refresh in progress): its sha256 is in the store
  ``field/<sha256>.<ext>``, copied there (never moved) — the same bytes under several names count once, and bytes
  already learned from are not learned again;
* the quarantine: ``quarantine/<sha256>.<ext>`` (a copy) and ``quarantine/reasons.json`` (sha256 -> code, detail,
  source paths), for unreadable, truncated, too small or blank files; symbolic links, devices, pipes and anything
  else that is not a regular file inside the incoming folder are quarantined by name only (code
  ``not-a-regular-file``): their target is never opened, read or copied;
* waiting: too few new images for a refresh, or modified less than ``settle_seconds`` ago (still being written).

Nothing is deleted from the incoming folder unless ``remove_ingested`` is asked for (see ``refresh.py``).
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Dict, Iterable, List, Mapping, Optional, Set, Tuple

from ..data.folder import IMAGE_EXTENSIONS
from ..data.image_io import read_image
from ..errors import DataError
from ..utils.atomic import atomic_path, write_json_atomic
from .store import ModelStore


CODES = ("unreadable", "truncated", "too_small", "blank")


@dataclass(frozen=True)
class ImageChecks:
    """Thresholds of the ingest checks."""

    min_side: int = 32          # px; smaller frames cannot hold a 32-stride feature map
    blank_std: float = 2.0      # grey levels (0..255); synthetic fog/night frames measure >= 11


@dataclass(frozen=True)
class Verdict:
    """Outcome of :func:`inspect_image`: ``code`` is "ok" or one of ``CODES``."""

    code: str
    detail: str = ""
    width: int = 0
    height: int = 0

    @property
    def ok(self) -> bool:
        return self.code == "ok"


def inspect_image(path: Path, checks: ImageChecks = ImageChecks()) -> Verdict:
    """Decode ``path`` and apply the checks."""
    try:
        rgb = read_image(path)
    except DataError as exc:
        code = "truncated" if "truncated" in str(exc) else "unreadable"
        return Verdict(code, str(exc))
    except (OSError, ValueError) as exc:
        return Verdict("unreadable", f"{path}: {exc}")
    h, w = rgb.shape[:2]
    if min(h, w) < checks.min_side:
        return Verdict("too_small", f"{w}x{h} px, sides must be >= {checks.min_side} px", w, h)
    step = max(1, max(h, w) // 512)  # a strided sample keeps the check cheap on 4K frames
    spread = float(rgb[::step, ::step].reshape(-1, 3).std(axis=0).max())
    if spread < checks.blank_std:
        return Verdict("blank", f"pixel standard deviation {spread:.2f} < {checks.blank_std} (near-constant image)", w, h)
    return Verdict("ok", "", w, h)


HashCache = Dict[Tuple[str, int, int], str]  # (path, size, mtime_ns) -> sha256, reused between polls of --watch


@dataclass
class IngestPlan:
    """What a scan found; ``new`` and ``bad`` entries group the source paths of identical bytes."""

    new: List[Dict[str, Any]] = field(default_factory=list)      # sha256, ext, sources, width, height, bytes
    known: List[Dict[str, Any]] = field(default_factory=list)    # path, sha256, status ("learned"/"quarantined"), where
    bad: List[Dict[str, Any]] = field(default_factory=list)      # sha256, ext, sources, code, detail
    waiting: List[str] = field(default_factory=list)             # too recent to trust
    ignored: List[str] = field(default_factory=list)             # not an image file name

    def summary(self) -> Dict[str, int]:
        return {"new": len(self.new), "new_files": sum(len(e["sources"]) for e in self.new),
                "already_known": len(self.known), "quarantined": sum(len(e["sources"]) for e in self.bad),
                "waiting": len(self.waiting), "ignored": len(self.ignored)}


NOT_REGULAR = "not-a-regular-file"


class NotRegularFile(OSError):
    """The path is (or became) a symbolic link, device, pipe or folder."""


def open_regular(path: Path) -> BinaryIO:
    """Open a regular file for reading without following a symbolic link at its last component and without blocking
    on a pipe; raises :class:`NotRegularFile` for anything else (checked on the open file, so a swap after a listing
    cannot redirect the read)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if os.path.islink(path):
            raise NotRegularFile(f"{path}: a symbolic link") from None
        raise exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotRegularFile(f"{path}: not a regular file")
    return os.fdopen(fd, "rb")


def regular_file_problem(path: Path, root: Path) -> Optional[str]:
    """Why ``path`` (listed under the folder ``root``) may not be ingested, or None for a regular file inside it."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    if stat.S_ISLNK(st.st_mode):
        return f"{path}: a symbolic link (to {os.readlink(path)}); only regular files are ingested, links are never followed"
    if not stat.S_ISREG(st.st_mode):
        return f"{path}: not a regular file (a device, pipe or socket)"
    if not Path(os.path.realpath(path)).is_relative_to(Path(os.path.realpath(root))):
        return f"{path}: resolves outside the incoming folder {root}"
    return None


def sha256_file(path: Path) -> str:
    """Hex sha256 of a regular file's bytes (see :func:`open_regular`)."""
    h = hashlib.sha256()
    with open_regular(path) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def incoming_files(incoming: Path) -> Tuple[List[Path], List[Path]]:
    """``(image files, other files)`` under ``incoming``, sorted; hidden files and folders are skipped. Linked
    folders are not entered; they are listed with the images (and refused there) so the operator sees them."""
    if not incoming.is_dir():
        raise DataError(f"{incoming}: incoming folder not found")
    images, others = [], []
    for dirpath, dirnames, filenames in os.walk(incoming):  # followlinks=False: a linked folder is never entered
        linked = [d for d in dirnames if not d.startswith(".") and os.path.islink(os.path.join(dirpath, d))]
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in linked)
        for name in sorted(filenames + linked):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            (images if path.suffix.lower() in IMAGE_EXTENSIONS or name in linked else others).append(path)
    return images, others


def scan_incoming(incoming: Path, learned: Mapping[str, Mapping[str, str]], quarantined: Set[str], checks: ImageChecks = ImageChecks(),
                  settle_seconds: float = 2.0, cache: Optional[HashCache] = None) -> IngestPlan:
    """Hash and check every image under ``incoming`` against the ``learned`` (see :func:`learned_images`) and
    ``quarantined`` sha256 sets; writes nothing."""
    images, others = incoming_files(Path(incoming))
    plan = IngestPlan(ignored=[str(p) for p in others])
    groups: Dict[str, Dict[str, Any]] = {}
    now = time.time()
    for path in images:
        problem = regular_file_problem(path, Path(incoming))
        if problem is not None and os.path.lexists(path):
            sha = hashlib.sha256(str(path).encode()).hexdigest()  # named by its path: the content is never read
            groups.setdefault(sha, {"sha256": sha, "ext": path.suffix.lower(), "sources": [], "code": NOT_REGULAR,
                                    "detail": problem, "bytes": 0})["sources"].append(str(path))
            continue
        try:
            st = os.lstat(path)
        except OSError:
            continue  # vanished between listing and stat: not ours to account for
        if now - st.st_mtime < settle_seconds:
            plan.waiting.append(str(path))
            continue
        key = (str(path), st.st_size, st.st_mtime_ns)
        sha = cache.get(key) if cache is not None else None
        if sha is None:
            try:
                sha = sha256_file(path)
            except NotRegularFile as exc:  # swapped for a link or pipe since the listing
                sha = hashlib.sha256(str(path).encode()).hexdigest()
                groups.setdefault(sha, {"sha256": sha, "ext": path.suffix.lower(), "sources": [], "code": NOT_REGULAR,
                                        "detail": str(exc), "bytes": 0})["sources"].append(str(path))
                continue
            except OSError as exc:
                sha = hashlib.sha256(str(path).encode()).hexdigest()  # unreadable: quarantined under its path hash
                groups.setdefault(sha, {"sha256": sha, "ext": path.suffix.lower(), "sources": [], "code": "unreadable",
                                        "detail": f"{path}: {exc}", "bytes": 0})["sources"].append(str(path))
                continue
            if cache is not None:
                cache[key] = sha
        if sha in learned or sha in quarantined:
            status = "learned" if sha in learned else "quarantined"
            where = learned[sha]["version"] if sha in learned else "quarantine"
            plan.known.append({"path": str(path), "sha256": sha, "status": status, "where": where})
            continue
        if sha in groups:
            groups[sha]["sources"].append(str(path))
            continue
        verdict = inspect_image(path, checks)
        groups[sha] = {"sha256": sha, "ext": path.suffix.lower(), "sources": [str(path)], "bytes": st.st_size,
                       "width": verdict.width, "height": verdict.height, "code": verdict.code, "detail": verdict.detail}
    for entry in groups.values():
        code = entry.pop("code")
        if code == "ok":
            entry.pop("detail")
            plan.new.append(entry)
        else:
            plan.bad.append({**entry, "code": code})
    return plan


def store_file(reg: ModelStore, entry: Mapping[str, Any]) -> str:
    """Store-relative store path of an entry: ``field/<sha256>.<ext>``."""
    return f"{reg.store.name}/{entry['sha256']}{entry['ext']}"


def store_new(reg: ModelStore, plan: IngestPlan) -> List[Dict[str, Any]]:
    """Copy the new images into the store (atomic, content verified); returns the stored entries with their
    ``file``. An image whose bytes changed since the scan is moved to ``plan.waiting`` instead."""
    stored: List[Dict[str, Any]] = []
    for entry in plan.new:
        dst = reg.root / store_file(reg, entry)
        if not dst.is_file() and not _copy_verified(Path(entry["sources"][0]), dst, entry["sha256"]):
            plan.waiting.extend(entry["sources"])
            continue
        stored.append({**entry, "file": store_file(reg, entry)})
    plan.new = stored
    return stored


def quarantine_bad(reg: ModelStore, plan: IngestPlan) -> None:
    """Copy refused files into quarantine/ and merge their reasons into quarantine/reasons.json."""
    if not plan.bad:
        return
    reasons = read_quarantine(reg)
    for entry in plan.bad:
        dst = reg.quarantine / f"{entry['sha256']}{entry['ext']}"
        if entry["bytes"] and not dst.exists():
            _copy_verified(Path(entry["sources"][0]), dst, entry["sha256"])
        rec = reasons.setdefault(entry["sha256"], {"code": entry["code"], "detail": entry["detail"], "sources": [],
                                                   "file": f"{reg.quarantine.name}/{dst.name}" if dst.exists() else None})
        rec["sources"] = sorted(set(rec["sources"]) | set(entry["sources"]))
    write_json_atomic(reg.quarantine / "reasons.json", reasons)


def read_quarantine(reg: ModelStore) -> Dict[str, Dict[str, Any]]:
    """quarantine/reasons.json as a dict (empty when nothing was quarantined)."""
    path = reg.quarantine / "reasons.json"
    if not path.is_file():
        return {}
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable quarantine record ({exc})") from exc


def learned_images(reg: ModelStore, pending: Iterable[Mapping[str, Any]] = ()) -> Dict[str, Dict[str, str]]:
    """sha256 -> ``{"version", "file"}`` of every image a version's manifest lists as new (``"pending"`` for the
    journal's images), oldest first."""
    out: Dict[str, Dict[str, str]] = {}
    for v in reg.versions():
        path = reg.version_dir(v) / "manifest.json"
        if path.is_file():
            for entry in json.loads(path.read_text()).get("new_images", []):
                out.setdefault(entry["sha256"], {"version": v, "file": entry["file"]})
    for entry in pending:
        out.setdefault(entry["sha256"], {"version": "pending", "file": entry["file"]})
    return out


def remove_sources(paths: Iterable[str]) -> int:
    """Delete ingested source files (only with the explicit ``remove_ingested`` flag); returns the count."""
    n = 0
    for p in paths:
        try:
            os.unlink(p)
            n += 1
        except FileNotFoundError:
            pass
    return n


def _copy_verified(src: Path, dst: Path, sha: str) -> bool:
    try:
        with open_regular(src) as f:
            data = f.read()
    except OSError:
        return False
    if hashlib.sha256(data).hexdigest() != sha:
        return False
    with atomic_path(dst) as tmp:
        tmp.write_bytes(data)
    return True
