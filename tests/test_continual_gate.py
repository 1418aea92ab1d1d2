"""The promotion gate: its rules on hand-made numbers, and a damaged candidate refused with the reason recorded."""
from __future__ import annotations

import json

import pytest
import torch

from semiseg_sdk.continual import GatePolicy, ModelStore, RunOptions
from semiseg_sdk.continual.gate import decide, format_gate
from semiseg_sdk.continual.store import Journal
from semiseg_sdk.continual.adapt import AdaptOptions
from semiseg_sdk.continual.refresh import finish_refresh, gate_candidate
from semiseg_sdk.continual.store import write_version
from semiseg_sdk.models.checkpoint import load_checkpoint, save_checkpoint
from test_continual_support import copy_store


def _metrics(iou, gt=None):
    """A metrics dict as evaluate_sets returns it (IoU as fractions; mIoU over finite values)."""
    vals = [v for v in iou.values() if v == v]
    return {"miou": sum(vals) / len(vals), "macc": 0.0, "aacc": 0.0, "iou": dict(iou), "images": 4,
            "gt_pixels": gt or {k: 100 for k in iou}}


def test_regression_tolerance_in_points():
    cur = {"holdout": _metrics({"a": 0.60, "b": 0.40})}
    within = {"holdout": _metrics({"a": 0.60, "b": 0.392})}   # mIoU -0.40 points
    beyond = {"holdout": _metrics({"a": 0.60, "b": 0.388})}   # mIoU -0.60 points
    assert decide(GatePolicy(), cur, within)["passed"]
    d = decide(GatePolicy(), cur, beyond)
    assert not d["passed"] and d["checks"]["holdout_delta"] == pytest.approx(-0.6)
    assert d["reasons"] == ["holdout mIoU fell 0.60 points (50.00 -> 49.40), tolerance 0.50"]
    assert decide(GatePolicy(tolerance=1.0), cur, beyond)["passed"]


def test_collapse_rules_relative_absolute_and_absent_classes():
    cur = {"holdout": _metrics({"big": 0.50, "small": 0.07, "weak": 0.03, "absent": 0.0},
                               gt={"big": 100, "small": 100, "weak": 100, "absent": 0})}
    # big halves (0.50 -> 0.24): relative rule; small 7 -> 4.9 points: under the 5-point floor;
    # weak 3 -> 1 point: under neither rule's reach; absent has no ground truth: ignored even at 0
    cand = {"holdout": _metrics({"big": 0.24, "small": 0.049, "weak": 0.01, "absent": 0.0},
                                gt={"big": 100, "small": 100, "weak": 100, "absent": 0})}
    d = decide(GatePolicy(tolerance=100.0), cur, cand)
    assert [c["class"] for c in d["checks"]["collapsed"]] == ["big", "small"]
    assert "below 50 % of its previous IoU" in d["reasons"][0] and "5.0-point floor" in d["reasons"][1]
    ok = {"holdout": _metrics({"big": 0.26, "small": 0.051, "weak": 0.01, "absent": 0.0},
                              gt={"big": 100, "small": 100, "weak": 100, "absent": 0})}
    assert decide(GatePolicy(tolerance=100.0), cur, ok)["passed"]


def test_drift_from_origin_and_probe_regression():
    origin = _metrics({"a": 0.60})
    cur, cand = {"holdout": _metrics({"a": 0.596})}, {"holdout": _metrics({"a": 0.592})}  # -0.4 each step
    assert decide(GatePolicy(), cur, cand, origin)["passed"]
    far = {"holdout": _metrics({"a": 0.589})}
    d = decide(GatePolicy(tolerance=0.8), cur, far, origin)  # within tolerance of current, 1.1 below the origin
    assert not d["passed"] and "below the first version's" in d["reasons"][0]
    assert decide(GatePolicy(tolerance=0.8, max_drift=None), cur, far, origin)["passed"]
    cur_p = {**cur, "probe": _metrics({"a": 0.30})}
    assert not decide(GatePolicy(), cur_p, {**cand, "probe": _metrics({"a": 0.29})})["passed"]
    assert decide(GatePolicy(probe_tolerance=None), cur_p, {**cand, "probe": _metrics({"a": 0.29})})["passed"]
    table = format_gate("t", cur_p, {**cand, "probe": _metrics({"a": 0.29})}, decide(GatePolicy(), cur_p, {**cand, "probe": _metrics({"a": 0.29})}))
    assert "probe (4 images)" in table and "-1.00" in table and "REJECTED" in table


