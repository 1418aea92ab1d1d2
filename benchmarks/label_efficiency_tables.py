"""The label-efficiency benchmark's tables, computed from result rows alone (nothing is trained here): the summary
per (dataset, ratio, method) over labelled splits, the mIoU table, the target table (paired gains, gap recovered,
convergence of the all-label reference, late swing), the per-class table, the run-to-run noise table and a bar chart.

A row is one finished run as ``label_efficiency.py`` writes it: dataset, ratio, method, seed, miou, iou, curve,
threads and the recipe it trained with.
"""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Dict, List, Optional

import cv2
import numpy as np


def method_label(row: dict) -> str:
    """The method as tables name it: its registry name, followed by its ``--method_args`` when the run set any
    (``unimatch {"class_thresholds":true}``), so a lever's rows never merge with the official recipe's, and by how
    its network was evaluated where that is not the plain way (``supervised [weight_ema 0.99]``, see
    :func:`evaluated`)."""
    args = (row.get("recipe") or {}).get("method_args") or {}
    return (row["method"] + (f" {json.dumps(args, sort_keys=True, separators=(',', ':'))}" if args else "")
            + evaluated(row))


def evaluated(row: dict) -> str:
    """How a row's run evaluated its network, as tables mark it: ``""`` for the network as trained, on the data set's
    first evaluation window; else the settings in brackets: the sliding window (``--eval_window``) and the weight
    average (``--weight_ema``), e.g. `` [eval_window 96x96, weight_ema 0.99]``."""
    recipe = row.get("recipe") or {}
    marks = []
    if recipe.get("eval_window"):
        marks.append("eval_window " + "x".join(str(p) for p in recipe["eval_window"]))
    if recipe.get("weight_ema"):
        marks.append(f"weight_ema {float(recipe['weight_ema']):g}")
    return mark(marks)


def marks_of(ev: str) -> List[str]:
    """The settings of an :func:`evaluated` mark, e.g. ``["eval_window 96x96", "weight_ema 0.99"]``."""
    return [m for m in ev.strip()[1:-1].split(", ") if m] if ev else []


def mark(settings: List[str]) -> str:
    """The :func:`evaluated` mark of ``settings`` (``""`` for none)."""
    return f" [{', '.join(settings)}]" if settings else ""


def summarise(rows: List[dict]) -> List[dict]:
    """Mean and standard deviation of the final mIoU over labelled splits, and mean IoU of each class, per (dataset,
    ratio, method label). A split's score is the mean of its runs: the row of the seed that drew it and any repeats
    (``--split_seed``) trained on it with other seeds; ``seeds`` counts the splits, ``runs`` the runs.
    ``_per_seed`` maps each split (its seed) to its score (for paired comparisons) and ``_name`` is the method's
    registry name without its ``--method_args`` (neither is written to the CSV). A run counts once: where a results
    file holds two rows of one seed, split and thread count (a run repeated at a later commit), the later row stands
    for it; the same seed on another thread count is another run (:func:`run_key`)."""
    by_split = runs_by_split(rows)
    classes = list(dict.fromkeys(c for r in rows for c in r.get("iou", {})))
    out = []
    for (d, ratio, m), splits in by_split.items():
        group = [r for runs in splits.values() for r in runs.values()]
        per_split = {sp: statistics.mean(100 * r["miou"] for r in runs.values()) for sp, runs in splits.items()}
        v = list(per_split.values())
        row = {"dataset": d, "ratio": ratio, "method": m, "miou_mean": statistics.mean(v),
               "miou_std": statistics.stdev(v) if len(v) > 1 else 0.0, "seeds": len(v), "runs": len(group)}
        for c in classes:  # per-class IoU, mean over the runs that measured it (None: class absent from the val set)
            per = [r["iou"][c] for r in group if r.get("iou", {}).get(c) is not None]
            row[f"iou_{c}"] = statistics.mean(per) if per else float("nan")
        row["_per_seed"] = per_split
        row["_name"] = group[0]["method"]
        row["_evaluated"] = evaluated(group[0])
        row["_curves"] = {(split_of(r), r["seed"]): r["curve"] for r in group if r.get("curve")}
        out.append(row)
    return out


