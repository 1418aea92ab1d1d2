"""Label-efficiency benchmark: methods x label ratios x datasets x seeds with one fixed step budget.

Prints a table (mean and spread over seeds), writes it as CSV and as a PNG bar chart. Method defaults are the
official ones; this benchmark's small budget overrides a few of them through ``BENCH_METHOD_ARGS`` (each override is
listed there with its reason) so that every method gets the same number of optimiser steps.

Each run's recipe (data, crop, model, labelled loss, method arguments, budget) is recorded with its row and hashed into
its run name, so one ``--out`` folder can hold several recipes and a row is reused only for the same recipe.

    python benchmarks/label_efficiency.py --datasets synthetic-driving synthetic-aerial --ratios 1/16 1/8 all \
        --methods supervised fixmatch unimatch --seeds 0 1 --steps 1000 --out bench/label_eff
    # a real dataset in a supported layout:
    python benchmarks/label_efficiency.py --datasets folder --data_root dubai_aerial --ratios 1/8 all
    # another frame size or crop than DATASET_ARGS:
    python benchmarks/label_efficiency.py --datasets synthetic-driving \
        --data_args '{"synthetic-driving": {"size": [192, 384]}}' --crop_size 192 192
    # many runs at once on one GPU (one process per run; stop starting new runs after 25 minutes):
    python benchmarks/label_efficiency.py --device cuda --jobs 12 --stop_after_min 25 ...
    # a time-boxed slice of a long sweep: SIGTERM pauses every run under way at its current step (last.pt), and the
    # same command run again resumes them and goes on
    timeout -s TERM 30m python benchmarks/label_efficiency.py --jobs 12 ...

Runs go seed by seed (then ratio, dataset, method), so a sweep cut short still has whole seeds.

The tables of committed rows, whatever commit trained them (``--table`` trains nothing; every method's
``--method_args`` variant is its own row):

    python benchmarks/label_efficiency.py --protocol converge-cpu \
        --table benchmarks/results/label_efficiency_cpu_converge.jsonl
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import hashlib
import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

from bench_io import write_csv
from label_efficiency_tables import class_table, plot, print_table, repeat_table, split_of, summarise, target_table
from semiseg_sdk.config import TrainConfig
from semiseg_sdk.engine import train
from semiseg_sdk.utils.folder_lock import FolderInUseError
from semiseg_sdk.engine.graceful_stop import stop_requests
from semiseg_sdk.errors import CheckpointError, TrainingInterrupted
from semiseg_sdk.models import fit_aspp_rates_to_crop, load_checkpoint
from semiseg_sdk.utils.precision import resolve_device

# Dataset-specific settings for a CPU-sized benchmark (synthetic sets are generated at a small size).
DATASET_ARGS: Dict[str, dict] = {
    "synthetic-driving": {"data_args": {"length": 2000, "val_length": 200, "size": [96, 192]}, "crop_size": (96, 96)},
    "synthetic-aerial": {"data_args": {"length": 2000, "val_length": 200, "size": [128, 128]}, "crop_size": (96, 96)},
    "folder": {"data_args": {}, "crop_size": (192, 192), "eval_mode": "slide", "eval_window": (384, 384)},
}
# Overrides of official defaults needed by a small budget (the official recipes count 20k-80k iterations). None so
# far: every schedule in the methods (ramp-ups, warm-ups, AdvSemiSeg's semi_start, PS-MT's teacher alternation,
# ST++'s checkpoints) is a fraction of --steps, so it scales with the budget; thresholds and weights stay official.
BENCH_METHOD_ARGS: Dict[str, dict] = {}
# A row is reused only while the code that decides what its method trains is unchanged: the recipe holds a hash of the
# method's module and of every module of these packages it imports, transitively (see ``method_code``).
METHOD_CODE_PACKAGES = ("semiseg_sdk.methods", "semiseg_sdk.augment")
SDK_ROOT = Path(__file__).resolve().parents[1]

# Named protocols: a protocol's "defaults" replace the command line's defaults (flags still win), its "datasets" entry
# refines DATASET_ARGS per dataset. docs/benchmarks.md says how each value was chosen and what a sweep costs.
# One network for every method: the light DeepLabV3+ without dropout layers (UniMatch's network has none; FixMatch and
# UniMatch already switch ours off) and with ASPP rates fitted to the crop (6/12/18 leave a 96-px crop's 6x6 map).
PROTOCOL_NET = {"channels": 64, "aspp_rates": "fit", "aspp_dropout": 0.0, "dropout": 0.0}
PROTOCOLS: Dict[str, dict] = {
    "converge-cpu": {
        "defaults": {"datasets": ["synthetic-driving", "synthetic-aerial", "folder"], "ratios": ["1/64", "all"],
                     "methods": ["supervised", "fixmatch", "unimatch", "cutmix", "cps", "cac"], "seeds": [0, 1, 2],
                     "steps": 4800, "eval_every": 800, "encoder": "efficientnet_lite0", "pretrained": "imagenet",
                     "model_args": json.dumps(PROTOCOL_NET), "lr": 0.01, "workers": 1,
                     "all_methods": ["supervised"]},  # the all-label reference; other methods at 1/64 only
        # the real set's tiles are scored by sliding windows of the training crop, as UniMatch scores Cityscapes: a
        # network trained on 96-px crops scored on 384-px windows lands several points lower and far less repeatably
        "datasets": {"folder": {"patch_size": 256, "patch_overlap": 32, "crop_size": (96, 96), "val_split": "val+test",
                                "eval_mode": "slide", "eval_window": (96, 96)}},
        # the protocol's committed rows: ``--plan`` prices the runs still to do from their measured wall time
        "results": "benchmarks/results/label_efficiency_cpu_converge.jsonl",
    },
}


def release_protocol(base: str = "converge-cpu", recipe_name: str = "few-labels") -> dict:
    """``base`` narrowed to what every release re-checks: ``supervised`` (at 1/64 and with all labels) against the
    method of the recipe the README recommends, with that recipe's method settings (on the protocol's network, which
    the recipe shares); the full method comparison stays ``base``."""
    from semiseg_sdk.recipes import recipe_values

    rec, proto = recipe_values(recipe_name), PROTOCOLS[base]
    methods = ["supervised", rec["method"]]
    return {**proto, "defaults": {**proto["defaults"], "methods": methods,
                                  "method_args": json.dumps({rec["method"]: rec.get("method_args", {})})}}


PROTOCOLS["converge-cpu-release"] = release_protocol()


def recipe(dataset: str, method: str, args: argparse.Namespace) -> Dict[str, object]:
    """Everything besides ratio and seed that decides a run's result; runs are reused only when it matches."""
    ds = dataset_settings(dataset, args)
    strong_aug = json.loads(args.strong_aug)
    return {"data_root": args.data_root, "data_args": ds["data_args"], "crop_size": list(ds["crop_size"]),
            "method_args": {**BENCH_METHOD_ARGS.get(method, {}), **json.loads(args.method_args).get(method, {})},
            "sup_loss": args.sup_loss, "ohem_min_kept": args.ohem_min_kept if args.sup_loss == "ohem" else None,
            "model": args.model, "encoder": args.encoder, "pretrained": args.pretrained,
            "model_args": fit_aspp_rates_to_crop(json.loads(args.model_args), ds["crop_size"], None),
            "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
            "method_config": method_config(method, json.loads(args.method_args).get(method, {})),
            "method_code": method_code(method),
            # only when not the default, so that rows written before these options keep the tag they were written with
            **({"val_split": ds["val_split"]} if ds["val_split"] != "val" else {}),
            **({"strong_aug": strong_aug} if strong_aug else {}),
            **({"patch_size": ds["patch_size"], "patch_overlap": ds.get("patch_overlap", 0)} if ds.get("patch_size") else {}),
            **({"eval_window": list(ds["eval_window"])} if ds.get("eval_window") != first_window(dataset) else {}),
            **({"weight_ema": args.weight_ema} if args.weight_ema else {}),
            **({"split_seed": args.split_seed} if args.split_seed is not None else {}),
}


