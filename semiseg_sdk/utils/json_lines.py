"""Reading JSON-lines files that a killed writer may have left with a torn last line."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Tuple


def read_json_lines(path: Path) -> Tuple[List[Dict[str, Any]], int]:
    """``(records, skipped)``: every line of ``path`` that is a JSON object, in order, and how many non-empty lines
    were not (a torn write, garbage); a missing file is ``([], 0)``."""
    if not path.is_file():
        return [], 0
    records, skipped = [], 0
    for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            skipped += 1
            continue
        if isinstance(obj, dict):
            records.append(obj)
        else:
            skipped += 1
    return records, skipped
