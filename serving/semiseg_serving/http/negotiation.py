"""Choosing the answer format of ``/v1/segment``: ``?format=png|json`` first, then the ``Accept`` header."""
from __future__ import annotations

from typing import Dict, Optional

from .api_error import ApiError

FORMATS: Dict[str, str] = {"png": "image/png", "json": "application/json"}
DEFAULT = "png"


def _quality(accept: str, media: str) -> float:
    """The q-value ``accept`` gives ``media``: the most specific matching range wins (exact > type/* > */*)."""
    best, best_rank = 0.0, -1
    kind = media.split("/")[0]
    for entry in accept.split(","):
        fields = [f.strip() for f in entry.split(";")]
        rng = fields[0].lower()
        rank = 2 if rng == media else 1 if rng == f"{kind}/*" else 0 if rng == "*/*" else -1
        if rank < 0 or rank < best_rank:
            continue
        q = 1.0
        for param in fields[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        best, best_rank = q, rank
    return best


def choose_format(query_format: Optional[str], accept: Optional[str]) -> str:
    """``"png"`` or ``"json"``: 400 ``bad_format`` for an unknown ``format``, 406 when Accept allows neither.

    No Accept header (or ``*/*``) gives the palette PNG; on equal preference the PNG is chosen too.
    """
    if query_format is not None:
        fmt = query_format.strip().lower()
        if fmt not in FORMATS:
            raise ApiError(400, "bad_format", f"format={query_format!r}: use 'png' or 'json'")
        return fmt
    if not accept or not accept.strip():
        return DEFAULT
    scores = {fmt: _quality(accept, media) for fmt, media in FORMATS.items()}
    best = max(scores, key=lambda f: (scores[f], f == DEFAULT))
    if scores[best] <= 0.0:
        raise ApiError(406, "not_acceptable", f"Accept {accept!r} allows neither image/png nor application/json")
    return best