def first_window(dataset: str) -> Optional[tuple]:
    """The sliding window ``DATASET_ARGS`` gives ``dataset`` (None: whole images): rows evaluated on it carry no
    ``eval_window`` in their recipe, as the rows written before the window was a recipe setting."""
    return DATASET_ARGS.get(dataset, DATASET_ARGS["folder"]).get("eval_window")


def method_config(method: str, method_args: dict) -> Dict[str, object]:
    """The method's resolved configuration: its defaults with ``method_args`` applied."""
    from semiseg_sdk.methods import get_method

    return json.loads(json.dumps(dataclasses.asdict(get_method(method).Config(**method_args)), default=str))


def method_code(method: str, root: Path = SDK_ROOT, packages=METHOD_CODE_PACKAGES) -> str:
    """Hash of the code a method trains with: its module and the modules of ``packages`` it imports, transitively.

    Docstrings, comments and formatting do not count (the hash is taken over the syntax trees without docstrings),
    so a row stays reusable through an edit of the text but not of what runs.
    """
    from semiseg_sdk.methods import get_method

    todo, seen = [get_method(method).__module__], {}
    while todo:
        name = todo.pop()
        path = module_path(name, root)
        if name in seen or path is None:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        seen[name] = ast.dump(strip_docstrings(tree))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) if node.level else node.module
                todo += [base] + [f"{base}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                todo += [a.name for a in node.names]
        todo = [t for t in todo if t and any(t == p or t.startswith(p + ".") for p in packages)]
    return hashlib.sha1("\n".join(seen[k] for k in sorted(seen)).encode()).hexdigest()[:10]


def module_path(name: str, root: Path) -> Optional[Path]:
    """The source file of module ``name`` under ``root`` (a package's ``__init__.py``), or None."""
    base = root.joinpath(*name.split("."))
    return next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)


