"""Output helpers shared by the benchmark scripts."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Dict, List, Union


def write_csv(path: Union[str, Path], rows: List[Dict[str, object]]) -> None:
    """Write ``rows`` (dicts with the same keys) as a CSV file with a header, and say so."""
    if not rows:
        print(f"no rows: {path} not written")
        return
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {path}")
