"""Options of the continual loop: how one refresh fine-tunes (:class:`AdaptOptions`) and how ``run`` behaves
(:class:`RunOptions`). Both are frozen dataclasses; unknown keys are refused with the valid ones listed.

One refresh: ingest -> fine-tune -> gate -> version -> promote (or keep the current model), crash-safe.

``run_refresh`` takes the store lock, removes half-built version folders, then either continues the refresh of
the journal (``pending/refresh.json``, see store.py) or starts a new one from the incoming folder. Each phase
records its outcome before the next starts, so killing the process anywhere leaves ``current`` on a complete gated
version, and the next call resumes or redoes only the unfinished phase; field images are counted by content hash
in exactly one manifest (or the journal) and are never learned twice.

Stop cleanly on Ctrl-C/SIGTERM, and ``--watch``: poll the incoming folder, refresh when enough images wait.

The first signal asks for a stop: training stops between two steps (the journal keeps the refresh, the next ``run``
resumes it from its last checkpoint), other phases finish first, and the polling loop ends. A second signal stops
at once (KeyboardInterrupt), which the store survives like any crash.
"""
from __future__ import annotations

import dataclasses
import json
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

from ..models.checkpoint import load_inference_model
from ..utils.atomic import write_json_atomic
from ..utils.precision import resolve_device
from .adapt import AdaptOptions, RunOptions, train_candidate
from .gate import GatePolicy, decide, evaluate_sets, format_gate
from .ingest import (HashCache, ImageChecks, learned_images, quarantine_bad, read_quarantine, remove_sources,
                     scan_incoming, store_new)
from .labelled_sets import open_labelled_set, parse_labelled_set
from .store import Journal, ModelStore, RefreshInterrupted, StoreError, read_events, write_version


def run_refresh(store: str | Path, incoming: Optional[str | Path], adapt: AdaptOptions = AdaptOptions(),
                run: RunOptions = RunOptions(), stop: Optional[threading.Event] = None,
                cache: Optional[HashCache] = None) -> Dict[str, Any]:
    """Finish the pending refresh, or start one when ``incoming`` holds at least ``min_images`` new images.

    Returns ``{"status": "promoted" | "rejected" | "skipped" | "waiting", "version", ...}`` ("skipped": passed, but
    ``current`` was moved by hand while it was gated); a resumed refresh keeps the
    options it started with (recorded in its journal)."""
    reg = ModelStore(store)
    settings = reg.settings()
    with reg.locked():
        stale = reg.clean_stale_builds()
        ensure_current(reg)
        journal = Journal.load(reg)
        resumed = journal.phase if journal is not None else None
        if journal is None:
            if incoming is None:
                return {"status": "waiting", "reason": "no incoming folder given and no refresh pending"}
            journal, ingest = start_refresh(reg, Path(incoming), adapt, run, cache)
            if journal is None:
                return ingest
        result = finish_refresh(reg, settings, journal, run, stop)
        result.update(resumed_from=resumed, removed_stale_builds=stale)
        return result


def ensure_current(reg: ModelStore) -> None:
    """Complete an ``init`` killed between writing v0001 and switching ``current`` to it."""
    if reg.current() is None:
        passed = [v for v in reg.versions() if reg.read_version(v)["status"] == "passed"]
        if not passed:
            raise StoreError(f"{reg.root}: no complete version; run `semiseg continual init` again")
        reg.set_current(passed[0], "promote", reason="initial version (init completed)")


