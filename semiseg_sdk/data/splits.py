"""Labelled / unlabelled splits of a training set: which images keep their masks in a semi-supervised run.

The labelled amount is a ratio ("1/16", "1/8", 0.125, "all") or a count (92, "92"). A ratio of N images labels
ceil(N * ratio) of them (at least 1), as the published 1/16 ... 1/2 splits of Pascal VOC do (1464 -> 92, 183, ...).
A split is a seeded shuffle of the sorted names: the same names, amount and seed always give the same split, and with
one seed a smaller labelled set is contained in a larger one. Split files are JSON::

    {"format": "semiseg-split/1", "spec": "1/16", "seed": 0, "num_images": 1464, "labelled": [...], "unlabelled": [...]}

A hand-written file may leave out spec and seed (it is then "custom" and used as given).
"""
from __future__ import annotations

import json
import logging
import math
import os
import random
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import List, Optional, Sequence, Union

from ..errors import ConfigError, DataError
from ..utils.atomic import write_json_atomic

log = logging.getLogger(__name__)

LabelledSpec = Union[str, int, float]
SPLIT_FORMAT = "semiseg-split/1"
CUSTOM_SPEC = "custom"


@dataclass(frozen=True)
class Split:
    """Names of the labelled and unlabelled training images, with the amount spec and seed that made them."""

    labelled: List[str]
    unlabelled: List[str]
    seed: Optional[int]
    spec: str


def parse_labelled(labelled: LabelledSpec) -> Union[Fraction, int]:
    """A ratio in (0, 1] as a Fraction, or a count (int >= 1); raises ConfigError naming the bad value."""
    if isinstance(labelled, bool):
        raise ConfigError(f"labelled={labelled!r}: give a ratio such as '1/16' or 0.125, 'all', or a count")
    if isinstance(labelled, int):
        if labelled < 1:
            raise ConfigError(f"labelled={labelled}: at least 1 labelled image is needed")
        return labelled
    if isinstance(labelled, float):
        return _ratio(Fraction(repr(labelled)) if math.isfinite(labelled) else Fraction(-1), labelled)
    if not isinstance(labelled, str):
        raise ConfigError(f"labelled={labelled!r}: expected a string, an int or a float")
    text = labelled.strip().lower()
    if text == "all":
        return Fraction(1)
    if text.isdigit():
        return parse_labelled(int(text))
    try:
        if "/" in text:
            num, den = (int(part) for part in text.split("/"))
            if den == 0:
                raise ConfigError(f"labelled='{labelled}': the denominator is 0")
            return _ratio(Fraction(num, den), labelled)
        return _ratio(Fraction(text), labelled)
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(f"labelled='{labelled}': not a ratio ('1/16', 0.125, 'all') or a count ('92')") from exc


def _ratio(value: Fraction, given: object) -> Fraction:
    if not 0 < value <= 1:
        raise ConfigError(f"labelled={given!r}: a ratio must lie in (0, 1] (use an integer for a count of images)")
    return value


def canonical_spec(labelled: LabelledSpec) -> str:
    """The normal form stored in split files: "all", "1/8" (for "1/8", "2/16" or 0.125) or a count "92"."""
    value = parse_labelled(labelled)
    if isinstance(value, int):
        return str(value)
    return "all" if value == 1 else f"{value.numerator}/{value.denominator}"


def count_labelled(labelled: LabelledSpec, total: int) -> int:
    """How many of ``total`` images a spec labels: ceil(total * ratio) (at least 1), or the count itself."""
    value = parse_labelled(labelled)
    if isinstance(value, int):
        if value > total:
            raise ConfigError(f"labelled={labelled!r}: more labelled images than the {total} in the dataset")
        return value
    return max(1, math.ceil(total * value))


def make_split(names: Sequence[str], labelled: LabelledSpec, seed: int) -> Split:
    """Choose the labelled images by a seeded shuffle of the sorted names; the rest are unlabelled."""
    if not names:
        raise DataError("cannot split an empty dataset (no image names)")
    ordered = sorted(names)
    if len(set(ordered)) != len(ordered):
        dup = sorted({a for a, b in zip(ordered, ordered[1:]) if a == b})[:5]
        raise DataError(f"dataset names are not unique: {', '.join(dup)}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed={seed!r}: the split seed must be an integer")
    k = count_labelled(labelled, len(ordered))
    random.Random(seed).shuffle(ordered)
    return Split(sorted(ordered[:k]), sorted(ordered[k:]), seed, canonical_spec(labelled))


def save_split(path: Union[str, "os.PathLike[str]"], split: Split) -> None:
    """Write a split file atomically (JSON)."""
    write_json_atomic(path, {
        "format": SPLIT_FORMAT, "spec": split.spec, "seed": split.seed,
        "num_images": len(split.labelled) + len(split.unlabelled),
        "labelled": list(split.labelled), "unlabelled": list(split.unlabelled),
    })


def load_split(path: Union[str, "os.PathLike[str]"], names: Sequence[str]) -> Split:
    """Read a split file and check that every name in it exists in the dataset (``names``)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise DataError(f"{path}: split file not found") from exc
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read split file ({exc})") from exc
    if not isinstance(data, dict):
        raise DataError(f"{path}: a split file is a JSON object with 'labelled' and 'unlabelled' lists")
    lists = []
    for key in ("labelled", "unlabelled"):
        value = data.get(key, [] if key == "unlabelled" else None)
        if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
            raise DataError(f"{path}: '{key}' must be a list of image names")
        lists.append(value)
    labelled, unlabelled = lists
    if not labelled:
        raise DataError(f"{path}: the 'labelled' list is empty; at least 1 labelled image is needed")
    both = set(labelled) & set(unlabelled)
    if both:
        raise DataError(f"{path}: names both labelled and unlabelled: {', '.join(sorted(both)[:5])}")
    known = set(names)
    missing = [n for n in labelled + unlabelled if n not in known]
    if missing:
        raise DataError(f"{path}: {len(missing)} name(s) not in the dataset, first: {', '.join(missing[:5])} "
                        "(was the split made for another dataset, or were images renamed or removed?); delete it to "
                        "make a new split of the images there are now, or pass another --split_file")
    left_out = len(known) - len(labelled) - len(unlabelled)
    if left_out > 0:
        log.info("%s: %d dataset images are in neither list and are not used", path, left_out)
    seed = data.get("seed")
    return Split(labelled, unlabelled, seed if isinstance(seed, int) else None, str(data.get("spec", CUSTOM_SPEC)))


def resolve_split(
    split_file: Optional[Union[str, "os.PathLike[str]"]], names: Sequence[str], labelled: LabelledSpec, seed: int
) -> Split:
    """Reuse ``split_file`` when it exists (it must match ``labelled`` and ``seed``), else make it and save it there."""
    if split_file is None:
        return make_split(names, labelled, seed)
    path = Path(split_file)
    if not path.exists():
        split = make_split(names, labelled, seed)
        save_split(path, split)
        log.info("%s: new split, %d labelled / %d unlabelled", path, len(split.labelled), len(split.unlabelled))
        return split
    split = load_split(path, names)
    wanted = canonical_spec(labelled)
    if split.spec == CUSTOM_SPEC:
        log.info("%s: hand-made split used as given (%d labelled)", path, len(split.labelled))
    elif split.spec != wanted or split.seed != seed:
        raise ConfigError(
            f"{path} holds the split labelled={split.spec} seed={split.seed}, but labelled={wanted} seed={seed} "
            "was requested; pass the values it was made with, choose another split file, or delete it to make a new one"
        )
    return split
