"""benchmarks/gpu_sweep.sh: a wave file runs one sweep per line at once and returns only the rows it trained."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ("--datasets synthetic-driving --ratios 1/4 --seeds 0 --steps 2 --batch_size 2 --crop_size 32 32 --encoder tiny "
        "--data_args '{\"synthetic-driving\": {\"length\": 16, \"val_length\": 2, \"size\": [32, 64]}}' --workers 0 "
        "--cache_mb 0")


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_a_wave_runs_every_line_and_returns_only_new_rows(tmp_path):
    wave = tmp_path / "wave.txt"
    wave.write_text(f"# two sweeps\n{TINY} --methods supervised\n\n"
                    f"{TINY} --methods cutmix --method_args '{{\"cutmix\": {{\"class_balance\": true}}}}'\n")
    env = {**os.environ, "DEVICE": "cpu", "OUT": str(tmp_path / "out"), "WHEELS": str(tmp_path / "no_wheels"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    work = tmp_path / "tree"  # the script writes bench/gpu under the tree it runs from: a copy keeps the checkout clean
    shutil.copytree(ROOT, work, ignore=shutil.ignore_patterns(".venv", ".git", "bench", ".whl", "*.egg-info",
                                                              "__pycache__", ".pytest_cache"))
    res = subprocess.run(["bash", str(work / "benchmarks" / "gpu_sweep.sh"), "run", "5", "--wave", str(wave)],
                         capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "out" / "runs.jsonl").read_text().splitlines()]
    assert sorted((r["method"], json.dumps(r["recipe"]["method_args"])) for r in rows) == [
        ("cutmix", '{"class_balance": true}'), ("supervised", "{}")]
    assert {r["device"] for r in rows} == {"cpu"}
    assert "== sweep 2:" in (tmp_path / "out" / "sweep.log").read_text()