def start_refresh(reg: ModelStore, incoming: Path, adapt: AdaptOptions, run: RunOptions,
                  cache: Optional[HashCache]) -> Tuple[Optional[Journal], Dict[str, Any]]:
    """Ingest; returns ``(journal, summary)`` or ``(None, waiting summary)`` when too few new images arrived."""
    learned = learned_images(reg)
    plan = scan_incoming(incoming, learned, set(read_quarantine(reg)), ImageChecks(run.min_side, run.blank_std),
                         run.settle_seconds, cache)
    quarantine_bad(reg, plan)
    if len(plan.new) < run.min_images:
        return None, {"status": "waiting", "min_images": run.min_images, **plan.summary()}
    stored = store_new(reg, plan)
    if len(stored) < run.min_images:
        return None, {"status": "waiting", "min_images": run.min_images, **plan.summary()}
    earlier = [{"sha256": s, "file": e["file"]} for s, e in learned.items()]
    window = (earlier[-(adapt.field_window - len(stored)):] if adapt.field_window > len(stored) else []) + stored
    journal = Journal.start(
        reg, reg.next_version(), str(reg.current()), stored, incoming=str(incoming), adapt=dataclasses.asdict(adapt),
        train_images=[{"sha256": e["sha256"], "file": e["file"]} for e in window[-adapt.field_window:]],
        ingest=plan.summary(), already_known=plan.known,
        quarantined=[{k: e[k] for k in ("sha256", "sources", "code", "detail")} for e in plan.bad])
    if run.remove_ingested:
        paths = [p for e in stored + plan.bad for p in e["sources"]] + [k["path"] for k in plan.known]
        journal.advance("ingested", removed_from_incoming=remove_sources(paths))
    return journal, plan.summary()


def finish_refresh(reg: ModelStore, settings: Mapping[str, Any], journal: Journal, run: RunOptions,
                   stop: Optional[threading.Event]) -> Dict[str, Any]:
    """Run the phases the journal has not recorded yet, then promote or record the rejection."""
    version = journal.version
    if journal.phase == "ingested":
        journal.advance("trained", train=train_candidate(reg, settings, journal, run, stop))
    if journal.phase == "gated" and journal.data.get("baseline") != reg.current():
        journal.advance("trained")  # current moved (a rollback) since the gate ran: gate again
    if journal.phase == "trained":
        gate_candidate(reg, settings, journal, run)
    gate = json.loads(journal.gate_path.read_text()) if journal.gate_path.is_file() else None
    if journal.phase == "gated":
        if not (reg.version_dir(version) / "version.json").is_file():
            write_version(reg, version, parent=journal.parent, kind="refresh", checkpoint=journal.candidate_path,
                          gate=gate, gate_text=gate["text"], manifest=manifest_of(journal),
                          config={**journal.data["train"]["config"], "continual": _refresh_config(journal)},
                          details={"train": {k: v for k, v in journal.data["train"].items() if k != "config"}})
        journal.advance("built")
    record = reg.read_version(version)
    passed = record["status"] == "passed"
    status = "promoted" if passed else "rejected"
    baseline = (gate or {}).get("baseline", journal.parent)
    events = {(e.get("event"), e.get("version")) for e in reg.history()}
    outcome = {"parent": journal.parent, "holdout_miou": record["gate"]["holdout_miou"],
               "probe_miou": record["gate"]["probe_miou"], "reasons": record["gate"]["reasons"],
               "new_images": record["images"]["new"]}
    if passed and reg.current() == baseline:
        reg.set_current(version, "promote", reason="gate passed", **outcome)
    elif passed and reg.current() == version:
        if ("promote", version) not in events:  # killed between the switch and the history line
            reg.record("promote", version=version, reason="gate passed", **outcome)
    elif passed:  # a rollback/promote moved current after the gate ran: the decision is stale, keep current
        passed, status = False, "skipped"
        outcome["reasons"] = [f"not promoted: current moved from {baseline} to {reg.current()} after the gate; "
                              f"`semiseg continual promote {version}` ships it anyway"]
        if ("skip", version) not in events:
            reg.record("skip", version=version, **outcome)
    elif ("reject", version) not in events:
        reg.record("reject", version=version, **outcome)
    journal.finish()
    text = (reg.version_dir(version) / "gate.txt").read_text()
    if run.verbose:
        print(text, end="")
        print(f"{version}: {'promoted, current -> ' + version if passed else 'not promoted, current stays ' + str(reg.current())}")
    return {"status": status, "current": reg.current(), "version": version, **outcome,
            "report": text}