def print_table(summary: List[dict]) -> str:
    """One row per (dataset, method), one column per ratio: mean +- std over seeds."""
    ratios = list(dict.fromkeys(s["ratio"] for s in summary))
    keys = list(dict.fromkeys((s["dataset"], s["method"]) for s in summary))
    cell = {(s["dataset"], s["method"], s["ratio"]): f"{s['miou_mean']:.1f} ± {s['miou_std']:.1f}" for s in summary}
    lines = ["| dataset | method | " + " | ".join(ratios) + " |", "|---|---|" + "---|" * len(ratios)]
    for d, m in keys:
        lines.append(f"| {d} | {m} | " + " | ".join(cell.get((d, m, r), "-") for r in ratios) + " |")
    text = "\n".join(lines)
    print(text)
    return text


def class_table(summary: List[dict]) -> str:
    """Per dataset: one row per (ratio, method), one column per class (IoU %, mean over seeds)."""
    lines = []
    for d in dict.fromkeys(s["dataset"] for s in summary):
        rows = [s for s in summary if s["dataset"] == d]
        classes = [k[4:] for k in rows[0] if k.startswith("iou_") and any(r[k] == r[k] for r in rows)]  # nan != nan
        if not classes:
            continue
        lines += [f"\n{d}: IoU per class", "| ratio | method | " + " | ".join(classes) + " |", "|---|---|" + "---|" * len(classes)]
        lines += [f"| {r['ratio']} | {r['method']} | " + " | ".join(f"{r['iou_' + c]:.1f}" for c in classes) + " |" for r in rows]
    text = "\n".join(lines)
    print(text)
    return text


MIN_SEEDS = 3  # a gain is judged against the seed spread only with at least this many seeds on both sides
CONVERGED_RISE = 0.5  # the protocol's convergence test: a curve whose last third rises less (mIoU points) has converged


def last_third_rise(curve: List[List[float]]) -> Optional[float]:
    """How much a curve of ``[step, mIoU]`` points rises over the last third of its steps: its last value minus its
    value at the evaluation nearest two thirds of the last step (None without a point before the last)."""
    if len(curve) < 2:
        return None
    end_step, end = curve[-1]
    _, start = min(curve[:-1], key=lambda p: abs(p[0] - 2 * end_step / 3))
    return end - start


def runs_by_split(rows: List[dict]) -> Dict[tuple, Dict[int, Dict[tuple, dict]]]:
    """Rows grouped as the tables count them: per (dataset, ratio, method label), per labelled split
    (:func:`split_of`), per run (:func:`run_key`); of two rows of one run the later stands."""
    out: Dict[tuple, Dict[int, Dict[tuple, dict]]] = {}
    for r in rows:
        out.setdefault((r["dataset"], r["ratio"], method_label(r)), {}).setdefault(split_of(r), {})[run_key(r)] = r
    return out


def runs_note(row: dict) -> str:
    """``, 5 runs`` where a summary row's splits were trained more than once each on average, else nothing."""
    return f", {row['runs']} runs" if row["runs"] > row["seeds"] else ""


def run_key(row: dict) -> tuple:
    """What makes two rows of one split two runs: their seed, and the torch threads they trained on (another thread
    count sums floats in another order, which moves a run's result as another seed can; rows without the field
    trained on one thread beside another run)."""
    return row["seed"], row.get("threads")


def split_of(row: dict) -> int:
    """The labelled split a row trained on: its ``--split_seed`` where it set one (a repeat), else its seed."""
    return int((row.get("recipe") or {}).get("split_seed", row["seed"]))