def _damage(state, how):
    gen = torch.Generator().manual_seed(0)
    out = {}
    for k, v in state.items():
        if not v.is_floating_point() or "running" in k:
            out[k] = v
        elif how == "zeroed":
            out[k] = torch.zeros_like(v)
        else:
            out[k] = v + 3.0 * v.std().nan_to_num(1.0).clamp(min=0.1) * torch.randn(v.shape, generator=gen)
    return out


def _trained_journal(reg, state=None, version="v0002"):
    """A refresh journal in phase "trained" whose candidate is v0001's network (or ``state``)."""
    ckpt = load_checkpoint(reg.version_dir("v0001") / "model.pt")
    journal = Journal.start(reg, version, "v0001", [], train_images=[], adapt={**AdaptOptions().__dict__})
    save_checkpoint(journal.candidate_path, {**{k: v for k, v in ckpt.items() if k not in ("format", "path")},
                                             "model_state": state if state is not None else ckpt["model_state"]})
    journal.advance("trained", train={"config": {"method": "field-adapt"}, "steps": 0})
    return journal


@pytest.mark.parametrize("how", ["zeroed", "noise"])
def test_gate_refuses_a_damaged_candidate_and_records_why(tmp_path, how):
    reg = ModelStore(copy_store(tmp_path / "reg", lenient=False))
    state = load_checkpoint(reg.version_dir("v0001") / "model.pt")["model_state"]
    journal = _trained_journal(reg, _damage(state, how))

    res = finish_refresh(reg, reg.settings(), journal, RunOptions(device="cpu", progress=False, verbose=False), None)
    assert res["status"] == "rejected" and reg.current() == "v0001"
    gate = json.loads((reg.version_dir("v0002") / "gate.json").read_text())
    assert gate["candidate"]["holdout"]["miou"] < gate["current"]["holdout"]["miou"] - 0.005
    assert not gate["decision"]["passed"] and gate["decision"]["reasons"] == res["reasons"]
    assert any("holdout mIoU fell" in r or "collapsed" in r for r in res["reasons"])
    assert "REJECTED" in (reg.version_dir("v0002") / "gate.txt").read_text()
    version = json.loads((reg.version_dir("v0002") / "version.json").read_text())
    assert version["status"] == "rejected" and not (reg.version_dir("v0002") / "model.onnx").exists()
    last = reg.history()[-1]
    assert last["event"] == "reject" and last["version"] == "v0002" and last["reasons"] == res["reasons"]
    assert Journal.load(reg) is None and not reg.pending.exists()


def test_a_candidate_that_cannot_be_exported_is_refused(tmp_path, monkeypatch):
    import semiseg_export

    def broken(*args, **kwargs):
        raise semiseg_export.ParityError("model.onnx: ONNX output disagrees with PyTorch")

    reg = ModelStore(copy_store(tmp_path / "reg"))  # built (and exported) before the exporter breaks
    monkeypatch.setattr(semiseg_export, "export_model", broken)
    res = finish_refresh(reg, reg.settings(), _trained_journal(reg), RunOptions(device="cpu", verbose=False), None)
    assert res["status"] == "rejected" and reg.current() == "v0001"
    assert res["reasons"] == ["ONNX export failed: model.onnx: ONNX output disagrees with PyTorch"]
    assert "gate: REJECTED" in res["report"] and not (reg.version_dir("v0002") / "model.onnx").exists()


def test_the_gate_runs_again_when_current_moved_after_it(tmp_path):
    reg = ModelStore(copy_store(tmp_path / "reg"))
    opts = RunOptions(device="cpu", verbose=False)
    journal = _trained_journal(reg, version="v0003")
    gate_candidate(reg, reg.settings(), journal, opts)
    assert journal.phase == "gated" and journal.data["baseline"] == "v0001"
    # meanwhile (e.g. between a crash and the next run) someone serves another version
    v1_gate = json.loads((reg.version_dir("v0001") / "gate.json").read_text())
    write_version(reg, "v0002", parent="v0001", kind="refresh", checkpoint=reg.version_dir("v0001") / "model.pt",
                  gate=v1_gate, gate_text="", manifest={"new_images": []}, config={})
    reg.set_current("v0002", "promote", reason="by hand")
    res = finish_refresh(reg, reg.settings(), journal, opts, None)
    assert json.loads((reg.version_dir("v0003") / "gate.json").read_text())["baseline"] == "v0002"
    assert res["status"] == "promoted" and reg.current() == "v0003" and "against current v0002" in res["report"]