def strip_docstrings(tree: ast.AST) -> ast.AST:
    """``tree`` without the docstrings of its module, classes and functions."""
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return tree


def recipe_tag(rec: Dict[str, object]) -> str:
    """Short stable hash of a recipe: it goes in run names, so two recipes never share (and resume) one run folder."""
    return hashlib.sha1(json.dumps(rec, sort_keys=True).encode()).hexdigest()[:7]


def run_name(dataset: str, ratio: str, method: str, seed: int, rec: Dict[str, object]) -> str:
    """The run folder's name (under ``<out>/runs``) of one configuration trained with recipe ``rec``."""
    return f"{dataset}-{ratio.replace('/', 'of')}-{method}-s{seed}-{recipe_tag(rec)}"


def run_one(dataset: str, ratio: str, method: str, seed: int, args: argparse.Namespace) -> Dict[str, object]:
    """Train one configuration; returns the row of the results table (with its recipe)."""
    ds = dataset_settings(dataset, args)
    rec = recipe(dataset, method, args)
    name = run_name(dataset, ratio, method, seed, rec)
    cfg = TrainConfig(
        data=dataset, data_root=args.data_root, data_args=ds["data_args"], labelled=ratio, method=method,
        method_args=rec["method_args"], sup_loss=args.sup_loss, ohem_min_kept=args.ohem_min_kept, model=args.model,
        encoder=args.encoder, pretrained=args.pretrained, model_args=rec["model_args"],
        strong_aug=rec.get("strong_aug", {}), steps=args.steps, batch_size=args.batch_size, crop_size=ds["crop_size"], lr=args.lr,
        eval_every=args.eval_every or args.steps, data_cache_mb=args.cache_mb,
        # a data set without a window is scored on whole frames, as before the SDK's window became the crop
        eval_mode=ds.get("eval_mode", "whole"), eval_window=ds.get("eval_window"), seed=seed,
        val_split=ds["val_split"], patch_size=ds.get("patch_size"), patch_overlap=ds.get("patch_overlap", 0),
        weight_ema=args.weight_ema, split_seed=args.split_seed,
        out=str(Path(args.out) / "runs"), name=name, resume=True, device=args.device, num_workers=args.workers,
        progress=False,
    )
    t0 = time.time()
    res = train(cfg)
    evals = [r for r in map(json.loads, final_metrics(Path(res["run_dir"])).read_text().splitlines()) if "eval" in r]
    curve = [(r["step"], round(100 * r["eval"]["miou"], 2)) for r in evals]
    iou = percent_iou(evals[-1]["eval"].get("iou", {})) if evals else {}
    return {"dataset": dataset, "ratio": ratio, "method": method, "seed": seed, "miou": res["final_miou"],
            "best_miou": res["best_miou"], "minutes": res.get("minutes", (time.time() - t0) / 60), "curve": curve, "iou": iou,
            "device": resolve_device(args.device).type, "threads": torch.get_num_threads(), "recipe": rec}