def repeat_table(rows: List[dict]) -> str:
    """Run-to-run noise: per (dataset, ratio, method) and split trained more than once (``--split_seed`` repeats,
    or the same seed on another thread count: :func:`run_key`), every run of that split with their mean and std;
    then the pooled std within a split (root mean of the splits' variances) beside the std between splits of the
    rows whose seed drew them (the first such row of a split) and between the split means (the spread the target
    table judges gains against). A gain between splits is told from noise only where the within-split std is small
    against it."""
    lines = []
    for (d, ratio, m), grouped in runs_by_split(rows).items():
        splits = {sp: {k: 100 * r["miou"] for k, r in runs.items()} for sp, runs in grouped.items()}
        repeated = {sp: seeds for sp, seeds in splits.items() if len(seeds) > 1}
        if not repeated:
            continue
        if not lines:
            lines += ["\nrun-to-run noise: one labelled split trained more than once (--split_seed, thread counts)",
                      "| dataset | ratio | method | split | runs (seed: mIoU) | mean ± std |", "|---|---|---|---|---|---|"]
        for sp, seeds in sorted(repeated.items()):
            v = list(seeds.values())
            twice = {seed for seed, _ in seeds if sum(k[0] == seed for k in seeds) > 1}
            shown = ", ".join(f"{seed}" + (f" ({threads or 1} thr.)" if seed in twice else "") + f": {x:.1f}"
                              for (seed, threads), x in sorted(seeds.items(), key=lambda kv: (kv[0][0], kv[0][1] or 1)))
            lines.append(f"| {d} | {ratio} | {m} | {sp} | {shown} | {statistics.mean(v):.1f} ± {statistics.stdev(v):.1f} |")
        within = math.sqrt(statistics.mean(statistics.variance(list(s.values())) for s in repeated.values()))
        firsts = [next(x for (seed, _), x in seeds.items() if seed == sp) for sp, seeds in splits.items()
                  if any(seed == sp for seed, _ in seeds)]
        means = [statistics.mean(seeds.values()) for seeds in splits.values()]
        between = (f"{statistics.stdev(firsts):.1f} between the first runs of {len(firsts)} splits"
                   if len(firsts) > 1 else "")
        if len(means) > 1:
            between += ("; " if between else "") + f"{statistics.stdev(means):.1f} between the split means"
        lines.append(f"{d} {ratio} {m}: std within a split {within:.1f} ({len(repeated)} of {len(splits)} splits "
                     f"repeated)" + (f"; {between}" if between else ""))
    text = "\n".join(lines)
    if text:
        print(text)
    return text


def late_swing(curve: List[List[float]]) -> Optional[float]:
    """How much a curve of ``[step, mIoU]`` points swings between evaluations late in the run: the mean absolute
    change between consecutive evaluations from half the last step on (None with fewer than two such points). A
    score that swings this much between evaluations can move its final value by as much, whatever was learnt."""
    late = [v for step, v in curve if step >= curve[-1][0] / 2] if curve else []
    if len(late) < 2:
        return None
    return statistics.mean(abs(b - a) for a, b in zip(late, late[1:]))


def mean_swing(row: dict) -> Optional[float]:
    """:func:`late_swing` of a summary row, mean over its runs with a curve (None: no run has one)."""
    swings = [w for w in (late_swing(c) for c in row["_curves"].values()) if w is not None]
    return statistics.mean(swings) if swings else None