def gate_candidate(reg: ModelStore, settings: Mapping[str, Any], journal: Journal, run: RunOptions) -> None:
    """Evaluate current and candidate on the holdout (and probe) sets, decide, record ``pending/gate.json``."""
    device = resolve_device(run.device)
    baseline = str(reg.current())
    current_model, ckpt = load_inference_model(reg.version_dir(baseline) / "model.pt")
    num_classes = len(ckpt["dataset"]["classes"])
    sets = {"holdout": open_labelled_set(parse_labelled_set(settings["holdout"]), num_classes, "holdout set")}
    if settings.get("probe"):
        sets["probe"] = open_labelled_set(parse_labelled_set(settings["probe"]), num_classes, "probe set")
    scoring = settings.get("scoring")
    current = evaluate_sets(current_model, sets, device, run.eval_batch_size, scoring=scoring)
    candidate = evaluate_sets(load_inference_model(journal.candidate_path)[0], sets, device, run.eval_batch_size,
                              scoring=scoring)
    origin = json.loads((reg.version_dir(reg.versions()[0]) / "gate.json").read_text())["candidate"]["holdout"]
    decision = decide(GatePolicy(**settings["gate"]), current, candidate, origin)
    title = (f"gate of {journal.version} (trained from {journal.parent} on {len(journal.images)} new field images) "
             f"against current {baseline}")
    text = format_gate(title, current, candidate, decision)
    write_json_atomic(journal.gate_path, {"baseline": baseline, "current": current, "candidate": candidate,
                                          "decision": decision, "text": text})
    journal.advance("gated", baseline=baseline)


def manifest_of(journal: Journal) -> Dict[str, Any]:
    """The version's manifest: new images (with their source paths), images trained on, duplicates, quarantine."""
    d = journal.data
    return {"version": d["version"], "parent": d["parent"], "incoming": d.get("incoming"), "new_images": d["images"],
            "trained_on": [e["sha256"] for e in d["train_images"]], "already_known": d.get("already_known", []),
            "quarantined": d.get("quarantined", []), "ingest": d.get("ingest", {})}


def _refresh_config(journal: Journal) -> Dict[str, Any]:
    return {"version": journal.version, "parent": journal.parent, "adapt": journal.data["adapt"],
            "incoming": journal.data.get("incoming")}


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An Event set by the first SIGINT/SIGTERM (handlers installed in the main thread only, restored after)."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print(f"semiseg continual: {signal.Signals(signum).name} received, stopping at the next step "
              "(send it again to stop now)", file=sys.stderr, flush=True)

    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in old:
        signal.signal(s, handler)
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def watch(store: str | Path, incoming: str | Path, adapt: AdaptOptions = AdaptOptions(), run: RunOptions = RunOptions(),
          poll_seconds: float = 30.0, max_refreshes: Optional[int] = None,
          stop: Optional[threading.Event] = None) -> Dict[str, Any]:
    """Refresh whenever ``min_images`` new images wait in ``incoming``; poll every ``poll_seconds`` until stopped
    (signal, ``stop`` set, or ``max_refreshes`` refreshes done)."""
    stop = stop or threading.Event()
    cache: HashCache = {}
    results: List[Dict[str, Any]] = []
    polls = 0
    while not stop.is_set():
        try:
            res = run_refresh(store, incoming, adapt, run, stop, cache)
        except RefreshInterrupted as exc:
            results.append({"status": "interrupted", "detail": str(exc)})
            break
        polls += 1
        if res["status"] != "waiting":
            results.append({k: v for k, v in res.items() if k != "report"})
            if max_refreshes is not None and len(results) >= max_refreshes:
                break
            continue  # more images may already be waiting
        stop.wait(poll_seconds)
    reason = "signal" if stop.is_set() else "max_refreshes"
    return {"refreshes": results, "polls": polls, "stopped_by": reason}


def store_status(store: str) -> Dict[str, Any]:
    """Current version and its metrics, versions, pending refresh, field images learned and quarantined."""
    reg = ModelStore(store)
    settings = reg.settings()
    current = reg.current()
    versions = [reg.read_version(v) for v in reg.versions()]
    journal = Journal.load(reg)
    _, torn = read_events(reg.history_path)
    cur = next((v for v in versions if v["version"] == current), None)
    return {
        "store": str(reg.root), "current": current,
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
