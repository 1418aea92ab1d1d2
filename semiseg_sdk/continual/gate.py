"""The promotion gate: a candidate ships only if it is not worse than the served model on frozen labelled sets.

Rules (all in mIoU/IoU points, 1 point = 0.01; defaults in :class:`GatePolicy`), checked on the holdout set:

1. regression: ``candidate mIoU >= current mIoU - tolerance`` (0.5 points);
2. collapse: no class present in the holdout ground truth may collapse. A class collapses when its IoU
   (a) falls under ``collapse_ratio`` (50 %) of the current value while the current value is at least
   ``collapse_min`` (10 points; below that a halving is noise), or (b) falls under the absolute floor
   ``collapse_floor`` (5 points) while the current value was at or above it;
3. drift: ``candidate mIoU >= origin mIoU - max_drift`` (1 point), origin = the store's first version, so a chain
   of promotions that each lose a little cannot add up to a large loss (``None`` switches the rule off);
4. probe (only with a probe set): the same regression rule with ``probe_tolerance`` (``None``: report only).

The decision, its reasons and every number are kept (gate.json) and printed as a table (gate.txt).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Mapping, Optional

import torch
from torch import nn

from ..engine.evaluator import evaluate
from .labelled_sets import OpenedSet


@dataclass(frozen=True)
class GatePolicy:
    """Thresholds of the gate, in points (see the module docstring)."""

    tolerance: float = 0.5
    collapse_ratio: float = 0.5
    collapse_min: float = 10.0
    collapse_floor: float = 5.0
    max_drift: Optional[float] = 1.0
    probe_tolerance: Optional[float] = 0.5

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def evaluate_sets(model: nn.Module, sets: Mapping[str, OpenedSet], device: torch.device, batch_size: int = 8,
                  num_workers: int = 0, scoring: Optional[Mapping[str, Any]] = None) -> Dict[str, Dict[str, Any]]:
    """Metrics of ``model`` on each set: miou, macc, aacc, per-class iou and gt_pixels (ground-truth pixels).

    ``scoring`` (``{"mode", "window"}``, the store's source run's evaluation, recorded when the store was made) says
    how images are scored; a store made before it was recorded keeps its rule: whole images, 512-px sliding windows
    for images over 1024 px."""
    out = {}
    for name, s in sets.items():
        names = list(s.dataset.info.classes)
        if scoring:
            mode, window = str(scoring["mode"]), tuple(int(v) for v in scoring["window"])
        else:
            h, w = s.view()[0]["image"].shape[-2:]
            mode, window = "slide" if max(h, w) > 1024 else "whole", (512, 512)
        res = evaluate(model.to(device), s.view(), len(names), names, device, mode=mode, window=window,
                       batch_size=batch_size, num_workers=num_workers)
        confusion = res.pop("confusion")
        out[name] = {"miou": res["miou"], "macc": res["macc"], "aacc": res["aacc"], "iou": res["iou"],
                     "gt_pixels": {n: int(v) for n, v in zip(names, confusion.sum(axis=1))}, "images": len(s)}
    return out


def decide(policy: GatePolicy, current: Mapping[str, Mapping[str, Any]], candidate: Mapping[str, Mapping[str, Any]],
           origin_holdout: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """``{"passed", "reasons", "checks"}`` for metrics of the current model and the candidate per set."""
    reasons: List[str] = []
    checks: Dict[str, Any] = {}
    cur, cand = current["holdout"], candidate["holdout"]
    delta = 100 * (cand["miou"] - cur["miou"])
    checks["holdout_delta"] = delta
    if delta < -policy.tolerance:
        reasons.append(f"holdout mIoU fell {-delta:.2f} points ({100 * cur['miou']:.2f} -> {100 * cand['miou']:.2f}), "
                       f"tolerance {policy.tolerance:.2f}")
    collapsed = collapsed_classes(policy, cur, cand)
    checks["collapsed"] = collapsed
    for c in collapsed:
        reasons.append(f"class '{c['class']}' collapsed on the holdout: IoU {c['current']:.2f} -> {c['candidate']:.2f} ({c['rule']})")
    if origin_holdout is not None and policy.max_drift is not None:
        drift = 100 * (cand["miou"] - origin_holdout["miou"])
        checks["drift_from_origin"] = drift
        if drift < -policy.max_drift:
            reasons.append(f"holdout mIoU is {-drift:.2f} points below the first version's "
                           f"({100 * origin_holdout['miou']:.2f}), allowed drift {policy.max_drift:.2f}")
    if "probe" in candidate and "probe" in current:
        pdelta = 100 * (candidate["probe"]["miou"] - current["probe"]["miou"])
        checks["probe_delta"] = pdelta
        if policy.probe_tolerance is not None and pdelta < -policy.probe_tolerance:
            reasons.append(f"probe mIoU fell {-pdelta:.2f} points, tolerance {policy.probe_tolerance:.2f}")
    return {"passed": not reasons, "reasons": reasons, "checks": checks, "policy": policy.to_dict()}


def collapsed_classes(policy: GatePolicy, cur: Mapping[str, Any], cand: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """Classes of the holdout ground truth whose IoU collapsed (rules 2a and 2b), with the rule that fired."""
    out = []
    for name, before in cur["iou"].items():
        if cur["gt_pixels"].get(name, 0) == 0 or not _finite(before):
            continue
        b, a = 100 * before, 100 * (cand["iou"].get(name) if _finite(cand["iou"].get(name)) else 0.0)
        rule = None
        if b >= policy.collapse_min and a < policy.collapse_ratio * b:
            rule = f"below {100 * policy.collapse_ratio:.0f} % of its previous IoU"
        elif b >= policy.collapse_floor > a:
            rule = f"below the {policy.collapse_floor:.1f}-point floor"
        if rule:
            out.append({"class": name, "current": b, "candidate": a, "rule": rule})
    return out


def format_gate(title: str, current: Mapping[str, Mapping[str, Any]], candidate: Mapping[str, Mapping[str, Any]],
                decision: Mapping[str, Any], labels=("current", "candidate")) -> str:
    """The before/after table of every set (per-class IoU and mIoU, in points) with the decision underneath."""
    lines = [title]
    for set_name in candidate:
        cur, cand = current.get(set_name), candidate[set_name]
        names = list(cand["iou"])
        width = max(len("mIoU"), *(len(n) for n in names))
        lines += ["", f"{set_name} ({cand['images']} images)",
                  f"  {'class':<{width}}  {labels[0]:>9}  {labels[1]:>9}  {'delta':>7}"]
        rows = [(n, cur["iou"].get(n) if cur else None, cand["iou"][n]) for n in names]
        rows.append(("mIoU", cur["miou"] if cur else None, cand["miou"]))
        for n, b, a in rows:
            d = f"{100 * (a - b):+7.2f}" if _finite(a) and _finite(b) else f"{'':>7}"
            lines.append(f"  {n:<{width}}  {_pct(b):>9}  {_pct(a):>9}  {d}")
    verdict = "PASSED" if decision["passed"] else "REJECTED"
    lines += ["", f"gate: {verdict}"] + [f"  - {r}" for r in decision["reasons"]]
    return "\n".join(lines) + "\n"


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _pct(v: Any) -> str:
    return f"{100 * v:.2f}" if _finite(v) else "n/a"
