"""Datasets (built-in synthetic scenes and real-data layouts), splits and loaders."""
from .base import IGNORE_INDEX, DatasetInfo, SegmentationDataset
from .registry import DATASETS, build_dataset, list_datasets, register_dataset, run_dataset_kwargs
from . import synthetic  # noqa: F401  (registers synthetic-driving, synthetic-aerial)
from . import folder, voc, cityscapes, camvid  # noqa: F401  (register the real-data layouts)

__all__ = ["IGNORE_INDEX", "DatasetInfo", "SegmentationDataset", "DATASETS", "build_dataset", "list_datasets", "register_dataset",
           "run_dataset_kwargs"]