def target_table(summary: List[dict]) -> str:
    """The label-efficiency target, per dataset and ratio below ``all``: each method's mIoU (mean +- std over seeds),
    its gain over ``supervised`` at the same ratio (paired: the mean of the per-seed differences over the seeds, i.e.
    labelled splits, both measured; the difference of the means when they share none), whether that gain exceeds
    supervised's own seed std (judged only with ``MIN_SEEDS`` seeds on both sides; the summary line also counts the
    registry names beyond it, a method with two settings beyond it counting once), on how many of the shared splits
    it is ahead (a mean gain beyond the std can still lose on one split: the count shows it), and the share of the gap
    between ``supervised`` at that ratio and with all labels it recovers: the gap of the seeds it shares with
    ``supervised`` (a method with one seed on the weakest split is measured against that split's gap, not the mean one).
    The header says how much the all-label reference still rises over the last third of its curve: a gap measured
    against a reference that has not converged is a moving target. The late swing (:func:`late_swing`, mean over
    seeds; supervised's in the header) says how far a row's final score may be from what its run learnt.

    Rows whose runs evaluated their network otherwise (on another window, a weight average: :func:`evaluated`)
    form their own section, compared with ``supervised`` evaluated the same way; its gap is taken to the all-label
    reference evaluated the same way where one was measured, else to the plainly evaluated one (the header says so)."""
    row_of = {(s["dataset"], s["ratio"], s["method"]): s for s in summary}

    def stat(key: tuple) -> Optional[tuple]:
        """(mIoU mean, std, seed count) of the summary row at ``key``; None where there is none."""
        row = row_of.get(key)
        return None if row is None else (row["miou_mean"], row["miou_std"], row["seeds"])

    lines = []
    datasets = list(dict.fromkeys(s["dataset"] for s in summary))
    sections = dict.fromkeys((s["dataset"], s["ratio"], s["_evaluated"]) for s in summary if s["ratio"] != "all")
    for d, ratio, ev in sorted(sections, key=lambda k: datasets.index(k[0])):
        sup_label = "supervised" + ev
        # the all-label reference evaluated the same way; else the same scoring without the weight average (a window
        # sets the scale of a score, an average does not); else the plainly evaluated one. Each candidate with the
        # settings it drops (the header names them)
        marks = marks_of(ev)
        averages = [m for m in marks if m.startswith("weight_ema")]
        candidates = [(sup_label, []), ("supervised" + mark([m for m in marks if m not in averages]), averages),
                      ("supervised", marks)]
        full_key, dropped = next((((d, "all", label), drop) for label, drop in candidates if (d, "all", label) in row_of),
                                 (None, []))
        full = None if full_key is None else stat(full_key)
        sup = stat((d, ratio, sup_label))
        others = [(k[2], stat(k)) for k in row_of if k[:2] == (d, ratio) and row_of[k]["_evaluated"] == ev
                  and k[2] != sup_label]
        if sup is None or not others:
            continue
        base, base_std, base_n = sup
        gap = None if full is None else full[0] - base
        reference = f"all labels, evaluated without{mark(dropped)}" if dropped else "all labels"
        sup_swing = mean_swing(row_of[(d, ratio, sup_label)])
        lines += [f"\n{d} {ratio}{ev}: vs {sup_label} {base:.1f} ± {base_std:.1f} ({base_n} seeds"
                  + runs_note(row_of[(d, ratio, sup_label)])
                  + ("" if sup_swing is None else f"; late swing {sup_swing:.1f}") + ")"
                  + ("" if gap is None else f" ({reference} {full[0]:.1f} ± {full[1]:.1f}, gap {gap:+.1f}"
                     + reference_convergence(row_of[full_key]["_curves"]) + ")"),
                  "| method | mIoU | seeds | gain (paired over seeds) | beyond its std | ahead on splits "
                  "| gap recovered | late swing |",
                  "|---|---|---|---|---|---|---|---|"]
        beats = judged = everywhere = 0
        named = set()  # registry names beyond the std in any setting: the target counts methods, not variants
        sup_seeds = row_of[(d, ratio, sup_label)]["_per_seed"]
        for m, (v, sd, n) in sorted(others, key=lambda mv: -mv[1][0]):
            mine = row_of[(d, ratio, m)]["_per_seed"]
            shared = shared_seeds(mine, sup_seeds)
            diffs = [mine[k] - sup_seeds[k] for k in shared]
            gain = statistics.mean(diffs) if diffs else v - base
            spread = f" ± {statistics.stdev(diffs):.1f}" if len(diffs) > 1 else ""
            shown = f"{gain:+.1f}{spread} ({len(diffs)})" if diffs else f"{gain:+.1f} (unpaired)"
            own_gap = gap if gap is None or not shared else full[0] - statistics.mean(sup_seeds[k] for k in shared)
            share = "-" if not own_gap or own_gap <= 0 else f"{100 * gain / own_gap:.0f} %"
            if n >= MIN_SEEDS and base_n >= MIN_SEEDS:
                judged += 1
                won = gain > base_std
                beats += won
                everywhere += won and all(x > 0 for x in diffs)
                if won:
                    named.add(row_of[(d, ratio, m)]["_name"])
                beyond = "yes" if won else "no"
            else:
                beyond = f"- (< {MIN_SEEDS} seeds)"
            ahead = f"{sum(x > 0 for x in diffs)} of {len(diffs)}" if diffs else "-"
            swing = mean_swing(row_of[(d, ratio, m)])
            lines.append(f"| {m} | {v:.1f} ± {sd:.1f} | {n}{runs_note(row_of[(d, ratio, m)])} | {shown} | {beyond} "
                         f"| {ahead} | {share} | " + ("-" if swing is None else f"{swing:.1f}") + " |")
        lines.append(f"beats supervised by more than its std ({base_std:.1f}): {beats} of {judged} with "
                     f">= {MIN_SEEDS} seeds" + (f" ({len(others) - judged} with fewer not judged)"
                                                 if judged < len(others) else "")
                     + f"; {everywhere} of them ahead on every shared split; named methods (any setting) "
                     f"beyond it: {len(named)} ({', '.join(sorted(named)) or 'none'})")
    text = "\n".join(lines)
    print(text)
    return text


