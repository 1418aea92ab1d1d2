"""Labelled-set references (holdout, probe, replay): one string names a labelled dataset split.

Syntax, as given to ``semiseg continual init --holdout/--probe/--replay``::

    DATASET:SPLIT[,KEY=VALUE...]   a registered dataset (``semiseg datasets``) and its split, with constructor
                                   arguments: ``synthetic-driving:val``, ``synthetic-driving:val,domain=fog,length=64``,
                                   ``cityscapes:val,root=/data/cityscapes``
    PATH[:SPLIT]                   a folder in the ``folder`` layout (``images/`` + ``masks/`` [+ ``classes.json``]);
                                   without SPLIT: ``val`` when ``images/val/`` exists, else the flat layout

A VALUE is read as an integer or decimal number when it is one, ``true``/``false`` as a boolean, ``HxW`` (such as
``64x128``) as a size ``[H, W]``, and as text otherwise. The Python API also takes the dict form
``{"dataset": ..., "split": ..., "args": {...}}`` (what ``store.json`` stores), optionally with ``"names"``: the
subset of items to use (the replay set of a source run is its labelled split).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple, Union

from torch.utils.data import Dataset, Subset

from ..data import DATASETS, build_dataset
from ..data.base import SegmentationDataset
from ..data.folder import FileListDataset
from ..data.synthetic.scene_dataset import SyntheticSceneDataset
from ..errors import ConfigError, DataError

SYNTAX = "DATASET:SPLIT[,KEY=VALUE...] (e.g. synthetic-driving:val,domain=fog) or PATH[:SPLIT] of a folder layout"
_NAME = re.compile(r"^([A-Za-z0-9_.-]+):([^,]+)(,.*)?$")
_SIZE = re.compile(r"^(\d+)x(\d+)$")


@dataclass(frozen=True)
class LabelledSetRef:
    """A labelled dataset split: registered ``dataset`` name, ``split``, constructor ``args``, optional ``names``."""

    dataset: str
    split: str
    args: Dict[str, Any] = field(default_factory=dict)
    names: Optional[Tuple[str, ...]] = None

    def describe(self) -> str:
        """The canonical one-line form (without the names subset)."""
        if self.dataset == "folder" and set(self.args) <= {"root"}:
            return f"{self.args.get('root')}:{self.split}"
        extra = "".join(f",{k}={_format_value(v)}" for k, v in sorted(self.args.items()))
        subset = f" ({len(self.names)} listed items)" if self.names is not None else ""
        return f"{self.dataset}:{self.split}{extra}{subset}"

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"dataset": self.dataset, "split": self.split, "args": dict(self.args)}
        if self.names is not None:
            out["names"] = list(self.names)
        return out


@dataclass
class OpenedSet:
    """A built labelled set: the dataset, the indices used, and the reference it came from."""

    ref: LabelledSetRef
    dataset: SegmentationDataset
    indices: List[int]

    def view(self) -> Dataset:
        """The items in use (the whole dataset, or a Subset)."""
        return self.dataset if len(self.indices) == len(self.dataset) else Subset(self.dataset, self.indices)

    def keys(self) -> Set[tuple]:
        """Identity of every item in use, to detect overlaps between sets (see :func:`item_keys`)."""
        return item_keys(self.dataset, self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def parse_labelled_set(value: Union[str, Sequence[str], Mapping[str, Any], LabelledSetRef], what: str = "labelled set") -> LabelledSetRef:
    """Parse the string (or dict) form described in the module docstring; ``what`` names the flag in errors."""
    if isinstance(value, LabelledSetRef):
        return value
    if isinstance(value, Mapping):
        try:
            names = value.get("names")
            return LabelledSetRef(str(value["dataset"]), str(value["split"]), dict(value.get("args") or {}),
                                  tuple(names) if names is not None else None)
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"{what}: a dict reference needs 'dataset' and 'split' ({exc})") from exc
    if isinstance(value, (list, tuple)):  # fire splits "a:b,c=d" at commas when it can parse the parts
        value = ",".join(str(v) for v in value)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{what}: expected {SYNTAX}, got {value!r}")
    text = value.strip()
    if Path(text).is_dir():
        return _folder_ref(Path(text), None, what)
    m = _NAME.match(text)
    if m and m.group(1) in DATASETS:
        args = _parse_args(m.group(3) or "", what, text)
        return LabelledSetRef(m.group(1), m.group(2).strip(), args)
    if ":" in text:
        root, split = text.rsplit(":", 1)
        if Path(root).is_dir():
            return _folder_ref(Path(root), split, what)
    if m:
        raise ConfigError(f"{what}: '{m.group(1)}' is neither a registered dataset ({', '.join(DATASETS.names())}) "
                          f"nor an existing folder; expected {SYNTAX}")
    raise ConfigError(f"{what}: '{text}' is not an existing folder; expected {SYNTAX}")


def open_labelled_set(ref: LabelledSetRef, num_classes: int, what: str = "labelled set") -> OpenedSet:
    """Build the dataset of ``ref`` and check it: not empty, labelled, ``num_classes`` classes, names exist."""
    kwargs = dict(ref.args)
    if ref.dataset == "folder" and "num_classes" not in kwargs:
        kwargs["num_classes"] = num_classes
    try:
        ds = build_dataset(ref.dataset, split=ref.split, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"{what} {ref.describe()}: bad dataset argument ({exc})") from exc
    if len(ds) == 0:
        raise DataError(f"{what} {ref.describe()}: the set is empty")
    if ds.info.num_classes != num_classes:
        raise ConfigError(f"{what} {ref.describe()}: {ds.info.num_classes} classes, but the model predicts {num_classes}")
    if ref.names is None:
        indices = list(range(len(ds)))
    else:
        index = {n: i for i, n in enumerate(ds.names())}
        missing = [n for n in ref.names if n not in index]
        if missing:
            raise DataError(f"{what} {ref.describe()}: {len(missing)} listed item(s) not in the dataset, first: "
                            f"{', '.join(missing[:3])}")
        indices = [index[n] for n in ref.names]
        if not indices:
            raise DataError(f"{what} {ref.describe()}: the list of items is empty")
    if not _is_labelled(ds, indices[0]):
        raise DataError(f"{what} {ref.describe()}: the set has no masks; a labelled set (images + masks) is needed")
    return OpenedSet(ref, ds, indices)


def item_keys(ds: SegmentationDataset, indices: Sequence[int]) -> Set[tuple]:
    """Identity keys of items: resolved image paths for file datasets; for generated scenes (dataset, seed, split,
    index, size), ignoring the domain (a domain changes the look of a scene, not the scene); names otherwise."""
    if isinstance(ds, FileListDataset):
        return {("file", str(Path(ds.files[i][1]).resolve())) for i in indices}
    if isinstance(ds, SyntheticSceneDataset):
        return {("scene", ds.info.name, ds.seed, ds.split, int(i), tuple(ds.size)) for i in indices}
    names = ds.names()
    return {("name", ds.info.name, names[i]) for i in indices}


def check_disjoint(train: OpenedSet, held_out: OpenedSet, what: str) -> None:
    """Raise ConfigError when the training set shares items with a held-out set (the loop never trains on it)."""
    shared = train.keys() & held_out.keys()
    if shared:
        example = sorted(shared)[0]
        raise ConfigError(f"{what} {held_out.ref.describe()} shares {len(shared)} item(s) with the replay (training) "
                          f"set {train.ref.describe()}, e.g. {example[1:]}; the loop must never train on it")


def _is_labelled(ds: SegmentationDataset, index: int) -> bool:
    if isinstance(ds, FileListDataset):
        return ds.labelled
    return "mask" in ds[index]


def _folder_ref(root: Path, split: Optional[str], what: str) -> LabelledSetRef:
    images = root / "images"
    if not images.is_dir():
        raise ConfigError(f"{what}: {root} has no images/ folder (expected the folder layout: images/ + masks/)")
    if split is None:
        has_splits = any(p.is_dir() and not p.name.startswith(".") for p in images.iterdir())
        split = "val" if (images / "val").is_dir() else ("train" if not has_splits else "")
        if not split:
            found = sorted(p.name for p in images.iterdir() if p.is_dir())
            raise ConfigError(f"{what}: {root} has split folders ({', '.join(found)}) but no 'val'; write {root}:SPLIT")
    return LabelledSetRef("folder", split, {"root": str(root.resolve())})


def _parse_args(text: str, what: str, whole: str) -> Dict[str, Any]:
    args: Dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise ConfigError(f"{what}: '{part}' in '{whole}' is not KEY=VALUE; expected {SYNTAX}")
        key, raw = (s.strip() for s in part.split("=", 1))
        args[key] = _parse_value(raw)
    if "root" in args:
        args["root"] = str(Path(str(args["root"])).expanduser().resolve())
    return args


def _parse_value(raw: str) -> Any:
    low = raw.lower()
    if low in ("true", "false"):
        return low == "true"
    m = _SIZE.match(low)
    if m:
        return [int(m.group(1)), int(m.group(2))]
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw


def _format_value(v: Any) -> str:
    if isinstance(v, (list, tuple)) and len(v) == 2:
        return f"{v[0]}x{v[1]}"
    return str(v).lower() if isinstance(v, bool) else str(v)