def rescore(rows_path: Path, args: argparse.Namespace) -> List[dict]:
    """Score the final checkpoint of every finished run of ``rows_path`` that the command line covers again on
    ``--eval_window`` sliding windows; append each as a new row and return them.

    Evaluation leaves training untouched, so the new row is the run's result under the recipe with that window, at
    its last step: its curve holds that one point and ``rescored`` names the row it came from (recipe tag and mIoU).
    A run already scored on the window, or whose folder no longer holds a ``last.pt`` at its final step, is skipped.
    """
    from semiseg_sdk.data import build_dataset, run_dataset_kwargs
    from semiseg_sdk.engine.evaluator import evaluate
    from semiseg_sdk.models import load_inference_model

    window = tuple(args.eval_window)
    rows = [r for r in load_rows(rows_path) if "recipe" in r]
    have = {(r["dataset"], r["ratio"], r["method"], r["seed"], recipe_tag(r["recipe"])) for r in rows}
    device, written, val_sets = resolve_device(args.device), [], {}
    for row in table_rows(rows, args):
        rec = {k: v for k, v in row["recipe"].items() if k != "eval_window"}
        if window != first_window(row["dataset"]):
            rec["eval_window"] = list(window)
        key = (row["dataset"], row["ratio"], row["method"], row["seed"], recipe_tag(rec))
        last = Path(args.out) / "runs" / run_name(*key[:4], row["recipe"]) / "last.pt"
        if key in have or not last.is_file():  # the row itself is in ``have``: a window it was scored on is skipped
            continue
        model, ckpt = load_inference_model(last, map_location=str(device))
        if ckpt["step"] != row["recipe"]["steps"]:
            continue
        # a recipe names its data as a run config does (data_args, data_root); runs on the same data share one set
        split, data_kwargs = row["recipe"].get("val_split", "val"), run_dataset_kwargs(row["recipe"])
        data_key = json.dumps([row["dataset"], split, data_kwargs], sort_keys=True, default=str)
        if data_key not in val_sets:
            val_sets[data_key] = build_dataset(row["dataset"], split=split, **data_kwargs)
        val = val_sets[data_key]
        res = evaluate(model, val, val.info.num_classes, val.info.classes, device, mode="slide", window=window)
        miou = round(100 * res["miou"], 2)
        new = {**row, "miou": res["miou"], "best_miou": res["miou"], "curve": [[ckpt["step"], miou]],
               "iou": percent_iou(res["iou"]), "recipe": rec,
               "rescored": {"from": recipe_tag(row["recipe"]), "miou": row["miou"]}}
        append_row(rows_path, new)
        have.add(key)
        written.append(new)
        print(f"{' '.join(map(str, key[:4]))}: {100 * row['miou']:.2f} -> {miou:.2f} on {window[0]}x{window[1]} windows",
              flush=True)
    return written


def percent_iou(iou: Dict[str, Optional[float]]) -> Dict[str, Optional[float]]:
    """Per-class IoU fractions as a row holds them: percent, two decimals (None: class absent from the val set)."""
    return {c: None if v is None else round(100 * v, 2) for c, v in iou.items()}


def final_metrics(run_dir: Path) -> Path:
    """The metrics.jsonl of a run, or of the last training stage of a staged run (self-training, ST++)."""
    if (run_dir / "metrics.jsonl").is_file():
        return run_dir / "metrics.jsonl"
    stages = sorted(run_dir.glob("stage*/metrics.jsonl"), key=lambda p: int("".join(filter(str.isdigit, p.parent.name.split("_")[0]))))
    if not stages:
        raise FileNotFoundError(f"no metrics.jsonl in {run_dir} or its stage folders")
    return stages[-1]


