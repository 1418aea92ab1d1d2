"""Run the ``semiseg`` command line, killed (``os._exit(137)``, like SIGKILL: no cleanup, no ``finally``) at one
chosen point of a continual refresh. The crash tests run it in a subprocess, then check that the next ``run``
completes the refresh without losing or double-counting a field image.

    python tests/crash_injection.py POINT continual run --store ... --incoming ...

Points, in refresh order (each patches the SDK from outside; the product code has no crash hooks):

    ingest   after the first accepted image is copied into the store, before the journal exists
    train    during fine-tuning, at the first step after a resumable checkpoint (``last.pt``) was written
    gate     after the candidate was evaluated, before the gate decision is recorded
    export   inside the half-built version folder, after ``model.onnx`` and ``export.json``, before the rename
    promote  after the new version became visible, before ``current`` is switched to it
    switch   after ``current`` was switched, before the history line is appended
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

POINTS = ("ingest", "train", "gate", "export", "promote", "switch")


def die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(137)


def install(point: str) -> None:
    """Patch the SDK so that the process dies at ``point``."""
    from semiseg_sdk.continual import ingest, refresh, store
    from semiseg_sdk.engine.trainer import Trainer

    if point == "ingest":
        copy = ingest._copy_verified

        def copy_then_die(src, dst, sha):
            done = copy(src, dst, sha)
            if done and Path(dst).parent.name == "field":
                die()
            return done

        ingest._copy_verified = copy_then_die
    elif point == "train":
        run_step = Trainer.run_step

        def step_or_die(self):
            if self.cfg.method == "field-adapt" and self.step > self.cfg.eval_every:
                die()
            return run_step(self)

        Trainer.run_step = step_or_die
    elif point == "gate":
        refresh.decide = lambda *a, **k: die()
    elif point == "promote":
        set_current = store.ModelStore.set_current

        def switch_or_die(self, version, event, **details):
            if event == "promote":
                die()
            return set_current(self, version, event, **details)

        store.ModelStore.set_current = switch_or_die
    elif point in ("export", "switch"):
        write = store.write_json_atomic
        after = "export.json" if point == "export" else "current.json"

        def write_then_die(path, data, *a, **k):
            write(path, data, *a, **k)
            if Path(path).name == after:
                die()

        store.write_json_atomic = write_then_die
    else:
        raise SystemExit(f"unknown crash point {point!r}; one of {', '.join(POINTS)}")


if __name__ == "__main__":
    install(sys.argv[1])
    from semiseg_sdk.cli import main

    main(sys.argv[2:])
