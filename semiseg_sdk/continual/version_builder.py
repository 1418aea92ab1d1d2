"""Write one complete version folder: checkpoint, ONNX (promotable versions), gate report, config, manifest.

The ONNX file is made by ``semiseg_export`` with its parity check against PyTorch (a failed check raises and
leaves no version behind); its metadata carry the classes, palette and the holdout metrics of the version.

Everything is written into the hidden ``.vNNNN.tmp-XXXX/`` folder of :meth:`ModelRegistry.building`, fsync'ed and
renamed, so a version is visible only when complete; ``version.json`` is its last file. Rejected candidates are kept
as versions too (status ``rejected``: checkpoint + reports, no ONNX), so a refusal can be inspected later; only
``passed`` versions can become current.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from ..utils.atomic import write_json_atomic, write_text_atomic
from ..models.checkpoint import load_checkpoint, load_inference_model, save_checkpoint
from .faults import crash_point
from .history_log import now_iso
from .version_registry import ModelRegistry

VERSION_FORMAT = "semiseg-registry-version/1"


def write_version(reg: ModelRegistry, version: str, *, parent: Optional[str], kind: str, checkpoint: Path,
                  gate: Mapping[str, Any], gate_text: str, manifest: Mapping[str, Any], config: Mapping[str, Any],
                  details: Optional[Mapping[str, Any]] = None, verbose: bool = False) -> Dict[str, Any]:
    """Build version ``version`` from a checkpoint and its gate record; returns its version.json."""
    from semiseg_export import ExportError, export_model  # pulls in onnx/onnxruntime: import on use

    passed = bool(gate["decision"]["passed"])
    final = reg.version_dir(version)
    holdout = gate["candidate"]["holdout"]
    with reg.building(version) as tmp:
        ckpt = load_checkpoint(checkpoint)
        payload = {k: v for k, v in ckpt.items() if k not in ("format", "path", "trainer_state")}
        payload.update(metrics={k: holdout[k] for k in ("miou", "macc", "aacc")}, run_dir=str(final),
                       registry={"version": version, "parent": parent})
        save_checkpoint(tmp / "model.pt", payload)
        files = ["model.pt", "gate.json", "gate.txt", "manifest.json", "config.json"]
        if passed:  # the ONNX metadata name the final checkpoint path, not the temporary one
            model, saved = load_inference_model(tmp / "model.pt")
            saved["path"] = str(final / "model.pt")
            try:
                summary = export_model(model, str(tmp / "model.onnx"), checkpoint=saved, verbose=verbose)
            except ExportError as exc:  # a model that cannot be shipped is refused like one that fails the gate
                passed = False
                decision = {**gate["decision"], "passed": False, "reasons": [*gate["decision"]["reasons"],
                                                                               f"ONNX export failed: {exc}"]}
                gate = {**gate, "decision": decision}
                gate_text = gate_text.replace("gate: PASSED", "gate: REJECTED") + f"  - ONNX export failed: {exc}\n"
            else:
                summary["output"] = str(final / "model.onnx")
                write_json_atomic(tmp / "export.json", summary)
                files += ["model.onnx", "export.json"]
                crash_point("export")
        write_json_atomic(tmp / "gate.json", gate)
        write_text_atomic(tmp / "gate.txt", gate_text)
        write_json_atomic(tmp / "manifest.json", manifest)
        write_json_atomic(tmp / "config.json", config)
        record = {
            "format": VERSION_FORMAT, "version": version, "parent": parent, "kind": kind,
            "status": "passed" if passed else "rejected", "created": now_iso(),
            "gate": {"passed": passed, "reasons": list(gate["decision"]["reasons"]),
                     "holdout_miou": holdout["miou"],
                     "probe_miou": gate["candidate"]["probe"]["miou"] if "probe" in gate["candidate"] else None},
            "images": {"new": len(manifest.get("new_images", [])), "trained_on": len(manifest.get("trained_on", []))},
            "files": files + ["version.json"], **dict(details or {}),
        }
        write_json_atomic(tmp / "version.json", record)
    return record
