"""Check a run's data before its first step, so that what would stop training later stops it now, in one line.

* the validation split: every item is loaded exactly as evaluation loads it (decoded images and masks, sizes, label
  range), and it must have masks;
* the training split (files on disk): the labelled images' masks are decoded and checked against their image's size
  (read from the header) and the class count; the unlabelled images' headers are read (size, truncation).

A missing mask folder or an unlabelled validation split is an error here, not a run that ends with "mIoU n/a".
Reads run on a few threads (decoding releases the GIL).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, Iterable, Optional, Sequence

from ..errors import DataError
from .base import SegmentationDataset
from .folder import FileListDataset
from .image_io import check_mask, image_size
from .patches import PatchGridDataset


def _run(tasks: Iterable[Callable[[], None]], workers: int) -> int:
    """Run the checks on ``workers`` threads; the first failure in list order is raised (one DataError line)."""
    tasks = list(tasks)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for future in [pool.submit(t) for t in tasks]:
            future.result()
    return len(tasks)


def _files_of(dataset: SegmentationDataset) -> Optional[FileListDataset]:
    """The file list behind ``dataset`` (a patch grid's tiles are decoded when the grid is built), else None."""
    if isinstance(dataset, PatchGridDataset):
        return None
    return dataset if isinstance(dataset, FileListDataset) else None


def _header(path: object) -> None:
    image_size(path)


def check_validation_split(val: SegmentationDataset, name: str, workers: int) -> int:
    """Load every item of the validation split; it must be labelled. Returns the number of items checked."""
    files = _files_of(val)
    if files is not None and not files.labelled:
        missing = [str(img) for _, img, mask in files.files if mask is None][:3]
        raise DataError(f"{name}: the validation split has no masks for {', '.join(missing)}"
                        f"{' ...' if len(missing) == 3 else ''}; evaluation needs a mask for every image")
    return _run((lambda i=i: _load_labelled(val, i, name) for i in range(len(val))), workers)


def _load_labelled(dataset: SegmentationDataset, index: int, name: str) -> None:
    if "mask" not in dataset[index]:
        raise DataError(f"{name}: validation item {dataset.names()[index]} has no mask; evaluation needs one")


def check_training_split(train: SegmentationDataset, labelled: Sequence[int], workers: int) -> int:
    """Masks of the ``labelled`` items against their image headers and the class count; headers of the rest."""
    files = _files_of(train)
    if files is None:
        return 0
    wanted = set(int(i) for i in labelled)
    no_mask = [str(files.files[i][1]) for i in sorted(wanted) if files.files[i][2] is None][:3]
    if no_mask:
        raise DataError(f"{files.info.name}: no mask for the labelled training images {', '.join(no_mask)}"
                        f"{' ...' if len(no_mask) == 3 else ''} (expected masks/<split>/<name>.png beside "
                        "images/<split>/<name>.*)")
    n = files.info.num_classes

    def labelled_item(i: int) -> None:
        _, img, mask_path = files.files[i]
        check_mask(files.read_label(mask_path), image_size(img), img, mask_path, n)

    return _run(((lambda i=i: labelled_item(i)) if i in wanted else (lambda i=i: _header(files.files[i][1]))
                 for i in range(len(files))), workers)


def check_training_data(train: SegmentationDataset, val: SegmentationDataset, labelled: Sequence[int],
                        extra_unlabelled: Optional[SegmentationDataset] = None, workers: Optional[int] = None) -> Dict[str, int]:
    """All checks above; returns how many items of each part were checked."""
    workers = workers or min(4, os.cpu_count() or 1)
    counts = {"val": check_validation_split(val, val.info.name, workers),
              "train": check_training_split(train, labelled, workers)}
    if extra_unlabelled is not None and isinstance(extra_unlabelled, FileListDataset):
        counts["unlabelled_root"] = _run(((lambda p=p: _header(p)) for _, p, _ in extra_unlabelled.files), workers)
    return counts