def load_rows(path: Path) -> List[dict]:
    """The rows of a JSON-lines results file (blank lines skipped); none when it does not exist."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def append_row(rows_path: Path, row: dict) -> None:
    """Append ``row`` to a JSON-lines results file as one line (a single write, so concurrent writers never mix)."""
    with open(rows_path, "a") as f:
        f.write(json.dumps(row) + "\n")


def read_rows(rows_path: Path) -> Dict[tuple, dict]:
    """Rows of ``runs.jsonl`` by (dataset, ratio, method, seed, recipe tag); rows without a recipe are never reused."""
    return {(r["dataset"], r["ratio"], r["method"], r["seed"], recipe_tag(r["recipe"])): r
            for r in load_rows(rows_path) if "recipe" in r}


def cost_keys(dataset: str, method: str, rec: Dict[str, object]) -> List[tuple]:
    """What a run's cost per step depends on, most specific first: method (any options), crop, network and batch
    size, on this data set, then on any data set (the step is the same work; only the evaluations differ)."""
    net = (method, tuple(rec.get("crop_size") or ()), rec.get("model"), rec.get("encoder"),
           json.dumps(rec.get("model_args"), sort_keys=True), rec.get("batch_size"))
    return [(dataset, *net), ("*", *net)]


def minutes_per_step(rows: List[dict]) -> Dict[tuple, float]:
    """Median core-minutes per training step of the measured ``rows``, under each of their ``cost_keys``.

    A row's core-minutes are its wall minutes times the torch threads it trained with (``threads``; a row without
    it predates the field and trained on one). The median, because rows written before a resumed run counted every
    process's time under-report theirs. Only rows trained on a CPU count (a row without ``device`` predates the
    field and was trained on one).
    """
    per_key: Dict[tuple, List[float]] = {}
    for r in rows:
        rec = r.get("recipe") or {}
        if r.get("minutes") and rec.get("steps") and r.get("device", "cpu") == "cpu":
            for key in cost_keys(r["dataset"], r["method"], rec):
                per_key.setdefault(key, []).append(r["minutes"] * r.get("threads", 1) / rec["steps"])
    return {k: statistics.median(v) for k, v in per_key.items()}


def print_plan(todo: List[tuple], done: Dict[tuple, dict], args: argparse.Namespace) -> None:
    """Print every run of the sweep (done or to do, with its recipe tag) and what the runs left cost in core-hours.

    A run to do is priced at its steps times the measured core-minutes per step of rows with its ``cost_keys``
    (this ``--out`` folder's rows and the protocol's committed ones).
    """
    results = PROTOCOLS.get(args.protocol or "", {}).get("results")
    rows = list(done.values()) + (load_rows(SDK_ROOT / results) if results else [])
    per_step = minutes_per_step(rows)
    left, unpriced, pending = 0.0, 0, 0
    for d, ratio, m, seed in todo:
        rec = recipe(d, m, args)
        if (d, ratio, m, seed, recipe_tag(rec)) in done:
            print(f"done {d} {ratio} {m} seed {seed} [{recipe_tag(rec)}]")
            continue
        pending += 1
        step, where = paused_step(Path(args.out) / "runs" / run_name(d, ratio, m, seed, rec))
        cost = next((per_step[k] * (args.steps - step) for k in cost_keys(d, m, rec) if k in per_step), None)
        unpriced += cost is None
        left += cost or 0.0
        price = f"~{cost:.0f} min" if cost is not None else "no measured cost"
        print(f"todo {d} {ratio} {m} seed {seed} [{recipe_tag(rec)}] {price}{where}")
    print(f"{pending} of {len(todo)} runs to do: about {left / 60:.1f} core-hours"
          + (f" and {unpriced} runs with no measured cost" if unpriced else ""))


def paused_step(run_dir: Path) -> tuple:
    """The step a paused run resumes from (its ``last.pt``; 0 when it has none) and a note saying so for the plan."""
    if not (run_dir / "last.pt").is_file():
        return 0, ""
    try:
        step = int(load_checkpoint(run_dir / "last.pt")["step"])
    except CheckpointError as exc:
        return 0, f" (its last.pt is unreadable, the run starts again: {exc})"
    return step, f" (paused at step {step})"


# a child stopped by the SIGTERM it was sent: in training it wrote last.pt at its step (exit 128 + signal); before
# training began it died at once (negative: killed), losing nothing. Either way the same command resumes it.
PAUSED_EXIT_CODES = (128 + signal.SIGTERM, 128 + signal.SIGINT, -signal.SIGTERM)


def run_parallel(configs: List[tuple], args: argparse.Namespace, rows_path: Path) -> Optional[int]:
    """Run ``configs`` (dataset, ratio, method, seed) as up to ``args.jobs`` child processes of this script at once.

    Each child runs one configuration with ``--jobs 1`` and appends its row to ``rows_path``; its output goes to
    ``<out>/logs/<config>.log``. Meant for one GPU that a single small run leaves mostly idle. SIGTERM or Ctrl-C
    pauses the sweep: each child is sent SIGTERM, writes ``last.pt`` at its step and exits; no new run starts.
    Returns None, or the shell's exit code for the signal that paused the sweep.
    """
    logs = Path(args.out) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    t0, queue, running, forwarded = time.time(), list(configs), {}, False
    with stop_requests() as stop:
        while queue or running:
            if stop and not forwarded:  # pause: every child checkpoints its step and exits; start nothing more
                print(f"signal {stop.signum}: pausing {len(running)} runs, {len(queue)} not started", flush=True)
                for proc in running:
                    proc.send_signal(signal.SIGTERM)  # SIGTERM even for Ctrl-C: a second SIGINT would not wait for the step
                queue.clear()
                forwarded = True
            late = args.stop_after_min and time.time() - t0 > 60 * args.stop_after_min
            while queue and len(running) < args.jobs and not late:
                d, ratio, m, seed = queue.pop(0)
                log = logs / f"{d}-{ratio.replace('/', 'of')}-{m}-s{seed}.log"
                cmd = [sys.executable, __file__, *sys.argv[1:], "--jobs", "1", "--stop_after_min", "0", "--datasets", d,
                       "--ratios", ratio, "--methods", m, "--seeds", str(seed), "--no_summary"]
                with open(log, "w") as out:  # the child holds its own copy of the descriptor
                    running[subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)] = log
            if late and queue:
                print(f"--stop_after_min {args.stop_after_min} reached: {len(queue)} runs not started", flush=True)
                queue.clear()
            time.sleep(1)
            for proc in [p for p in running if p.poll() is not None]:
                log = running.pop(proc)
                lines = log.read_text().strip().splitlines()
                last = lines[-1] if lines else ""
                if proc.returncode == 0:
                    status = last
                elif proc.returncode in PAUSED_EXIT_CODES:
                    status = f"paused, resumes when the same command runs again: {last}"
                else:
                    status = f"FAILED (exit {proc.returncode}), see {log}"
                print(f"[{(time.time() - t0) / 60:.1f} min] {status}", flush=True)
    return None if stop.signum is None else 128 + stop.signum


def dataset_settings(dataset: str, args: argparse.Namespace) -> dict:
    """``DATASET_ARGS`` of ``dataset``, then the ``--protocol``'s settings for it, then the command line's
    ``--data_args`` (per dataset), ``--crop_size``, ``--eval_window`` and ``--val_split``."""
    ds = dict(DATASET_ARGS.get(dataset, DATASET_ARGS["folder"]))
    proto = dict(PROTOCOLS[args.protocol]["datasets"].get(dataset, {})) if getattr(args, "protocol", None) else {}
    ds["data_args"] = {**ds["data_args"], **proto.pop("data_args", {}), **json.loads(args.data_args).get(dataset, {})}
    ds.update(proto)
    if args.crop_size:
        ds["crop_size"] = tuple(args.crop_size)
    if getattr(args, "eval_window", None):
        ds["eval_mode"], ds["eval_window"] = "slide", tuple(args.eval_window)
    ds["val_split"] = args.val_split or ds.get("val_split", "val")
    return ds


BUDGET_KEYS = ("steps", "batch_size", "lr", "model", "encoder")  # what --table matches between rows and the command line


def table_rows(rows: List[dict], args: argparse.Namespace) -> List[dict]:
    """The rows of a results file that this command line's sweep covers, whatever commit trained them: its datasets,
    ratios, methods (any ``--method_args``) and seeds (a repeat, by the seed of the split it trained), at its budget
    and model (``BUDGET_KEYS``)."""
    want = {k: getattr(args, k) for k in BUDGET_KEYS}
    return [r for r in rows if r["dataset"] in args.datasets and r["ratio"] in args.ratios and r["method"] in args.methods
            and split_of(r) in args.seeds and all((r.get("recipe") or {}).get(k) == v for k, v in want.items())]


def write_summary(rows: List[dict], out: Path, t0: float) -> None:
    """summary.csv, summary.md (table, target table, per-class table) and summary.png of the finished rows."""
    summary = summarise(rows)
    write_csv(out / "summary.csv", [{k: v for k, v in s.items() if not k.startswith("_")} for s in summary])
    (out / "summary.md").write_text(print_table(summary) + "\n" + target_table(summary) + "\n" + class_table(summary)
                                    + "\n" + repeat_table(rows) + "\n")
    plot(summary, out / "summary.png")
    print(f"wall time {(time.time() - t0) / 60:.1f} min; wrote {out}/summary.csv, summary.md, summary.png")


def parse_args(parser: argparse.ArgumentParser, argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse ``argv``; with ``--protocol NAME`` that protocol's ``defaults`` replace the parser's before flags apply."""
    known, _ = parser.parse_known_args(argv)
    if known.protocol:
        parser.set_defaults(**PROTOCOLS[known.protocol]["defaults"])
    return parser.parse_args(argv)


