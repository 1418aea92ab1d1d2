"""An exclusive lock on a folder, so that two writers never write one folder (a run folder, the continual store).

The lock is an advisory ``flock`` on ``<folder>/.lock``: the kernel drops it when its holder exits, crashes or is
killed, so a dead process never leaves a folder locked. The file holds the holder's pid, for the message the next
writer gets. A second acquisition is refused even within the same process (each holds its own open file).
Where ``fcntl`` does not exist (Windows) folders are not locked.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Union

from ..errors import ConfigError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"


class FolderInUseError(ConfigError):
    """Another writer holds the folder's lock; the message names the folder and the holder's pid."""

    def __init__(self, folder: Path, holder: str) -> None:
        super().__init__(f"{folder} is in use by another process (pid {holder}): wait for it to end, stop it, "
                         "or choose another --name")
        self.folder, self.holder = folder, holder


def acquire_folder_lock(folder: Union[str, Path]) -> Optional[int]:
    """Take ``folder``'s lock (creating the folder); returns the descriptor to give to :func:`release_folder_lock`
    (None where folders are not locked). Raises :class:`FolderInUseError` if another writer holds it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover - Windows
        return None
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise FolderInUseError(folder, holder) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def release_folder_lock(fd: Optional[int]) -> None:
    """Release a lock taken by :func:`acquire_folder_lock` (closing the descriptor drops the flock)."""
    if fd is not None:
        os.close(fd)


@contextmanager
def folder_locked(folder: Union[str, Path]) -> Iterator[None]:
    """Hold ``folder``'s lock for the ``with`` block."""
    fd = acquire_folder_lock(folder)
    try:
        yield
    finally:
        release_folder_lock(fd)