def reference_convergence(curves: Dict[tuple, List[List[float]]]) -> str:
    """The all-label reference's convergence, for the target table's header: the mean rise of its seeds' curves over
    their last third, flagged when it reaches ``CONVERGED_RISE`` (the gap it spans is then still moving)."""
    rises = [r for r in (last_third_rise(c) for c in curves.values()) if r is not None]
    if not rises:
        return ""
    rise = statistics.mean(rises)
    return f"; its last third rises {rise:+.1f}" + (" (not converged)" if rise >= CONVERGED_RISE else "")


def shared_seeds(method: Dict[int, float], supervised: Dict[int, float]) -> List[int]:
    """The seeds both measured, in order: each seed is one labelled split, so a per-seed difference removes the
    split's own luck, and the gap a method is credited against is that of the splits it trained on."""
    return [s for s in sorted(method) if s in supervised]


def plot(summary: List[dict], path: Path) -> None:
    """A grouped bar chart (one panel per dataset) drawn with OpenCV."""
    datasets = list(dict.fromkeys(s["dataset"] for s in summary))
    methods = list(dict.fromkeys(s["method"] for s in summary))
    ratios = list(dict.fromkeys(s["ratio"] for s in summary))
    colours = [(200, 120, 40), (60, 160, 60), (40, 40, 200), (160, 60, 160), (30, 170, 200), (120, 120, 120)]
    bar, gap, h = 14, 30, 260
    panel_w = len(methods) * (len(ratios) * bar + gap) + 60
    img = np.full((h + 80, panel_w * len(datasets), 3), 255, np.uint8)
    for di, d in enumerate(datasets):
        x0 = di * panel_w + 40
        cv2.putText(img, d, (x0, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
        for mi, m in enumerate(methods):
            for ri, r in enumerate(ratios):
                s = next((s for s in summary if (s["dataset"], s["method"], s["ratio"]) == (d, m, r)), None)
                if s is None:
                    continue
                x = x0 + mi * (len(ratios) * bar + gap) + ri * bar
                top = int(h + 30 - h * s["miou_mean"] / 100)
                cv2.rectangle(img, (x, top), (x + bar - 2, h + 30), colours[ri % len(colours)], -1)
            cv2.putText(img, m[:10], (x0 + mi * (len(ratios) * bar + gap), h + 50), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)
    for ri, r in enumerate(ratios):
        cv2.putText(img, r, (10 + 60 * ri, h + 72), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colours[ri % len(colours)], 1)
    cv2.imwrite(str(path), img)
