"""On-device augmentation: weak geometry, strong photometric views and mixing primitives.

The public entry points are timed as the "augmentation" phase by an active :class:`~semiseg_sdk.utils.phase_timer.PhaseTimer`.
"""
from .geometry import View, sample_scale_crop_flip, warp_view
from .mixing import box_masks, classmix_masks, cutout, mix, unimatch_box_masks
from .photometric import StrongAugment, StrongConfig, strong_config
from .views import ViewConfig, ViewMaker

__all__ = [
    "View", "ViewConfig", "ViewMaker", "StrongAugment", "StrongConfig", "strong_config",
    "sample_scale_crop_flip", "warp_view", "box_masks", "classmix_masks", "cutout", "mix",
    "unimatch_box_masks",
]
