"""A run folder is written by one process at a time: a second one fails in one line naming the holder's pid,
and a holder that dies (even by SIGKILL) leaves the folder free."""
from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

from semiseg_sdk.engine import Trainer
from semiseg_sdk.engine.run_folder import RunFolder
from semiseg_sdk.errors import error_line
from semiseg_sdk.utils.folder_lock import FolderInUseError, acquire_folder_lock, folder_locked, release_folder_lock
from test_trainer import tiny_cfg

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="folders are not locked where fcntl does not exist")


def _holder(folder):
    """A separate process that takes ``folder``'s lock and waits; returns it once the lock is held."""
    code = textwrap.dedent(f"""
        import sys
        from semiseg_sdk.utils.folder_lock import acquire_folder_lock
        acquire_folder_lock({str(folder)!r})
        print("held", flush=True)
        sys.stdin.read()
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_folder_held_by_another_process_is_refused_until_the_holder_dies(tmp_path):
    proc = _holder(tmp_path / "run")
    try:
        with pytest.raises(FolderInUseError) as info:
            acquire_folder_lock(tmp_path / "run")
        assert f"pid {proc.pid}" in str(info.value) and str(tmp_path / "run") in str(info.value)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with folder_locked(tmp_path / "run"):  # a killed holder leaves nothing locked
        with pytest.raises(FolderInUseError):  # and a second hold is refused even within one process
            acquire_folder_lock(tmp_path / "run")
    release_folder_lock(acquire_folder_lock(tmp_path / "run"))  # released at the end of the block


def _try_lock_elsewhere(folder):
    """Try to take ``folder``'s lock from a separate process; returns it finished."""
    code = f"from semiseg_sdk.utils.folder_lock import acquire_folder_lock; acquire_folder_lock({str(folder)!r})"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_run_folders_share_the_hold_within_a_process_and_the_last_close_frees_the_folder(tmp_path):
    first, second = RunFolder(tmp_path / "run"), RunFolder(tmp_path / "run")  # a resume in the same process
    first.close()
    refused = _try_lock_elsewhere(tmp_path / "run")  # still held by `second`
    assert refused.returncode != 0 and "is in use by another process" in refused.stderr
    second.close()
    taken = _try_lock_elsewhere(tmp_path / "run")
    assert taken.returncode == 0, taken.stderr


def test_training_into_a_folder_another_process_trains_fails_before_writing(tmp_path):
    cfg = tiny_cfg(tmp_path, resume=True)
    root = tmp_path / cfg.run_name()
    proc = _holder(root)
    try:
        with pytest.raises(FolderInUseError) as info:
            Trainer(cfg)
        assert "\n" not in error_line(info.value) and f"pid {proc.pid}" in error_line(info.value)
        assert sorted(p.name for p in root.iterdir()) == [".lock"]  # no config, log or split written
    finally:
        proc.kill()
        proc.wait()
