"""The fire CLI: help a new user can act on, train/evaluate through flags, one-line errors (exit 2)."""
import json
import os
import subprocess
import sys

import pytest

ENV = {**os.environ, "PAGER": "cat", "OMP_NUM_THREADS": "1"}


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "semiseg_sdk.cli", *args], capture_output=True, text=True, env=ENV, timeout=timeout)


def test_help_lists_subcommands():
    r = run_cli("--help")
    assert r.returncode == 0
    for cmd in ("train", "evaluate", "export", "infer", "demo", "methods", "models", "datasets"):
        assert cmd in r.stdout + r.stderr


def test_train_help_names_the_flags():
    r = run_cli("train", "--help")
    assert r.returncode == 0
    out = r.stdout + r.stderr
    assert "--labelled" in out and "--method" in out


def test_listing_commands():
    r = run_cli("methods")
    assert r.returncode == 0 and "supervised" in r.stdout
    r = run_cli("datasets")
    assert "synthetic-driving" in r.stdout and "folder" in r.stdout


def test_train_then_evaluate(tmp_path):
    args = ["train", "--data", "synthetic-driving", "--data_args", '{"length": 12, "size": [32, 64]}', "--labelled", "1/4",
            "--model", "fcn", "--encoder", "tiny", "--steps", "2", "--batch_size", "2", "--crop_size", "32,32",
            "--eval_every", "2", "--num_workers", "0", "--out", str(tmp_path), "--name", "cli", "--progress", "False"]
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "mIoU" in r.stdout
    r = run_cli("evaluate", str(tmp_path / "cli"), "--save", str(tmp_path / "eval"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["images"] > 0
    assert (tmp_path / "eval" / "confusion.png").is_file()


def test_errors_are_one_line_and_actionable(tmp_path):
    r = run_cli("train", "--method", "no-such-method", "--out", str(tmp_path), "--data_args", '{"length": 4}')
    assert r.returncode == 2 and "unknown method 'no-such-method'" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("train", "--stpes", "3", "--out", str(tmp_path))
    assert r.returncode == 2 and "stpes" in r.stderr
    r = run_cli("evaluate", str(tmp_path / "nothing.pt"))
    assert r.returncode == 2 and "nothing.pt" in r.stderr
    r = run_cli("train", "--data", "folder", "--data_root", str(tmp_path / "missing"), "--out", str(tmp_path))
    assert r.returncode == 2 and "missing" in r.stderr
