"""Checkpoints are data: loading one never runs code from it, and the files the trainer writes need nothing else."""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from semiseg_sdk.errors import CheckpointError
from semiseg_sdk.models.checkpoint import FORMAT, load_checkpoint, load_inference_model
from semiseg_sdk.utils.reproducibility import rng_state, set_rng_state


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _crafted(tmp_path: Path) -> Path:
    marker = tmp_path / "payload-ran"
    path = tmp_path / "best.pt"
    torch.save({"format": FORMAT, "model_spec": {}, "model_state": {}, "dataset": {}, "x": _RunsCode(marker)}, path)
    return path


def test_a_checkpoint_that_would_run_code_is_refused_and_its_payload_never_runs(tmp_path):
    path = _crafted(tmp_path)
    for load in (load_checkpoint, load_inference_model):
        with pytest.raises(CheckpointError, match=r"best\.pt: refused: it asks to run or build posix\.system"):
            load(path)
        with pytest.raises(CheckpointError, match="refused"):
            load(tmp_path)  # the run folder resolves to the same file
    assert not (tmp_path / "payload-ran").exists()


def test_the_cli_refuses_it_in_one_line(tmp_path, capsys):
    from semiseg_sdk.cli import main

    path = _crafted(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(path)])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and "refused" in err, err
    assert not (tmp_path / "payload-ran").exists()


def test_the_rng_state_round_trips_through_a_weights_only_file(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.standard_normal()  # leaves a cached Gaussian in NumPy's state
    state = rng_state()
    expected = (random.random(), np.random.standard_normal(), np.random.rand(), torch.rand(1).item())
    torch.save({"rng": state}, tmp_path / "s.pt")
    loaded = torch.load(tmp_path / "s.pt", weights_only=True)  # no allow-list needed
    set_rng_state(loaded["rng"])
    assert (random.random(), np.random.standard_normal(), np.random.rand(), torch.rand(1).item()) == expected


def test_a_checkpoint_written_with_numpy_rng_state_still_loads_and_restores(tmp_path):
    """Files from before the RNG state was stored as tensors hold a NumPy array: allowed as data, nothing else."""
    np.random.seed(5)
    legacy = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    expected = np.random.rand()
    torch.save({"format": FORMAT, "model_spec": {}, "model_state": {}, "dataset": {}, "trainer_state": {"rng": legacy}},
               tmp_path / "last.pt")
    ckpt = load_checkpoint(tmp_path / "last.pt")
    np.random.seed(0)
    set_rng_state(ckpt["trainer_state"]["rng"])
    assert np.random.rand() == expected