def build_parser() -> argparse.ArgumentParser:
    """The command line of this benchmark."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["synthetic-driving", "synthetic-aerial"])
    p.add_argument("--data_root", default=None, help="root of a real dataset (with --datasets folder|voc|cityscapes|camvid)")
    p.add_argument("--ratios", nargs="+", default=["1/16", "1/8", "all"])
    p.add_argument("--methods", nargs="+", default=["supervised"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--all_methods", nargs="+", default=None, help="the methods that also run with all labels (ratio "
                   "'all', where no image is left unlabelled); default: every method of --methods")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--model", default="deeplabv3plus")
    p.add_argument("--encoder", default="resnet18")
    p.add_argument("--model_args", default="{}", help='JSON, e.g. \'{"channels": 64}\' for the light DeepLabV3+')
    p.add_argument("--strong_aug", default="{}", help='JSON, strong-view overrides for every method, e.g. '
                   '\'{"blur_sigma": [0.03, 0.6], "blur_kernel": 5}\' (semiseg_sdk.augment.StrongConfig)')
    p.add_argument("--method_args", default="{}", help='JSON per method, e.g. \'{"fixmatch": {"conf_thresh": 0.0}}\'')
    p.add_argument("--sup_loss", default="ce", choices=["ce", "ohem"], help="labelled loss of every method")
    p.add_argument("--ohem_min_kept", type=int, default=200000, help="OHEM: pixels kept at least per batch (official "
                   "200000 of 2 x 801^2; the same 15.6 %% of batch 8 x 96^2 is 11500)")
    p.add_argument("--data_args", default="{}", help='JSON per dataset, merged into DATASET_ARGS, e.g. '
                   '\'{"synthetic-driving": {"size": [192, 384]}}\'')
    p.add_argument("--val_split", default=None, help="split every run is scored on (default: the protocol's or val); "
                   "folder sets join splits with '+' (e.g. val+test: more images, a steadier score on a small real set)")
    p.add_argument("--crop_size", type=int, nargs=2, default=None, help="training crop (H W) instead of the dataset's")
    p.add_argument("--eval_window", type=int, nargs=2, default=None, help="evaluate by sliding windows of H W pixels "
                   "instead of the dataset's (or the protocol's) evaluation")
    p.add_argument("--rescore", action="store_true", help="train nothing: score the final checkpoints of the finished "
                   "runs in --out that the command line covers again on --eval_window, appending a row for each")
    p.add_argument("--pretrained", default=None, help="'imagenet' (packaged EfficientNet-Lite0 weights) or a local file")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--split_seed", type=int, default=None, help="train every seed on the split this seed draws "
                   "(TrainConfig.split_seed): repeats that measure run-to-run noise on one split; a split scores the mean of its runs")
    p.add_argument("--weight_ema", type=float, default=0.0, help="evaluate an EMA of every run's weights with this "
                   "momentum (TrainConfig.weight_ema; 0 = the network as trained); such rows form their own table section")
    p.add_argument("--eval_every", type=int, default=None, help="also evaluate every N steps (the curve goes in runs.jsonl); default: at the end only")
    p.add_argument("--cache_mb", type=int, default=512, help="in-memory item cache per stream and loader worker (0 = off); each image is drawn once")
    p.add_argument("--out", default="bench/label_efficiency")
    p.add_argument("--jobs", type=int, default=1, help="runs at once, one process each (for a GPU a run leaves idle)")
    p.add_argument("--stop_after_min", type=float, default=0, help="start no new run after this many minutes "
                   "(runs under way finish; 0 = no limit)")
    p.add_argument("--no_summary", action="store_true", help="write no summary files (used by --jobs children)")
    p.add_argument("--protocol", default=None, choices=sorted(PROTOCOLS), help="a named benchmark protocol: its "
                   "datasets, label counts, methods, seeds, budget, model and per-dataset settings become the defaults "
                   "(flags given on the command line still win); see PROTOCOLS and docs/benchmarks.md")
    p.add_argument("--plan", action="store_true", help="print the runs still to do (with their recipe tags) and exit")
    p.add_argument("--table", default=None, metavar="ROWS_JSONL", help="print the tables of the rows in this file "
                   "that the command line covers (its datasets, ratios, methods, seeds, budget and model; rows of "
                   "any commit) and exit: nothing is trained")
    return p


def main() -> None:
    args = parse_args(build_parser())
    if args.table:
        if not Path(args.table).is_file():
            sys.exit(f"{args.table}: no such results file")
        rows = table_rows(load_rows(Path(args.table)), args)
        if not rows:
            sys.exit(f"{args.table}: no row matches the command line's datasets, ratios, methods, seeds and "
                     f"budget ({', '.join(f'--{k} {getattr(args, k)}' for k in BUDGET_KEYS)})")
        summary = summarise(rows)
        print_table(summary)
        target_table(summary)
        class_table(summary)
        repeat_table(rows)
        return
    out = Path(args.out)
    if args.rescore:
        if not args.eval_window:
            sys.exit("--rescore: give the windows to score on with --eval_window H W")
        written = rescore(out / "runs.jsonl", args)
        print(f"{len(written)} runs scored again on {args.eval_window[0]}x{args.eval_window[1]} windows "
              f"(rows appended to {out / 'runs.jsonl'})")
        return
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "runs.jsonl"
    done = read_rows(rows_path)
    t0 = time.time()
    todo = [(d, ratio, m, seed) for seed in args.seeds for ratio in args.ratios for d in args.datasets for m in args.methods
            if ratio != "all" or args.all_methods is None or m in args.all_methods]
    if args.plan:
        print_plan(todo, done, args)
        return
    pending = [c for c in todo if (*c, recipe_tag(recipe(c[0], c[2], args))) not in done]
    paused = None  # the exit code of a sweep paused by a signal
    if args.jobs > 1:
        paused = run_parallel(pending, args, rows_path)
        done.update(read_rows(rows_path))
    else:
        for d, ratio, m, seed in pending:
            if args.stop_after_min and time.time() - t0 > 60 * args.stop_after_min:
                print(f"--stop_after_min {args.stop_after_min} reached: not starting {d} {ratio} {m} seed {seed}")
                break
            try:
                row = run_one(d, ratio, m, seed, args)
            except TrainingInterrupted as exc:
                # the trainer's message names `--resume`; a sweep resumes by being run again as it was
                print(f"{d} {ratio} {m} seed {seed}: paused at step {exc.step} of {args.steps}; the same sweep "
                      f"command run again resumes it", flush=True)
                paused = exc.exit_code
                break
            except FolderInUseError as exc:  # another sweep trains it: leave it to that one
                print(f"{d} {ratio} {m} seed {seed}: skipped, {exc}", flush=True)
                continue
            done[(d, ratio, m, seed, recipe_tag(row["recipe"]))] = row
            append_row(rows_path, row)
            print(f"{d} {ratio} {m} seed {seed}: mIoU {100 * row['miou']:.2f} ({row['minutes']:.1f} min); "
                  f"curve {row['curve']}", flush=True)
    rows = [done[k] for k in ((*c, recipe_tag(recipe(c[0], c[2], args))) for c in todo) if k in done]
    if rows and not args.no_summary:
        write_summary(rows, out, t0)
    if paused is not None:
        sys.exit(paused)


if __name__ == "__main__":
    main()
